"""``jobreport rules``: Prometheus rules with an absent() guard per configured job."""

from __future__ import annotations

from typing import Any

import click

from jobreport.cli.app import EXIT_CODES_HELP, cli, library_errors, setup_logging
from jobreport.cli.options import config_from, opt, settings_options

__all__ = ["rules"]


@cli.command(epilog=EXIT_CODES_HELP)
@opt("--job", "jobs", envvar="JOBREPORT_RULES_JOB", multiple=True, metavar="NAME",
     help="Write a guard for this job (repeatable) [default: every job of the config file].")
@settings_options(instance=False)
@library_errors
def rules(**params: Any) -> None:
    """Print Prometheus alerting rules with an absent() guard per configured job.

    The guard fires when Prometheus has no data for a job at all (it never reported, its
    group was deleted, or the Pushgateway lost its data). Jobs come from the [jobs.NAME]
    sections of the config file. The output passes `promtool check rules`.

    \b
    Example:
      jobreport rules > /etc/prometheus/rules/jobreport-absent.yml
    """
    setup_logging()
    from jobreport.monitoring.rules import absent_rules

    config = config_from(params)
    jobs = list(params["jobs"]) or None
    if jobs is None and not config.jobs:
        click.echo("jobreport: no [jobs.NAME] sections in the config file "
                   f"({config.config_file or 'none found'}); the rules file is empty",
                   err=True)
    click.echo(absent_rules(config, jobs), nl=False)
