"""``jobreport monitoring``: the monitoring side that ships with the package (``export``
writes it to a directory, ``runbook`` shows the runbook)."""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

import click

from jobreport.cli.app import cli, fail, library_errors, setup_logging
from jobreport.cli.options import opt

__all__ = ["monitoring"]

EXPORT_EXIT_CODES = """\b
Exit codes: 0 every file written (or already up to date); 1 some files were
edited since the last export and left alone (see --force); 2 usage or
configuration error.
"""

_SINKS = ("pushgateway", "remote-write", "textfile")


@cli.group()
def monitoring() -> None:
    """The Prometheus rules, Alertmanager route and Grafana dashboard that ship with jobreport.

    \b
    Example:
      jobreport monitoring export /etc/jobreport/monitoring --runbook-url https://wiki/runbook
    """


def _runbook_url(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    if value is None:
        return None
    from jobreport.monitoring.rewrite import check_runbook_url

    try:
        return check_runbook_url(value)
    except ValueError as e:
        raise click.BadParameter(str(e), ctx, param) from None


def _label_names(ctx: click.Context, param: click.Parameter,
                 value: tuple[str, ...]) -> tuple[str, ...]:
    for name in value:
        if not re.fullmatch(r"[a-zA-Z_][a-zA-Z0-9_]*", name) or name.startswith("__"):
            raise click.BadParameter(f"{name!r} is not a label name (letters, digits and "
                                     "underscores, not first a digit)", ctx, param)
    return value


@monitoring.command(epilog=EXPORT_EXIT_CODES)
@click.argument("directory", metavar="DIR",
                type=click.Path(file_okay=False, path_type=Path))
@opt("--sink", envvar="JOBREPORT_EXPORT_SINK", type=click.Choice(_SINKS),
     default="pushgateway", show_default=True,
     help="The sink the jobs deliver to: picks the rule variant and the scrape job.")
@opt("--lookback", envvar="JOBREPORT_RULES_LOOKBACK", default="8d", show_default=True,
     metavar="DURATION",
     help="remote-write: how far the rules look back for a job's last sample; at least the "
          "longest interval of any job.")
@opt("--runbook-url", envvar="JOBREPORT_RUNBOOK_URL", metavar="URL", callback=_runbook_url,
     help="Where the runbook is published: runbook_url annotations become URL#alert "
          "[default: relative docs/runbook.md links].")
@opt("--namespace", envvar="JOBREPORT_NAMESPACE", metavar="NS",
     help="The metric namespace the jobs push [default: the config's, else jobreport].")
@opt("--job", "jobs", envvar="JOBREPORT_RULES_JOB", multiple=True, metavar="NAME",
     help="Write an absent() guard for this job (repeatable) "
          "[default: every job of the config file].")
@opt("--grouping-label", "variables", envvar="JOBREPORT_EXPORT_GROUPING_LABEL", multiple=True,
     metavar="LABEL", callback=_label_names,
     help="Give the dashboard a variable for this grouping label (repeatable) [default: the "
          "labels of the configured jobs].")
@opt("--config", "config_file", envvar="JOBREPORT_CONFIG", metavar="FILE",
     help="Config file, for the jobs of the absent() guards [default: "
          "$XDG_CONFIG_HOME/jobreport/jobreport.toml, else /etc/jobreport/jobreport.toml].")
@opt("--force", is_flag=True, envvar="JOBREPORT_EXPORT_FORCE",
     help="Overwrite files edited since the last export.")
@library_errors
def export(**params: Any) -> None:
    """Write the rules, scrape job, Alertmanager route and Grafana dashboard to DIR.

    DIR gets the layout of the repository's monitoring/ directory: rules/ (alerts,
    recording rules, rules/generated/jobreport-absent.yml with an absent() guard per
    configured job), tests/ (promtool unit tests), prometheus.yml and alertmanager.yml
    (complete examples), prometheus-scrape.yml and alertmanager-route.yml (to paste into
    an existing Prometheus and Alertmanager), grafana/ and docker-compose.yml. A second
    export replaces the files it wrote, but not the files edited since (they are named;
    --force overwrites them).

    \b
    Example:
      jobreport monitoring export ./monitoring --runbook-url https://wiki.example.org/jobreport
      promtool check config ./monitoring/prometheus.yml
    """
    from jobreport.config import load_config
    from jobreport.monitoring.export import export_files, write_export
    from jobreport.names import check_namespace

    setup_logging()
    directory: Path = params["directory"]
    overrides = {"config_file": params["config_file"]} if params["config_file"] else {}
    config = load_config(**overrides)
    namespace = check_namespace(params["namespace"]) if params["namespace"] else None
    jobs = list(params["jobs"]) or None
    if jobs is None and not config.jobs:
        click.echo("jobreport: no [jobs.NAME] sections in the config file "
                   f"({config.config_file or 'none found'}); the absent() guards file "
                   "is empty", err=True)
    try:
        files = export_files(config, sink=params["sink"], runbook_url=params["runbook_url"],
                             namespace=namespace, jobs=jobs, lookback=params["lookback"],
                             variables=tuple(params["variables"]))
    except ValueError as e:  # a lookback promtool would not take
        raise click.BadParameter(str(e), param_hint="'--lookback'") from None
    try:
        result = write_export(directory, files, force=params["force"])
    except OSError as e:
        fail(f"cannot write the export to {directory}: {e.strerror or e}",
             "pass a directory you can write to", 1)
    click.echo(f"{directory}: {_files(len(result.written))} written, "
               f"{len(result.unchanged)} unchanged")
    if result.refused:
        fail("not overwritten, edited since the last export: " + ", ".join(result.refused),
             "pass --force to overwrite them (or move them aside)", 1)


def _files(n: int) -> str:
    return f"{n} file" if n == 1 else f"{n} files"


@monitoring.command()
@opt("--show", is_flag=True, envvar="JOBREPORT_RUNBOOK_SHOW",
     help="Print the runbook itself instead of where it is.")
@library_errors
def runbook(show: bool) -> None:
    """Print where the runbook that ships with jobreport is (the page each alert links to).

    \b
    Example:
      jobreport monitoring runbook
      jobreport monitoring runbook --show | less
    """
    from jobreport.monitoring import shipped

    page = shipped.runbook()
    if show:
        sys.stdout.write(page.read_text(encoding="utf-8"))
    else:
        # in a checkout the packaged page is a symlink: name the file itself
        click.echo(str(page.resolve()) if isinstance(page, Path) else str(page))
