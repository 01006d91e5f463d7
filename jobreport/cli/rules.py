"""``jobreport rules``: Prometheus rules with an absent() guard per configured job."""

from __future__ import annotations

from typing import Any

import click

from jobreport.cli.app import EXIT_CODES_HELP, cli, library_errors, setup_logging
from jobreport.cli.options import config_from, job_names, opt, settings_options

__all__ = ["rules"]

#: The settings options this command uses.
USE = ("config_file",)


@cli.command(epilog=EXIT_CODES_HELP)
@opt("--job", "jobs", envvar="JOBREPORT_RULES_JOB", multiple=True, metavar="NAME",
     callback=job_names,
     help="Write a guard for this job (repeatable) [default: every job of the config file].")
@opt("--sink", type=click.Choice(["pushgateway", "remote-write", "textfile"]),
     envvar="JOBREPORT_RULES_SINK", default=None,
     help="Print the whole rule set (alerts, recording rules, guards) for this sink "
          "[default: only the absent() guards].")
@opt("--lookback", envvar="JOBREPORT_RULES_LOOKBACK", default="8d", show_default=True,
     metavar="DURATION",
     help="remote-write: how far the rules look back for a job's last sample; at least the "
          "longest interval of any job.")
@opt("--interval", envvar="JOBREPORT_RULES_INTERVAL", default=None, metavar="DURATION",
     help="With --sink: the evaluation interval of every rule group [default: Prometheus' "
          "global one]; e.g. 1m for the remote-write rules of a large fleet.")
@settings_options(use=USE)
@library_errors
def rules(**params: Any) -> None:
    """Print Prometheus alerting rules with an absent() guard per configured job.

    The guard fires when Prometheus has no data for a job at all (it never reported, its
    group was deleted, or the Pushgateway lost its data). Jobs come from the [jobs.NAME]
    sections of the config file. The output passes `promtool check rules`.

    With --sink, the alert and recording rules that fit that sink come first: the
    remote-write variant looks back over --lookback, since remote-written samples of a job
    that does not run go stale; the textfile variant watches node_exporter.

    \b
    Example:
      jobreport rules > /etc/prometheus/rules/jobreport-absent.yml
      jobreport rules --sink remote-write --lookback 8d > jobreport.yml
    """
    setup_logging()
    from jobreport.monitoring.rules import absent_rules, guard_group

    config = config_from(params)
    jobs = list(params["jobs"]) or None
    if jobs is None and not config.jobs:
        click.echo("jobreport: no [jobs.NAME] sections in the config file "
                   f"({config.config_file or 'none found'}): no absent() guards "
                   "(--job NAME writes one)", err=True)
    sink, lookback = params["sink"], params["lookback"]
    try:
        if sink is None:
            click.echo(absent_rules(config, jobs), nl=False)
            return
        from jobreport.monitoring.variants import rule_set

        guards = guard_group(config, jobs, sink=sink, lookback=lookback)
        click.echo(rule_set(sink, guards, lookback=lookback, interval=params["interval"]),
                   nl=False)
    except ValueError as e:
        hint = "--interval" if str(e).startswith("interval") else "--lookback"
        raise click.BadParameter(str(e), param_hint=hint) from None
