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
    from jobreport.commands.push import push_values
    from jobreport.wrapper.metricsfile import parse_assignments

    config = config_from(params)
    parsed = parse_assignments(params["values"], config.namespace)
    problems = list(parsed.problems)
    reserved = _reserved(params["values"], config.namespace)
    if reserved:
        problems.append(f"{', '.join(reserved)}: jobreport's own namespace; push metrics "
                        "of your own (e.g. backup_tables=42): a run reports its size and "
                        "items itself")
    if problems:
        raise click.UsageError("; ".join(problems))
    grouping = push_values(config, params["job"], parsed.families, typed_labels(params))
    click.echo(f"pushed {len(parsed.families)} metric(s) to {group_text(grouping)}")


def _reserved(pairs: tuple[str, ...], namespace: str) -> list[str]:
    """The names of ``pairs`` in jobreport's namespace (``jobreport_*``, or the configured
    one): those are the run's own metrics, never pushed by hand."""
    prefixes = tuple({f"{namespace}_", "jobreport_"})
    names = []
    for pair in pairs:
        name = pair.rpartition("=")[0].split("{", 1)[0].strip()
        if name.startswith(prefixes):
            names.append(repr(name))
    return names
