"""``jobreport monitoring export``: the whole monitoring side, ready for a real Prometheus,
Alertmanager and Grafana, written to a directory.

The layout is the one of the repository's ``monitoring/`` (so its prometheus.yml and
docker-compose.yml work as they are), plus what fits into an existing setup:

- ``rules/`` the alert and recording rules, ``rules/generated/jobreport-absent.yml`` the
  ``absent()`` guards for the configured jobs, ``tests/`` their promtool unit tests;
- ``prometheus.yml`` a complete example, ``prometheus-scrape.yml`` the scrape job alone;
- ``alertmanager.yml`` a complete example, ``alertmanager-route.yml`` the jobreport route
  (``alertname=~"Jobreport.*"``), its receivers and inhibition, to paste under a root;
- ``grafana/`` the dashboard and its provisioning; ``docker-compose.yml``.

A manifest (``.jobreport-export.json``) holds the hash of every file as written, so that a
second export replaces what it wrote but not what someone edited since, and the options the
export was given, so that a second export with other options keeps them (``REMEMBERED``).

Every value a user types (job names, label values, the runbook URL) reaches the files as
quoted YAML and as template data, never as template code (``quoting``); metric names are
renamed in what jobreport wrote only, never in those values.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jobreport._version import __version__
from jobreport.config import Config
from jobreport.errors import JobReportError
from jobreport.monitoring import shipped
from jobreport.monitoring.alertmanager import alertmanager_config, route_snippet
from jobreport.monitoring.dashboard import for_sink, grouping_labels, with_label_variables
from jobreport.monitoring.rewrite import (
    absolute_runbook,
    check_runbook_url,
    rename_namespace,
    top_level_sections,
)
from jobreport.monitoring.rules import absent_rules
from jobreport.monitoring.variants import DEFAULT_LOOKBACK, check_lookback
from jobreport.names import check_job, check_namespace

__all__ = [
    "ABSENT_FILE", "DASHBOARD", "MANIFEST", "REMEMBERED", "SINKS", "ExportResult",
    "ExportWriteError", "Manifest", "check_label_names", "check_options", "export_files",
    "read_manifest", "remembered_options",
    "write_export",
]

#: The sinks a rule variant can be exported for (``--sink``).
SINKS = ("pushgateway", "remote-write", "textfile")
MANIFEST = ".jobreport-export.json"
ABSENT_FILE = "rules/generated/jobreport-absent.yml"
DASHBOARD = "grafana/dashboards/jobreport.json"

_SCRAPE_HEADER = """\
# The Prometheus side of jobreport for an existing prometheus.yml (written by
# `jobreport monitoring export`; the complete example is prometheus.yml beside it).
#
# 1. Add the scrape job below (if any) under scrape_configs: of your prometheus.yml, with
#    your own targets. Keep its job_name (the rules look for it) and honor_labels: true
#    (the alerts tell jobs and hosts apart by the labels the jobs report).
# 2. Copy rules/ next to your prometheus.yml and load the rules:
#      rule_files:
#        - rules/jobreport-recording.yml
#        - rules/jobreport-alerts.yml
#        - rules/generated/*.yml
#
# This file alone is a valid configuration: promtool check config prometheus-scrape.yml

"""

@dataclass
class ExportResult:
    """What ``write_export`` did, by path relative to the export directory."""

    written: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    #: edited since the last export (or not written by an export): left alone
    refused: list[str] = field(default_factory=list)


class ExportWriteError(JobReportError):
    """A file or directory of the export could not be written (exit code 4, as for the
    store: a local write that failed)."""

    exit_code = 4

    def __init__(self, path: Path, error: OSError) -> None:
        self.path = path
        super().__init__(f"cannot write {path}: {error.strerror or error}")


@dataclass
class Manifest:
    """What the last export into a directory recorded: the hash of each file it wrote
    (path -> sha256) and the options it was given (``REMEMBERED``)."""

    files: dict[str, str] = field(default_factory=dict)
    options: dict[str, Any] = field(default_factory=dict)


_NODE_SCRAPE = """\
scrape_configs:
  # The textfile rules look for up{job="node"}: keep this job_name, or change the
  # JobreportNodeExporter* rules with it. honor_labels: true keeps the job label each
  # textfile carries (the target gives the instance).
  - job_name: node
    honor_labels: true
    static_configs:
      - targets: ["127.0.0.1:9100"]
