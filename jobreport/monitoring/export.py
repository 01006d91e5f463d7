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
second export replaces what it wrote but not what someone edited since.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from jobreport._version import __version__
from jobreport.config import Config
from jobreport.monitoring import shipped
from jobreport.monitoring.dashboard import for_sink, grouping_labels, with_label_variables
from jobreport.monitoring.rewrite import (
    absolute_runbook,
    rename_namespace,
    top_level_sections,
)
from jobreport.monitoring.rules import absent_rules
from jobreport.names import DEFAULT_NAMESPACE

__all__ = [
    "ABSENT_FILE", "DASHBOARD", "MANIFEST", "SINKS", "ExportResult", "export_files", "write_export",
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

_ROUTE_HEADER = """\
# The Alertmanager side of jobreport for an existing alertmanager.yml (written by
# `jobreport monitoring export`; the complete example is alertmanager.yml beside it).
#
# 1. Paste the entry between the ">>> jobreport route" and "<<< jobreport route" lines
#    under route.routes: of your alertmanager.yml, before any route that would catch the
#    jobreport alerts first. It matches alertname=~"Jobreport.*" (every jobreport alert)
#    and routes by severity.
# 2. Paste the receivers under receivers: (or point the route at receivers you have), and
#    replace their REPLACE placeholders.
# 3. Paste the inhibition under inhibit_rules: (a down Pushgateway then pages once, not
#    once per job).
#
# This file alone is a valid configuration, its root route standing in for yours:
#   amtool check-config alertmanager-route.yml

"""


@dataclass
class ExportResult:
    """What ``write_export`` did, by path relative to the export directory."""

    written: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    #: edited since the last export (or not written by an export): left alone
    refused: list[str] = field(default_factory=list)


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


def _route_snippet() -> str:
    sections = top_level_sections(shipped.read("alertmanager.yml"),
                                  ("route", "inhibit_rules", "receivers"))
    return _ROUTE_HEADER + sections + "\n"


def export_files(
    config: Config,
    *,
    sink: str = "pushgateway",
    runbook_url: str | None = None,
    namespace: str | None = None,
    jobs: list[str] | None = None,
    lookback: str = "8d",
    variables: tuple[str, ...] = (),
) -> dict[str, str]:
    """The files of an export, path (relative to the export directory) -> text.

    ``namespace`` (default: the config's) renames every metric; ``runbook_url`` (checked
    with ``rewrite.check_runbook_url``) makes the runbook links absolute; ``jobs`` (default:
    every job of the config file) get an ``absent()`` guard. ``sink`` picks the rule variant
    (``variants.rules_for``; ``lookback`` for remote write) and the scrape job. The
    dashboard gets a variable per grouping label of those jobs and per label of
    ``variables``.
    """
    from jobreport.monitoring.variants import absent_variant

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
    # the guards in the jobreport namespace, so that the sink's variant recognises their
    # selectors; renamed below with the rest
    guards = absent_rules(dataclasses.replace(config, namespace=DEFAULT_NAMESPACE), jobs)
    out[ABSENT_FILE] = absent_variant(guards, sink, lookback)
    out["prometheus-scrape.yml"] = _SCRAPE_HEADER + _scrape_section(sink)
    out["alertmanager-route.yml"] = _route_snippet()
    labels = dict.fromkeys([*grouping_labels(config, jobs), *variables])
    out[DASHBOARD] = for_sink(with_label_variables(out[DASHBOARD], labels), sink, lookback)
    renamed = {path: rename_namespace(text, ns) for path, text in out.items()}
    if runbook_url:
        return {path: absolute_runbook(text, runbook_url) for path, text in renamed.items()}
    return renamed


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _read_manifest(directory: Path) -> dict[str, str]:
    try:
        data = json.loads((directory / MANIFEST).read_text(encoding="utf-8"))
        hashes = data["files"]
    except (OSError, ValueError, KeyError, TypeError):
        return {}  # no export yet, or a manifest someone broke: protect every file
    if not isinstance(hashes, dict):
        return {}
    return {str(k): str(v) for k, v in hashes.items()}


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


def write_export(directory: Path, files: Mapping[str, str], *,
                 force: bool = False) -> ExportResult:
    """Write ``files`` under ``directory``. A file whose content differs from what the last
    export wrote there (someone edited it, or no export wrote it) is refused, unless
    ``force``; every other file is written, and the manifest records what was."""
    manifest = _read_manifest(directory)
    recorded = dict(manifest)
    result = ExportResult()
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
            if not force and manifest.get(path) != current:
                result.refused.append(path)
                continue
        _write_atomically(target, data)
        result.written.append(path)
        recorded[path] = digest
    body = {"jobreport": __version__, "files": dict(sorted(recorded.items()))}
    _write_atomically(directory / MANIFEST,
                      (json.dumps(body, indent=2) + "\n").encode("utf-8"))
    return result
