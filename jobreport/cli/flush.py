"""``jobreport flush``: deliver the groups whose newest state has not reached the gateway."""

from __future__ import annotations

import sys
from typing import Any

import click

from jobreport.cli.app import (
    EXIT_CODES_HELP,
    EXIT_GATEWAY,
    cli,
    library_errors,
    setup_logging,
)
from jobreport.cli.options import config_from, opt, settings_options

__all__ = ["flush"]

#: The settings options this command uses.
USE = ("gateway", "remote_write_url", "textfile_dir", "db", "config_file")


@cli.command(epilog=EXIT_CODES_HELP)
@opt("--all", "all_groups", is_flag=True, envvar="JOBREPORT_FLUSH_ALL",
     help="Push every group the store knows, delivered or not: restores a Pushgateway "
           "that lost its data (restarted without --persistence.file).")
@settings_options(use=USE)
@library_errors
def flush(**params: Any) -> None:
    """Deliver every group whose newest state has not reached a sink yet.

    One delivery per group and sink carries its whole state, however many runs are pending
    (runs recorded while a sink was down or not configured); each sink has its own mark, so
    a sink that missed runs gets them and the others get nothing again. Exits 3 when a group could
    not be delivered: it stays pending for the next flush.

    \b
    Example:
      JOBREPORT_GATEWAY=http://127.0.0.1:9091 jobreport flush
      jobreport flush --all     # after the Pushgateway lost its data
    """
    setup_logging()
    from jobreport.delivery import flush as flush_all

    result = flush_all(config_from(params), all_groups=params["all_groups"])
    if result.groups or not result.failed:
        click.echo(f"delivered {result.groups} group(s) carrying {result.runs} run(s)"
                   if result.groups else "nothing to deliver")
    if len(result.by_sink) > 1:  # one line per sink: which one had catching up to do
        for name, (groups, runs, failed) in result.by_sink.items():
            click.echo(f"  {name}: {groups} group(s), {runs} run(s)"
                       + (f", {failed} not delivered" if failed else ""))
    if result.failed:
        # each failure was logged as a warning above
        click.echo(f"jobreport: {len(result.failed)} group(s) not delivered; they stay "
                   "pending for the next flush", err=True)
        sys.exit(EXIT_GATEWAY)