"""

_REMOTE_WRITE_SCRAPE = """\
# remote-write: the jobs write to Prometheus themselves, there is nothing to scrape. Start
# Prometheus with --web.enable-remote-write-receiver (or point the jobs at VictoriaMetrics,
# vmagent, Mimir, ...) and load the rules where the samples land.
scrape_configs: []
"""


def _sink_rules(sink: str, lookback: str) -> dict[str, str]:
    """The rule files (and, where they apply, their promtool tests) for ``sink``."""
    if sink == "pushgateway":
        # the shipped rules and their tests (the tests are written for these rules)
        return {path: shipped.read(path)
                for path in shipped.walk("rules") + shipped.walk("tests")}
    from jobreport.monitoring.variants import BASE_FILES, rules_for

    base = {name: shipped.read(f"rules/{name}") for name in BASE_FILES}
    return {f"rules/{name}": text
            for name, text in rules_for(sink, lookback=lookback, base=base).items()}


def _scrape_section(sink: str) -> str:
    if sink == "textfile":
        return _NODE_SCRAPE
    if sink == "remote-write":
        return _REMOTE_WRITE_SCRAPE
    return top_level_sections(shipped.read("prometheus.yml"), ("scrape_configs",)) + "\n"


def _prometheus_config(sink: str) -> str:
    """The complete example prometheus.yml, its scrape jobs those of ``sink``."""
    text = shipped.read("prometheus.yml")
    if sink == "pushgateway":
        return text
    start = text.index("\nscrape_configs:") + 1
    return text[:start] + _scrape_section(sink)


def export_files(
    config: Config,
    *,
    sink: str = "pushgateway",
    runbook_url: str | None = None,
    namespace: str | None = None,
    jobs: list[str] | None = None,
    lookback: str = DEFAULT_LOOKBACK,
    variables: tuple[str, ...] = (),
) -> dict[str, str]:
    """The files of an export, path (relative to the export directory) -> text.

    ``namespace`` (default: the config's) renames every metric; ``runbook_url`` (checked
    with ``rewrite.check_runbook_url``) makes the runbook links absolute; ``jobs`` (default:
    every job of the config file) get an ``absent()`` guard. ``sink`` picks the rule variant
    (``variants.rules_for``; ``lookback`` for remote write), the scrape job and the
    Alertmanager inhibition. The dashboard gets a variable per grouping label of those jobs
    and per label of ``variables``.
    """
    if sink not in SINKS:
        raise ValueError(f"unknown sink {sink!r}: use one of {', '.join(SINKS)}")
    ns = namespace or config.namespace
    out: dict[str, str] = {}
    for path in shipped.walk():
        if path.startswith(("rules/", "tests/")):
            continue  # the sink's variant decides
        out[path] = shipped.read(path)
    out.update(_sink_rules(sink, lookback))
    out["prometheus.yml"] = _prometheus_config(sink)
    out["prometheus-scrape.yml"] = _SCRAPE_HEADER + _scrape_section(sink)
    out["alertmanager.yml"] = alertmanager_config(sink)
    out["alertmanager-route.yml"] = route_snippet(sink)
    out[DASHBOARD] = for_sink(out[DASHBOARD], sink, lookback)
    # what jobreport wrote itself is renamed; what users typed (job names, label values and
    # names, the runbook URL) is added after, and never renamed
    out = {path: rename_namespace(text, ns) for path, text in out.items()}
    if runbook_url:
        for path, text in out.items():
            if path.startswith(("rules/", "tests/")):
                out[path] = absolute_runbook(text, runbook_url,
                                             template=path.startswith("rules/"))
    labels = dict.fromkeys([*grouping_labels(config, jobs), *variables])
    out[DASHBOARD] = with_label_variables(out[DASHBOARD], labels, namespace=ns)
    out[ABSENT_FILE] = absent_rules(config.with_overrides(namespace=ns), jobs,
                                    sink=sink, lookback=lookback, runbook_url=runbook_url)
    return out


_LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")

#: The options of ``export_files`` an export remembers in its manifest: a later export into
#: the same directory that is not given one of them uses the remembered value.
REMEMBERED = ("sink", "lookback", "runbook_url", "namespace", "jobs", "variables")


def check_options(options: Mapping[str, object]) -> dict[str, Any]:
    """``options`` (a subset of ``REMEMBERED``, as a manifest holds them) checked as the
    command line checks them: ValueError naming the first bad one."""
    checked: dict[str, Any] = {}
    for name, value in options.items():
        try:
            checked[name] = _check_option(name, value)
        except (ValueError, TypeError, JobReportError) as e:
            raise ValueError(f"{name}: {e}") from None
    return checked


def remembered_options(directory: Path, given: Mapping[str, Any], *,
                       reset: bool = False) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(kept, remember)``: the options the last export into ``directory`` was given that
    ``given`` (the options given now, of ``REMEMBERED``) lacks, checked as the command line
    checks them (ValueError naming a bad one; none when ``reset``), and what this export
    records in its manifest: ``given`` and ``kept``, as JSON."""
    before = {} if reset else read_manifest(directory).options
    kept = check_options({k: v for k, v in before.items() if k in REMEMBERED and k not in given})
    remember = {name: list(value) if isinstance(value, tuple) else value
                for name, value in {**given, **kept}.items()}
    return kept, {name: remember[name] for name in REMEMBERED if name in remember}


