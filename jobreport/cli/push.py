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
    """Give a job's group values of your own, kept in the store and delivered with the
    group's whole state to every sink.

    The group is replaced, as every delivery of jobreport's replaces it (a PUT to the
    Pushgateway): the run's metrics and values pushed before stay, a name pushed again
    replaces all of its samples, and later runs of the job keep the values until `jobreport
    delete` removes the group. It needs a sink (--gateway, --remote-write, --textfile-dir)
    and a store that can keep the values (exit 4 without one: nothing is sent). NAME may
    carry labels: 'rows{table="users"}=42'; VALUE is a number, +Inf, -Inf or NaN (64-bit:
    1e400 is refused). Names in jobreport's namespace (jobreport_, or the one
    JOBREPORT_NAMESPACE names instead) are refused: a run reports its own size and items.

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
    if parsed.size is not None or parsed.items is not None:
        problems.append(f"{config.namespace}_last_size_bytes and {config.namespace}_last_items "
                        "are a run's own figures: a run reports its size and items itself "
                        "(--size-path, its metrics file, job.set_size); push metrics of your "
                        "own (e.g. backup_tables=42)")
    if parsed.spec:
        problems.append(f"{', '.join(sorted(parsed.spec))}: thresholds of a run (give them "
                        "to `jobreport run`, the job's config section or its metrics file), "
                        "not values to push")
    if problems:
        raise click.UsageError("; ".join(problems))
    grouping = push_values(config, params["job"], parsed.families, typed_labels(params))
    click.echo(f"pushed {len(parsed.families)} metric(s) to {group_text(grouping)}")
