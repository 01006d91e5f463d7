"""``jobreport history``: recent runs from the local store."""

from __future__ import annotations

from typing import Any

import click

from jobreport.cli.app import (
    EXIT_CODES_HELP,
    EXIT_PROBLEM,
    cli,
    fail,
    library_errors,
    setup_logging,
    to_json,
)
from jobreport.cli.formatting import history_table, parse_since, printable, run_details
from jobreport.cli.options import config_from, json_option, opt, settings_options
from jobreport.outcomes import OUTCOMES

__all__ = ["history"]

#: The settings options this command uses.
USE = ("db", "config_file")


@cli.command(epilog=EXIT_CODES_HELP)
@click.argument("job", required=False)
@opt("--limit", envvar="JOBREPORT_HISTORY_LIMIT", type=click.IntRange(1, 10**9), default=20,
     show_default=True, help="Show at most this many runs.")
@opt("--since", envvar="JOBREPORT_HISTORY_SINCE", metavar="WHEN",
     help="Only runs started since: a duration ago (24h, 7d) or a date/time "
           "(2024-05-01, 2024-05-01T12:00).")
@opt("--outcome", "outcomes", envvar="JOBREPORT_HISTORY_OUTCOME", multiple=True,
     type=click.Choice(OUTCOMES), help="Only runs with this outcome (repeatable).")
@opt("--run", "run_id", envvar="JOBREPORT_HISTORY_RUN", metavar="ID",
     help="Show this one run in full, with the last lines of its output: its id in "
           "this list, or the $JOBREPORT_RUN_ID its command was given.")
@json_option()
@settings_options(use=USE)
@library_errors
def history(**params: Any) -> None:
    """Show recent runs from the local store, newest first.

    \b
    Example:
      jobreport history backup --since 7d --outcome failure
      jobreport history --run 42
    """
    setup_logging()
    from jobreport.store.store import Store

    config = config_from(params)
    store = Store(config.db)
    if params["run_id"] is not None:
        record = store.get_run(run_key) if (run_key := _run_key(params["run_id"])) else None
        if record is None:
            fail(f"no run {params['run_id']} in the store {store.display_url}",
                 "`jobreport history` lists the runs with their ids", EXIT_PROBLEM)
        if params["as_json"]:
            click.echo(to_json(record.to_json()))
        else:
            click.echo(run_details(record))
        return
    since = parse_since(params["since"]) if params["since"] else None
    records = store.history(params["job"], limit=params["limit"], since=since,
                            outcomes=params["outcomes"])
    if params["as_json"]:
        click.echo(to_json([r.to_json() for r in records]))
    elif not records:
        click.echo("no runs recorded"
                   + (f" for job {printable(params['job'])}" if params["job"] else ""))
    else:
        click.echo(history_table(records))
        for line in store.undelivered(params["job"]):
            click.echo(line.describe())


def _run_key(text: str) -> int | str | None:
    """A run's store id (a number the store can hold) or its $JOBREPORT_RUN_ID; None when
    it can be neither (digits too many for an id, or not ASCII digits)."""
    if text.isascii() and text.isdigit():
        number = int(text)
        return number if number < 2**63 else None
    return None if text.isdigit() or not text.strip() else text
