"""``jobreport status``: what the Pushgateway holds now; with ``--check``, as a monitoring
plugin says it."""

from __future__ import annotations

import sys
import threading
from typing import Any, NoReturn

import click

from jobreport.cli.app import (
    EXIT_CODES_HELP,
    cli,
    library_errors,
    setup_logging,
    to_json,
)
from jobreport.cli.formatting import status_table
from jobreport.cli.options import config_from, json_option, opt, settings_options
from jobreport.config import Config
from jobreport.errors import JobReportError

__all__ = ["CHECK_TIME", "status"]

#: The whole of ``status --check`` ends within this many seconds, whatever the gateway or
#: the store do (a monitoring plugin is given 10 s by default): then UNKNOWN.
CHECK_TIME = 8.0
UNKNOWN = 3

#: The settings options this command uses.
USE = ("gateway", "remote_write_url", "textfile_dir", "db", "config_file")


class _StatusCommand(click.Command):
    """With ``--check``, even a usage error is a plugin's UNKNOWN (exit 3, one status line
    on stdout), as the monitoring-plugin guidelines want: a typo in the check's command
    line must not read as a CRITICAL job."""

    def make_context(self, info_name: str | None, args: list[str],
                     parent: click.Context | None = None, **extra: Any) -> click.Context:
        checking = "--check" in args or _env_flag("JOBREPORT_STATUS_CHECK")
        try:
            return super().make_context(info_name, args, parent=parent, **extra)
        except click.UsageError as e:
            if not checking:
                raise
            _unknown(f"usage: {e.format_message()}")


@cli.command(cls=_StatusCommand, epilog=EXIT_CODES_HELP)
@json_option()
@opt("--check", "as_check", is_flag=True, envvar="JOBREPORT_STATUS_CHECK",
     help="Be a monitoring plugin (Nagios, Icinga): one status line first (JOBREPORT "
          "CRITICAL - 1 overdue ...), then the details; exit 0 OK, 1 WARNING, 2 "
          "CRITICAL (the severity of the gravest alert the shipped rules would fire; "
          "runs a sink has not received are a WARNING), 3 UNKNOWN (the gateway cannot "
          "be read); within 8 s [default: exit 0 whatever the groups' state].")
@settings_options(use=USE)
def status(**params: Any) -> None:
    """Show what the Pushgateway holds now, per job and instance, problems first; with
    --remote-write or --textfile-dir, also what each sink has not received yet. The groups
    of other pushers (without jobreport_info) are counted, and shown only when they have a
    problem (pushes to them failing, a value that cannot be judged).

    A group has a problem when an alert rule of jobreport's would fire for it: it is
    overdue (no success within its expected interval, or past its schedule's success
    deadline), it never succeeded, it missed its scheduled start, its last run failed (as
    many times in a row as --alert-after-failures), it was shorter than its minimum
    runtime, it runs longer than its max runtime, its heartbeat was lost, or pushes to it
    are failing. NEXT DEADLINE shows the next deadline a group pushed (a schedule's, or
    when an --expect-every job is overdue) and whether it has passed. The exit code is 0
    whatever the groups' state (alerts are Prometheus's job), 3 when the gateway cannot
    be read; --check exits as a monitoring plugin does.

    \b
    Example:
      jobreport status --gateway http://127.0.0.1:9091
      jobreport status --check     # in Nagios: check_command ... jobreport status --check
    """
    if params["as_check"]:
        _check(params)
    else:
        _show(params)


@library_errors
def _show(params: dict[str, Any]) -> None:
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
    found = gateway_status(config, sinks=sinks)
    if params["as_json"]:
        click.echo(to_json([g.to_json() for g in found.groups]))
        return
    others = (f"{found.others} group(s) of other pushers not shown (without "
              f"{config.namespace}_info, no problem)")
    if found.groups:
        click.echo(status_table(found.groups))
        if found.others:
            click.echo(others)
    elif found.others:
        click.echo(f"the Pushgateway holds no groups of jobreport's; {others}")
    else:
        click.echo("the Pushgateway holds no groups")
    for line in _undelivered(config.db):
        click.echo(line)
    if unlisted:
        _backlogs(config)


def _check(params: dict[str, Any]) -> None:
    """``--check``: everything is printed at the end, so that the watchdog's UNKNOWN (the
    check took too long) never mixes with a half-printed report."""
    watchdog = threading.Timer(CHECK_TIME, _too_long,
                               (f"no result within {CHECK_TIME:g}s (the gateway or the "
                                "store does not answer)",))
    watchdog.daemon = True
    watchdog.start()
    setup_logging(quiet=True)  # a plugin's output is its report: no warning lines
    from jobreport.commands.status_check import check_status

    try:
        config = config_from(params)
        report = check_status(config)
    except JobReportError as e:
        _unknown(str(e))
    watchdog.cancel()
    if params["as_json"]:
        click.echo(to_json({"state": report.state, "status": report.status_line,
                            "details": report.details,
                            "groups": [g.to_json() for g in report.groups]}))
    else:
        lines = [report.status_line, *report.details]
        if report.groups:
            lines += ["", status_table(report.groups)]
        click.echo("\n".join(lines))
    sys.exit(report.state)


def _unknown(reason: str) -> NoReturn:
    """Say UNKNOWN in the plugin's one status line and exit 3."""
    from jobreport.commands.status_check import PluginReport
    from jobreport.secrets import mask

    sys.stdout.write(PluginReport(UNKNOWN, " ".join(mask(reason).split())).status_line + "\n")
    sys.stdout.flush()
    sys.exit(UNKNOWN)


def _too_long(reason: str) -> None:
    """The watchdog's UNKNOWN: from its own thread, so the process is left at once."""
    import os

    try:
        _unknown(reason)
    except SystemExit:
        os._exit(UNKNOWN)


def _env_flag(name: str) -> bool:
    import os

    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


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
