"""The ``jobreport`` click group and what every command shares at the boundary: one-line
errors with a hint and a documented exit code, jobreport's own warnings as one line each,
and a quick exit once a command is done.

A command lives in its own module under ``jobreport/cli/`` and registers itself with
``@cli.command()``; its module name goes into ``COMMAND_MODULES``.
"""

from __future__ import annotations

import functools
import importlib
import sys
from collections.abc import Callable, Sequence
from typing import Any, NoReturn, TypeVar

import click

from jobreport._version import __version__
from jobreport.cli.exit import exit_now
from jobreport.cli.stderr import log_to_stderr
from jobreport.errors import (
    ConfigError,
    DeliveryError,
    InvalidNameError,
    JobReportError,
    NotConfiguredError,
    StoreError,
)

__all__ = [
    "COMMAND_MODULES", "CONTEXT", "EXIT_CODES_HELP", "EXIT_GATEWAY", "EXIT_PROBLEM",
    "cli", "fail", "library_errors", "load_commands", "setup_logging", "to_json",
]

F = TypeVar("F", bound=Callable[..., Any])

#: The modules of ``jobreport.cli`` that hold a command (each registers itself on import).
COMMAND_MODULES = ("run", "push", "flush", "history", "status", "delete", "check", "rules",
                   "monitoring", "prune")

#: Exit codes of the commands other than ``run`` (which exits with the command's own code).
EXIT_PROBLEM = 1
EXIT_GATEWAY = DeliveryError.exit_code

CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}

EXIT_CODES_HELP = """\b
Exit codes: 0 success; 1 a problem was found (check); 2 usage or
configuration error; 3 the Pushgateway failed or refused (flush: a group was
not delivered); 4 the store failed. status --check: 0 OK, 1 WARNING, 2
CRITICAL, 3 UNKNOWN.
`jobreport run` exits with the command's own code: 124 timeout, 126 not
executable, 127 not found, 128+N killed by signal N, 75 skipped (--lock).
"""


# --- errors at the boundary -------------------------------------------------------------


def fail(message: str, hint: str | None, exit_code: int) -> NoReturn:
    """Print a one-line error and its hint, and exit with ``exit_code``."""
    click.echo(f"jobreport: error: {message}", err=True)
    if hint:
        click.echo(f"jobreport: hint: {hint}", err=True)
    sys.exit(exit_code)


def _hint(error: JobReportError) -> str | None:
    if isinstance(error, ConfigError):
        return "`jobreport check` shows every setting and where its value came from"
    if isinstance(error, InvalidNameError):
        return "see `jobreport COMMAND --help` for what each option takes"
    if isinstance(error, DeliveryError):
        if isinstance(error, NotConfiguredError):
            return "set JOBREPORT_GATEWAY=http://HOST:9091 or pass --gateway"
        if error.status in (401, 403):
            return ("set JOBREPORT_USERNAME with JOBREPORT_PASSWORD_FILE, or "
                    "JOBREPORT_TOKEN_FILE")
        if error.unreachable:
            return "is the Pushgateway running and reachable? `jobreport check` tests it"
        return "`jobreport check` tests every configured sink"
    if isinstance(error, StoreError):
        return "check --db / JOBREPORT_DB; `jobreport check` tests the store"
    return None


def library_errors(func: F) -> F:
    """Turn a ``JobReportError`` raised by ``func`` into a one-line error and its exit code."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except JobReportError as e:
            fail(str(e), _hint(e), e.exit_code)

    return wrapper  # type: ignore[return-value]


def setup_logging(quiet: bool = False) -> None:
    """jobreport's warnings as one line each on stderr, for the time of this command."""
    click.get_current_context().call_on_close(log_to_stderr(quiet))


def to_json(data: object) -> str:
    """``data`` as indented JSON, for the ``--json`` output of a command. A value that is
    not a finite number (a gauge a job set to NaN or +Inf) is written as the text format
    writes it (``"NaN"``, ``"+Inf"``, ``"-Inf"``): JSON has no such numbers, and ``jq``
    and every strict parser refuse Python's ``NaN``/``Infinity``."""
    import json
    import math

    def finite(value: object) -> object:
        if isinstance(value, float) and not math.isfinite(value):
            return "NaN" if math.isnan(value) else ("+Inf" if value > 0 else "-Inf")
        if isinstance(value, dict):
            return {k: finite(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [finite(v) for v in value]
        return value

    return json.dumps(finite(data), indent=2, allow_nan=False)


# --- the group ----------------------------------------------------------------------------


class _Jobreport(click.Group):
    """The ``jobreport`` group. Started from the real command line (``args`` not given), it
    exits with ``os._exit`` once the command is done and its output flushed: tearing down
    SQLAlchemy and requests at interpreter exit would add a tenth of a second to every run
    of a cron job, for nothing (every write is committed, every push answered)."""

    def main(
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> Any:
        if args is not None or not standalone_mode:  # called from Python (tests, CliRunner)
            return super().main(args=args, prog_name=prog_name, complete_var=complete_var,
                                standalone_mode=standalone_mode, **extra)
        try:
            super().main(prog_name=prog_name, complete_var=complete_var, **extra)
            code: object = 0
        except SystemExit as e:
            code = e.code
        exit_now(code)


@click.group(cls=_Jobreport, context_settings=CONTEXT, epilog=EXIT_CODES_HELP)
@click.version_option(__version__, "--version", prog_name="jobreport")
def cli() -> None:
    """Make cron and systemd-timer jobs report to Prometheus through a Pushgateway.

    \b
    Example:
      export JOBREPORT_GATEWAY=http://127.0.0.1:9091
      jobreport run --job backup --expect-every 24h -- pg_dump -f /backups/db.dump mydb
      jobreport status
    """


def load_commands() -> click.Group:
    """The ``jobreport`` group with every command of ``COMMAND_MODULES`` registered."""
    for name in COMMAND_MODULES:
        importlib.import_module(f"jobreport.cli.{name}")
    return cli
