"""``jobreport monitoring``: the monitoring side that ships with the package (``export``
writes it to a directory, ``runbook`` shows the runbook)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click
from click.core import ParameterSource

from jobreport.cli.app import cli, fail, library_errors, setup_logging
from jobreport.cli.options import job_names, opt

__all__ = ["monitoring"]

EXPORT_EXIT_CODES = """\b
Exit codes: 0 every file written (or already up to date); 1 some files were
edited since the last export and left alone (see --force), the rest written;
2 usage or configuration error, nothing written; 4 the export could not be
written (a directory or file that cannot be created or replaced; as 4 is for
the other commands a store that cannot be written).
"""

#: What ``export`` exits with (EXPORT_EXIT_CODES).
EXIT_LEFT_ALONE = 1
EXIT_NOT_WRITTEN = 4

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
    from jobreport.monitoring.export import check_label_names

    try:
        return check_label_names(value)
    except ValueError as e:
        raise click.BadParameter(str(e), ctx, param) from None


@monitoring.command(epilog=EXPORT_EXIT_CODES)
@click.argument("directory", metavar="DIR",
                type=click.Path(file_okay=False, path_type=Path))
@opt("--sink", envvar="JOBREPORT_EXPORT_SINK", type=click.Choice(_SINKS),
     default="pushgateway", show_default=True,
     help="The sink the jobs deliver to: picks the rule variant, the scrape job and the "
          "Alertmanager inhibition.")
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
     callback=job_names,
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
@opt("--reset-options", is_flag=True, envvar="JOBREPORT_EXPORT_RESET_OPTIONS",
     help="Forget the options the last export into DIR was given: what is not given now "
          "takes its default.")
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

    DIR remembers the options an export was given (--sink, --lookback, --runbook-url,
    --namespace, --job, --grouping-label, as flags or environment): a later export into DIR
    keeps each one it is not given, and says so; --reset-options forgets them.

    \b
    Example:
      jobreport monitoring export ./monitoring --runbook-url https://wiki.example.org/jobreport
      promtool check config ./monitoring/prometheus.yml
    """
    from jobreport.config import load_config
    from jobreport.monitoring.export import ExportWriteError, export_files, write_export
    from jobreport.names import check_namespace

    setup_logging()
    directory: Path = params["directory"]
    given = _remembered_options(click.get_current_context(), params, directory)
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
        result = write_export(directory, files, force=params["force"], options=given)
    except ExportWriteError as e:
        fail(str(e), "pass a directory you can write to", EXIT_NOT_WRITTEN)
    click.echo(f"{directory}: {_files(len(result.written))} written, "
               f"{len(result.unchanged)} unchanged")
    if result.refused:
        fail("not overwritten, edited since the last export: " + ", ".join(result.refused),
             "pass --force to overwrite them (or move them aside)", EXIT_LEFT_ALONE)


#: Option name -> its flag, for the options an export remembers (export.REMEMBERED).
_FLAGS = {"sink": "--sink", "lookback": "--lookback", "runbook_url": "--runbook-url",
          "namespace": "--namespace", "jobs": "--job", "variables": "--grouping-label"}


def _remembered_options(ctx: click.Context, params: dict[str, Any],
                        directory: Path) -> dict[str, Any]:
    """Fill ``params`` with the options the last export into ``directory`` was given and
    this one is not (unless --reset-options), saying which; return those to remember."""
    from jobreport.monitoring.export import MANIFEST, REMEMBERED, remembered_options

    given = {name: params[name] for name in REMEMBERED
             if ctx.get_parameter_source(name) not in (ParameterSource.DEFAULT, None)}
    try:
        kept, remember = remembered_options(directory, given, reset=params["reset_options"])
    except ValueError as e:
        raise click.UsageError(
            f"{directory / MANIFEST} remembers a bad option ({e}): give it again, or pass "
            "--reset-options") from None
    params.update(kept)
    if kept:
        shown = ", ".join(_shown(_FLAGS[k], v) for k, v in kept.items())
        click.echo(f"jobreport: kept from the last export into {directory}: {shown} "
                   "(--reset-options forgets them)", err=True)
    return remember


def _shown(flag: str, value: object) -> str:
    """``--flag value`` as a shell would take it (each value of a repeated flag)."""
    import shlex

    if isinstance(value, (tuple, list)):
        return " ".join(_shown(flag, v) for v in value)
    text = str(value)
    return f"{flag} {shlex.quote(text) if text.isprintable() else repr(text)}"


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
