"""``jobreport delete``: remove one group from the Pushgateway."""

from __future__ import annotations

from typing import Any

import click

from jobreport.cli.app import EXIT_CODES_HELP, cli, library_errors, setup_logging
from jobreport.cli.formatting import group_text
from jobreport.cli.options import config_from, label_option, opt, settings_options, typed_labels

__all__ = ["delete"]


@cli.command(epilog=EXIT_CODES_HELP)
@opt("--job", envvar="JOBREPORT_DELETE_JOB", required=True, metavar="NAME",
     help="The job whose group to remove.")
@label_option("Grouping label of the group (repeatable).")
@settings_options()
@library_errors
def delete(**params: Any) -> None:
    """Remove one group (a retired job or host) from the Pushgateway and the other sinks.

    The group is the job with this host's instance (or --instance/--no-instance) and the
    labels. It is also marked delivered in the store, so `jobreport flush` does not bring
    it back.

    \b
    Example:
      jobreport delete --job backup --instance old-db-host
    """
    setup_logging()
    from jobreport.commands.delete import delete_group

    grouping = delete_group(config_from(params), params["job"], typed_labels(params))
    click.echo(f"deleted {group_text(grouping)}")
