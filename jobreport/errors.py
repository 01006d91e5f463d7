"""The exceptions jobreport raises: one base class, a few subclasses that carry data.

Programming errors (an invalid job, label or metric name) and bad settings raise before a job
body runs. Environmental trouble during a run (gateway down, store locked) never reaches the
job: it is logged and retried later. The CLI turns every ``JobReportError`` into a one-line
message and the exit code in ``exit_code``.
"""

from __future__ import annotations

__all__ = [
    "ConfigError",
    "DeliveryError",
    "GroupNotFoundError",
    "InvalidNameError",
    "JobReportError",
    "NotConfiguredError",
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


class DeliveryError(JobReportError):
    """An exchange with a sink failed: it could not be reached, did not answer in time, or
    refused the request. ``status`` is the HTTP status of its answer (None: no answer);
    ``retryable``: the same request may well succeed later (no answer, 408, 429, 5xx);
    ``unreachable``: not even a connection (refused, unknown name, connect timeout), so
    the next attempts to that sink would fail the same way."""

    exit_code = 3

    def __init__(self, message: str, *, status: int | None = None, retryable: bool = True,
                 url: str | None = None, unreachable: bool = False) -> None:
        self.status = status
        self.retryable = retryable
        self.url = url
        self.unreachable = unreachable
        super().__init__(message)


#: The name ``DeliveryError`` had before sinks other than the Pushgateway existed; kept so
#: that ``except jobreport.PushError`` goes on working (deprecated: use DeliveryError).
PushError = DeliveryError


class NotConfiguredError(DeliveryError):
    """No sink is configured for what was asked (no Pushgateway for ``status``, ``delete``,
    ``push``, ``flush``); ``setting`` names what to set."""

    def __init__(self, message: str, *, setting: str = "JOBREPORT_GATEWAY") -> None:
        self.setting = setting
        super().__init__(message, retryable=False)


class GroupNotFoundError(JobReportError):
    """Neither the store nor the Pushgateway has the group a command named."""

    exit_code = 1

    def __init__(self, grouping: dict[str, str], retired: float | None = None) -> None:
        self.grouping = grouping
        #: When the group was deleted already (None: the store never had it).
        self.retired = retired
        shown = ", ".join(f"{k}={v}" for k, v in grouping.items())
        if retired is not None:
            import time

            when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(retired))
            super().__init__(f"group {shown} was deleted already ({when}) and no sink holds "
                             "it; nothing left to delete")
        else:
            super().__init__(f"no group {shown} in the store or the Pushgateway; nothing to "
                             "delete (check --job, --instance and --label)")


class StoreError(JobReportError):
    """The local store could not be opened, read or written."""

    exit_code = 4
