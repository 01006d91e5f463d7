"""``jobreport push``: ad hoc values into a job's group."""

from __future__ import annotations

from typing import Any

import click

from jobreport.cli.app import EXIT_CODES_HELP, cli, library_errors, setup_logging
from jobreport.cli.formatting import group_text
from jobreport.cli.options import config_from, label_option, opt, settings_options, typed_labels

__all__ = ["push"]


@cli.command(epilog=EXIT_CODES_HELP)
@opt("--job", envvar=["JOBREPORT_PUSH_JOB", "JOBREPORT_JOB"], required=True, metavar="NAME",
     help="The job whose group gets the values (inside `jobreport run`: that run's job).")
@label_option("Extra grouping label (repeatable).")
@settings_options()
@click.argument("values", nargs=-1, required=True, metavar="NAME=VALUE...")
@library_errors
def push(**params: Any) -> None:
    """Push ad hoc values into a job's group (a POST: the group's other metrics stay).

    NAME may carry labels: 'rows{table="users"}=42'. Names in the jobreport_ namespace are
    refused.

    \b
    Example:
      jobreport push --job backup backup_tables=42 'rows{table="users"}=1200'
    """
    setup_logging()
    from jobreport.gateway import push_values
    from jobreport.wrapper.metricsfile import parse_assignments

    config = config_from(params)
    parsed = parse_assignments(params["values"], config.namespace)
    if parsed.problems:
        raise click.UsageError("; ".join(parsed.problems))
    grouping = push_values(config, params["job"], parsed.families, typed_labels(params))
    click.echo(f"pushed {len(parsed.families)} metric(s) to {group_text(grouping)}")
