"""``jobreport prune``: retire and delete the groups of hosts that are gone."""

from __future__ import annotations

from typing import Any

import click

from jobreport.cli.app import EXIT_CODES_HELP, cli, library_errors, setup_logging, to_json
from jobreport.cli.formatting import age, group_text, when
from jobreport.cli.options import DURATION, config_from, json_option, opt, settings_options

__all__ = ["prune"]


@cli.command(epilog=EXIT_CODES_HELP)
@opt("--older-than", envvar="JOBREPORT_PRUNE_OLDER_THAN", type=DURATION, required=True,
     metavar="DURATION", help="Remove the groups whose last push is older than this, e.g. 30d.")
@opt("--dry-run", is_flag=True, envvar="JOBREPORT_PRUNE_DRY_RUN",
     help="Only list the groups that would be removed.")
@json_option()
@settings_options(use=("gateway", "textfile_dir", "db", "config_file"))
@library_errors
def prune(**params: Any) -> None:
    """Remove the jobreport groups of hosts that are gone from the Pushgateway.

    A group is removed when its last push (the gateway's push_time_seconds) is older than
    --older-than. Only jobreport's groups (those with jobreport_info) are candidates; the
    groups of other pushers are never touched. Each group is retired in the store (no
    `jobreport flush` brings it back; a new run of the job revives it), then deleted from
    the gateway. The groups are listed first; --dry-run stops there.

    \b
    Example:
      jobreport prune --older-than 30d --dry-run
      jobreport prune --older-than 30d
    """
    setup_logging()
    from jobreport.commands.prune import prune_groups, stale_groups

    config = config_from(params)
    older_than = params["older_than"]
    if older_than <= 0:
        raise click.BadParameter("must be more than zero, e.g. 30d", param_hint="--older-than")
    stale = stale_groups(config, older_than)
    if params["as_json"]:
        if not params["dry_run"]:
            prune_groups(config, stale)
        click.echo(to_json({"dry_run": bool(params["dry_run"]),
                            "groups": [g.to_json() for g in stale]}))
        return
    if not stale:
        click.echo("no jobreport group is older than that: nothing to prune")
        return
    verb = "would delete" if params["dry_run"] else "deleting"
    for group in stale:
        click.echo(f"{verb} {group_text(group.grouping)} "
                   f"(last push {when(group.last_push)}, {age(group.age)})")
    if params["dry_run"]:
        click.echo(f"{len(stale)} group(s) would be deleted; run without --dry-run to do it")
        return
    done = prune_groups(config, stale)
    click.echo(f"deleted {len(done)} group(s)")
