"""``jobreport status``: what the Pushgateway holds now."""

from __future__ import annotations

from typing import Any

import click

from jobreport.cli.app import EXIT_CODES_HELP, cli, library_errors, setup_logging, to_json
from jobreport.cli.formatting import status_table
from jobreport.cli.options import config_from, json_option, settings_options

__all__ = ["status"]

#: The settings options this command uses.
USE = ("gateway", "config_file")


@cli.command(epilog=EXIT_CODES_HELP)
@json_option()
@settings_options(use=USE)
@library_errors
def status(**params: Any) -> None:
    """Show what the Pushgateway holds now, per job and instance, problems first.

    A group has a problem when it is overdue (no success within its expected interval, or
    past its schedule's success deadline), it missed its scheduled start, its last run did
    not succeed or was shorter than its minimum runtime, it runs longer than its max
    runtime, or pushes to it are failing. NEXT DEADLINE shows a scheduled job's next
    deadline and whether it has passed. The exit code is 0 whatever the groups' state (alerts are Prometheus's
    job); it is 3 when the gateway cannot be read.

    \b
    Example:
      jobreport status --gateway http://127.0.0.1:9091
    """
    setup_logging()
    from jobreport.gateway import gateway_status

    config = config_from(params)
    groups = gateway_status(config)
    if params["as_json"]:
        click.echo(to_json([g.to_json() for g in groups]))
        return
    if not groups:
        click.echo("the Pushgateway holds no groups")
    else:
        click.echo(status_table(groups))
    for line in _undelivered(config.db):
        click.echo(line)


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
