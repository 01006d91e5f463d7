"""The exceptions jobreport raises: one base class, a few subclasses that carry data.

Programming errors (an invalid job, label or metric name) and bad settings raise before a job
body runs. Environmental trouble during a run (gateway down, store locked) never reaches the
job: it is logged and retried later. The CLI turns every ``JobReportError`` into a one-line
message and the exit code in ``exit_code``.
"""

from __future__ import annotations

__all__ = [
    "ConfigError",
    "InvalidNameError",
    "JobReportError",
    "PushError",
    "StoreError",
]


class JobReportError(Exception):
    """Base class of every error jobreport raises on purpose."""

    #: The exit code the CLI uses when this error ends a command.
    exit_code = 1


class ConfigError(JobReportError):
    """A setting has a bad value; names the setting and where the value came from."""

    exit_code = 2

    def __init__(self, setting: str, source: str, problem: str) -> None:
        self.setting = setting
        self.source = source
        self.problem = problem
        super().__init__(f"{setting} (from {source}): {problem}")


class InvalidNameError(JobReportError, ValueError):
    """A job, label or metric name that Prometheus or the Pushgateway would not accept."""

    exit_code = 2

    def __init__(self, kind: str, name: str, problem: str) -> None:
        self.kind = kind
        self.name = name
        self.problem = problem
        super().__init__(f"invalid {kind} {name!r}: {problem}")


class PushError(JobReportError):
    """The Pushgateway could not be reached or refused a push."""

    exit_code = 3

    def __init__(self, message: str, *, status: int | None = None, retryable: bool = True,
                 url: str | None = None) -> None:
        self.status = status
        self.retryable = retryable
        self.url = url
        super().__init__(message)


class StoreError(JobReportError):
    """The local store could not be opened, read or written."""

    exit_code = 4
