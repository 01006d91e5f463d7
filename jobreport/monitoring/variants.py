"""The alert and recording rules per sink, generated from the base rules (the Pushgateway's).

The base rules (monitoring/rules/jobreport-alerts.yml and jobreport-recording.yml) are
written for series that a scrape of the Pushgateway keeps fresh. The other sinks need:

- ``remote-write``: a receiver holds only the samples that were written, one per delivery.
  Five minutes after a job's last delivery its series are stale and a plain selector finds
  nothing, so "overdue" could never fire. Every ``jobreport_*`` selector becomes
  ``last_over_time(selector[LOOKBACK])``: the newest value within a window at least as long
  as the longest interval of any job (default 8 days: a weekly job plus its grace). The
  Pushgateway's own rules (push failures, gateway down) have no counterpart and are left out.
- ``textfile``: node_exporter serves the files and Prometheus scrapes it, so the series stay
  fresh as with the Pushgateway; the gateway rules become node_exporter's (textfile errors,
  node_exporter down or not scraped, scrape job ``node``).

The variants are derived from the base rules by rewriting their expressions, so that a rule
added to the base files (MissedStart, TooShort, ...) gets its variants without an edit here.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import Any

from jobreport.durations import parse_duration
from jobreport.monitoring.quoting import Literal, dump_yaml

__all__ = ["DEFAULT_LOOKBACK", "NODE_DOWN", "NODE_JOB", "NODE_NOT_SCRAPED", "SINKS",
           "check_lookback", "lookback_selectors", "rule_set", "rules_for"]

SINKS = ("pushgateway", "remote-write", "textfile")
DEFAULT_LOOKBACK = "8d"
#: The scrape job of node_exporter the textfile rules expect.
NODE_JOB = "node"
#: The textfile rules' alerts that hide the jobs of one host, or of every host.
NODE_DOWN = "JobreportNodeExporterDown"
NODE_NOT_SCRAPED = "JobreportNodeExporterNotScraped"
BASE_FILES = ("jobreport-alerts.yml", "jobreport-recording.yml")

# a jobreport series selector, with its label matchers: not part of a longer name, not a
# recording rule (jobreport:...), not already a range or a function call (the "{" keeps a
# selector with matchers that is a range, increase(x{a="b"}[1d]), from matching as a bare x)
_SELECTOR = re.compile(r"(?<![\w:])(jobreport_[A-Za-z0-9_]+)(\{[^{}]*\})?(?![\w:(\[{])")
# what only a Pushgateway exposes
_GATEWAY = re.compile(r"push_time_seconds|push_failure_time_seconds|job=\"pushgateway\"")


def lookback_selectors(expr: str, lookback: str) -> str:
    """``expr`` with every ``jobreport_*`` selector wrapped in ``last_over_time(...[W])``."""
    return _SELECTOR.sub(lambda m: f"last_over_time({m.group(1)}{m.group(2) or ''}"
                                   f"[{lookback}])", expr)


def rules_for(sink: str, *, lookback: str = DEFAULT_LOOKBACK,
              base: Mapping[str, str] | None = None) -> dict[str, str]:
    """The rule files (name -> YAML text) for ``sink``, from the base rules (``base``: file
    name -> text, default the packaged ones). Each passes ``promtool check rules``."""
    import yaml

    if sink not in SINKS:
        raise ValueError(f"unknown sink {sink!r}: use one of {', '.join(SINKS)}")
    check_lookback(lookback)
    sources = dict(base) if base is not None else base_rules()
    out: dict[str, str] = {}
    for name, text in sources.items():
        if sink == "pushgateway":
            out[name] = text
            continue
        doc = yaml.safe_load(text) or {}
        for group in doc.get("groups", []):
            group["rules"] = _rules(group.get("rules") or [], sink, lookback)
            if name == "jobreport-alerts.yml" and sink == "textfile":
                group["rules"] += _node_rules()
        header = (f"# Generated from {name} for the {sink} sink by `jobreport rules --sink "
                  f"{sink}`" + (f" (lookback {lookback})" if sink == "remote-write" else "")
                  + ".\n# docs/sinks.md says what differs from the Pushgateway rules.\n")
        out[name] = header + dump_yaml(doc)
    return out


def rule_set(sink: str, guards: Mapping[str, Any], *, lookback: str = DEFAULT_LOOKBACK,
             interval: str | None = None) -> str:
    """One rules file for ``sink``: its alert and recording rules, then the group of
    ``absent()`` guards ``guards`` (``rules.guard_group``, made for the same sink).
    ``interval`` sets each group's evaluation interval (a large fleet's remote-write rules
    look back days for every series: once a minute is plenty for them)."""
    import yaml

    if interval is not None:
        check_lookback(interval, what="interval")

    groups: list[Any] = []
    for text in rules_for(sink, lookback=lookback).values():
        groups += (yaml.safe_load(text) or {}).get("groups", [])
    if guards.get("rules"):
        groups.append(dict(guards))
    for group in groups:
        if interval is not None:
            group["interval"] = interval
        for rule in group.get("rules", []):
            rule["expr"] = Literal(str(rule["expr"]))
    head = (f"# Generated by `jobreport rules --sink {sink}"
            + (f" --lookback {lookback}" if sink == "remote-write" else "")
            + "`: alerts, recording rules and absent() guards.\n"
            "# Check with: promtool check rules FILE. docs/sinks.md explains the variant.\n")
    return head + dump_yaml({"groups": groups})


def base_rules() -> dict[str, str]:
    """The base rule files, from the package data or, in a source checkout, monitoring/."""
    found: dict[str, str] = {}
    for name in BASE_FILES:
        for path in _candidates(name):
            try:
                found[name] = path.read_text(encoding="utf-8")
                break
            except OSError:
                continue
    if not found:
        raise FileNotFoundError("the jobreport rule files are not installed "
                                "(monitoring/rules/jobreport-alerts.yml)")
    return found


def _candidates(name: str) -> list[Any]:
    here = Path(__file__).resolve().parent
    paths: list[Any] = []
    try:
        data = resources.files("jobreport.monitoring")
        paths += [data / "data" / "rules" / name, data / "rules" / name]
    except (ModuleNotFoundError, TypeError):
        pass
    paths.append(here.parent.parent / "monitoring" / "rules" / name)
    return paths


def _rules(rules: list[dict[str, Any]], sink: str, lookback: str) -> list[dict[str, Any]]:
    out = []
    for rule in rules:
        expr = str(rule.get("expr", ""))
        if _GATEWAY.search(expr):
            continue  # the Pushgateway's own health: no counterpart (textfile: _node_rules)
        new = dict(rule)
        new["expr"] = Literal(lookback_selectors(expr, lookback) if sink == "remote-write"
                               else expr)
        out.append(new)
    return out


def _node_rules() -> list[dict[str, Any]]:
    def alert(name: str, expr: str, summary: str, description: str) -> dict[str, Any]:
        return {
            "alert": name, "expr": Literal(expr + "\n"), "for": "1m",
            "labels": {"severity": "critical"},
            "annotations": {"summary": summary, "description": description,
                            "runbook_url": f"docs/runbook.md#{name.lower()}"},
        }

    return [
        alert("JobreportTextfileError", "node_textfile_scrape_error == 1",
              "node_exporter on {{ $labels.instance }} cannot read a textfile",
              "node_exporter's textfile collector failed to read a file in its directory "
              "(a malformed or unreadable .prom file): the jobs on this host are not up to "
              "date in Prometheus. node_exporter's log names the file."),
        alert(NODE_DOWN, f'up{{job="{NODE_JOB}"}} == 0',
              "node_exporter {{ $labels.instance }} is down",
              "Prometheus has failed to scrape node_exporter on {{ $labels.instance }} for "
              "at least a minute: the jobs that write textfiles there are not visible."),
        alert(NODE_NOT_SCRAPED, f'absent(up{{job="{NODE_JOB}"}})',
              f'No node_exporter is scraped (job "{NODE_JOB}")',
              f'Prometheus has no scrape target with job="{NODE_JOB}": no textfile metric '
              "reaches it. The scrape job must be named so and use honor_labels: true."),
    ]


def check_lookback(lookback: str, what: str = "lookback") -> None:
    """Raise ValueError unless ``lookback`` is a Prometheus duration longer than zero."""
    if not re.fullmatch(r"(\d+[smhdwy])+", lookback) or parse_duration(lookback) <= 0:
        raise ValueError(f"{what} {lookback!r}: use a Prometheus duration such as 8d or 36h")
