"""``jobreport status``: what the Pushgateway holds now."""

from __future__ import annotations

import sys
from typing import Any

import click

from jobreport.cli.app import (
    EXIT_CODES_HELP,
    EXIT_PROBLEM,
    cli,
    library_errors,
    setup_logging,
    to_json,
)
from jobreport.cli.formatting import status_table
from jobreport.cli.options import config_from, json_option, opt, settings_options
from jobreport.config import Config

__all__ = ["status"]

#: The settings options this command uses.
USE = ("gateway", "remote_write_url", "textfile_dir", "db", "config_file")


@cli.command(epilog=EXIT_CODES_HELP)
@json_option()
@opt("--check", "as_check", is_flag=True, envvar="JOBREPORT_STATUS_CHECK",
     help="Exit 1 when a group has a problem (overdue, failed, stuck, too short...), for "
          "Nagios-style checks [default: exit 0 whatever the groups' state].")
@settings_options(use=USE)
@library_errors
def status(**params: Any) -> None:
    """Show what the Pushgateway holds now, per job and instance, problems first; with
    --remote-write or --textfile-dir, also what each sink has not received yet.

    A group has a problem when it is overdue (no success within its expected interval, or
    past its schedule's success deadline), it missed its scheduled start, its last run did
    not succeed or was shorter than its minimum runtime, it runs longer than its max
    runtime, or pushes to it are failing. NEXT DEADLINE shows a scheduled job's next
    deadline and whether it has passed. The exit code is 0 whatever the groups' state
    (alerts are Prometheus's job), or with --check 0 when every group is fine and 1 when
    one has a problem; it is 3 when the gateway cannot be read.

    \b
    Example:
      jobreport status --gateway http://127.0.0.1:9091
    """
    setup_logging()
    from jobreport.commands.status import gateway_status, listing_sinks
    from jobreport.sinks.configured import configured_sinks

    config = config_from(params)
    sinks = configured_sinks(config)
    listing = listing_sinks(config, sinks)
    unlisted = len(sinks) > len(listing)  # sinks that cannot say what they hold
    if unlisted and not listing:
        # nothing to read back from remote write or a textfile: what the store knows
        _backlogs(config)
        return
    groups = gateway_status(config, sinks=sinks)
    if params["as_json"]:
        click.echo(to_json([g.to_json() for g in groups]))
    else:
        if not groups:
            click.echo("the Pushgateway holds no groups")
        else:
            click.echo(status_table(groups))
        for line in _undelivered(config.db):
            click.echo(line)
        if unlisted:
            _backlogs(config)
    troubled = [g for g in groups if g.problems]
    if params["as_check"] and troubled:
        click.echo(f"jobreport: {len(troubled)} of {len(groups)} group(s) have a problem",
                   err=True)
        sys.exit(EXIT_PROBLEM)


def _undelivered(db: str) -> list[str]:
    """What this host's store has not delivered (it is not in the table above yet)."""
    import os

    from jobreport.errors import StoreError
    from jobreport.paths import sqlite_path
    from jobreport.store.store import Store

    path = sqlite_path(db)
    if path is not None and not os.path.exists(path):
        return []  # no store on this host: do not make one just to look
    try:
        return [u.describe() for u in Store(db).undelivered()]
    except StoreError:
        return []  # status is about the gateway; `jobreport check` reports the store


def _backlogs(config: Config) -> None:
    """One line per configured sink: what it has not received yet (from the store)."""
    from jobreport.commands.backlogs import sink_backlogs
    from jobreport.errors import StoreError

    try:
        backlogs = sink_backlogs(config)
    except StoreError:
        return  # `jobreport check` reports the store
    click.echo("deliveries per sink (from the store):")
    for backlog in backlogs:
        click.echo(f"  {backlog.line()}")
