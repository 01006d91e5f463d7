"""``jobreport run``: run a command as one run of a job and report it."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any, NoReturn, TypeVar

import click
from click.core import ParameterSource

from jobreport.cli.app import EXIT_CODES_HELP, cli, setup_logging
from jobreport.cli.entry import check_numeric_settings, check_typed_settings, launch, run_spec
from jobreport.cli.option_table import RUN_OPTIONS
from jobreport.cli.options import (
    EnvOption,
    LenientOption,
    settings_options,
    spec_option,
    typed_labels,
    typed_settings,
)
from jobreport.errors import InvalidNameError
from jobreport.spec import SpecError

F = TypeVar("F", bound=Callable[..., Any])

__all__ = ["run"]


def _run_options(func: F) -> F:
    # a bad value of the spec's (a flag or its variable) is a usage error that runs nothing;
    # --quiet and --label's variable (a setting the config reads) only warn
    for spec in reversed(RUN_OPTIONS):
        func = spec_option(spec, LenientOption if spec.field is None else EnvOption)(func)
    return func


@cli.command(context_settings={"allow_interspersed_args": False}, epilog=EXIT_CODES_HELP)
@_run_options
@settings_options(lenient=True)
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
def run(**params: Any) -> NoReturn:
    """Run COMMAND and report the run to the Pushgateway; exit with COMMAND's exit code.

    COMMAND runs directly (no shell) with stdin, stdout and stderr passed through. It gets
    JOBREPORT_JOB, JOBREPORT_RUN_ID and JOBREPORT_METRICS_FILE (append `name value` lines
    to report metrics of your own). SIGTERM, SIGHUP and SIGINT are passed on to it. When the
    gateway or the store is down the command still runs; the run is kept for `jobreport
    flush`.

    \b
    Example:
      jobreport run --job backup --expect-every 24h --timeout 2h \\
          --size-path /backups/db.dump -- pg_dump -Fc -f /backups/db.dump mydb
    """
    setup_logging(params["quiet"])
    _one_of_interval_and_schedule(params)
    job = params["job"]
    if job is not None:
        from jobreport.names import check_job

        try:
            check_job(job)
        except InvalidNameError as e:
            raise click.BadParameter(str(e), param_hint="--job") from None
    try:
        spec = run_spec(params, typed_labels(params))
    except SpecError as e:
        raise click.UsageError(e.problem) from None
    settings = typed_settings(params)
    try:
        import os

        check_typed_settings(settings)
        check_numeric_settings(os.environ)
    except ValueError as e:
        raise click.UsageError(str(e)) from None
    sys.exit(launch(params["command"], spec, settings))


def _one_of_interval_and_schedule(params: dict[str, Any]) -> None:
    """--expect-every and --schedule exclude each other: one typed beats the other from the
    environment, both from the environment is a warning (the schedule is used); both typed
    is left to the spec, which refuses it."""
    if params["expect_every"] is None or params["schedule"] is None:
        return
    ctx = click.get_current_context()
    typed = {name for name in ("expect_every", "schedule")
             if ctx.get_parameter_source(name) is ParameterSource.COMMANDLINE}
    if len(typed) == 2:
        return
    if not typed:
        click.echo("jobreport: JOBREPORT_EXPECT_EVERY and JOBREPORT_SCHEDULE are both set; "
                   "using the schedule", err=True)
    params["expect_every" if "expect_every" not in typed else "schedule"] = None