def check_label_names(names: Iterable[str]) -> tuple[str, ...]:
    """``names`` if each can name a label (letters, digits and underscores, not first a
    digit, not starting with ``__``), else ValueError naming the first that cannot."""
    names = tuple(names)
    for name in names:
        if not _LABEL_NAME.fullmatch(name) or name.startswith("__"):
            raise ValueError(f"{name!r} is not a label name (letters, digits and "
                             "underscores, not first a digit)")
    return names


def _check_option(name: str, value: object) -> Any:
    if name in ("jobs", "variables"):
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise TypeError("not a list of strings")
        if name == "jobs":
            return tuple(check_job(job) for job in value)
        return check_label_names(value)
    if not isinstance(value, str):
        raise TypeError("not a string")
    if name == "sink" and value not in SINKS:
        raise ValueError(f"unknown sink {value!r}")
    if name == "lookback":
        check_lookback(value)
    if name == "runbook_url":
        return check_runbook_url(value)
    if name == "namespace":
        return check_namespace(value)
    if name not in REMEMBERED:
        raise ValueError("not an option of the export")
    return value


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def read_manifest(directory: Path) -> Manifest:
    """The manifest of the last export into ``directory`` (empty when there is none, or
    when someone broke it: then every file there is protected)."""
    try:
        data = json.loads((directory / MANIFEST).read_text(encoding="utf-8"))
        hashes, options = data["files"], data.get("options", {})
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return Manifest()
    if not isinstance(hashes, dict):
        return Manifest()
    return Manifest(files={str(k): str(v) for k, v in hashes.items()},
                    options=dict(options) if isinstance(options, dict) else {})


def _write_atomically(target: Path, data: bytes) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, 0o644)  # config files Prometheus or a container may read
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def write_export(directory: Path, files: Mapping[str, str], *, force: bool = False,
                 options: Mapping[str, object] | None = None) -> ExportResult:
    """Write ``files`` under ``directory``. A file whose content differs from what the last
    export wrote there (someone edited it, or no export wrote it) is refused, unless
    ``force``; every other file is written, and the manifest records what was, with
    ``options`` (JSON-able: what the export was given of ``REMEMBERED``).

    A file that cannot be written raises ``ExportWriteError``; the manifest still records
    the files written before it (a later export must not take them for edited ones).
    """
    manifest = read_manifest(directory)
    recorded = dict(manifest.files)
    result = ExportResult()

    def record() -> None:
        body = {"jobreport": __version__, "options": dict(options or {}),
                "files": dict(sorted(recorded.items()))}
        _write_atomically(directory / MANIFEST,
                          (json.dumps(body, indent=2) + "\n").encode("utf-8"))

    target = directory
    try:
        for path, text in sorted(files.items()):
            target = directory / path
            data = text.encode("utf-8")
            digest = _digest(data)
            if target.is_file():
                current = _digest(target.read_bytes())
                if current == digest:
                    result.unchanged.append(path)
                    recorded[path] = digest
                    continue
                if not force and manifest.files.get(path) != current:
                    result.refused.append(path)
                    continue
            _write_atomically(target, data)
            result.written.append(path)
            recorded[path] = digest
        target = directory / MANIFEST
        record()
    except OSError as e:
        if result.written:
            with contextlib.suppress(OSError):
                record()
        raise ExportWriteError(target, e) from None
    return result
