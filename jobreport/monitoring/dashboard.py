"""The Grafana dashboard of an export: a template variable per grouping label.

The shipped dashboard (monitoring/grafana/dashboards/jobreport.json) filters by ``job`` and
``instance``; every query selects ``instance=~"$instance"``. The grouping labels a site
adds (``--label team=data``, ``labels = {...}`` in a job's section) are known only from its
config, so the export adds one variable per label and the matching ``label=~"$label"`` to
every selector. A job without that label still matches the variable's "All" (``.*``
matches the empty value).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from jobreport.config import Config
from jobreport.names import DEFAULT_NAMESPACE

__all__ = ["for_sink", "grouping_labels", "with_label_variables"]

#: Labels the dashboard has variables for already, or that are not grouping labels.
_OWN = frozenset({"job", "instance", "datasource", "filters", "outcome"})
_ANCHOR = 'instance=~"$instance"'


def grouping_labels(config: Config, jobs: Iterable[str] | None = None) -> list[str]:
    """The grouping label names of ``jobs`` (default: every job of the config file) and of
    the config's own labels, besides ``job`` and ``instance``, sorted."""
    names = set(config.jobs) if jobs is None else set(jobs)
    found: set[str] = set()
    for job in names or {"_"}:  # no job: the labels every job gets
        found.update(config.grouping(job))
    return sorted(found - _OWN)


def with_label_variables(text: str, labels: Iterable[str],
                         namespace: str = DEFAULT_NAMESPACE) -> str:
    """The dashboard JSON ``text`` (its metrics in ``namespace``) with a variable per label
    of ``labels`` (after ``instance``) and each query narrowed by it; ``text`` unchanged for
    no labels."""
    wanted = [name for name in labels if name not in _OWN]
    if not wanted:
        return text
    board: dict[str, Any] = json.loads(text)
    narrowed = _ANCHOR + "".join(f', {name}=~"${name}"' for name in wanted)

    def narrow(expr: str) -> str:
        return expr.replace(_ANCHOR, narrowed)

    for panel in _panels(board["panels"]):
        for target in panel.get("targets", []):
            target["expr"] = narrow(target["expr"])
    variables: list[dict[str, Any]] = board["templating"]["list"]
    at = next((i + 1 for i, v in enumerate(variables) if v.get("name") == "instance"),
              len(variables))
    for offset, name in enumerate(wanted):
        # narrowed by the variables before it only (a variable may not depend on itself
        # or on one that depends on it)
        before = "".join(f', {other}=~"${other}"' for other in wanted[:offset])
        variables.insert(at + offset, _variable(
            name, f'{namespace}_last_start_timestamp_seconds{{job=~"$job", {_ANCHOR}{before}}}'))
    return json.dumps(board, indent=2, ensure_ascii=False) + "\n"


def for_sink(text: str, sink: str, lookback: str) -> str:
    """The dashboard JSON ``text`` for ``sink``: for remote write every ``jobreport_*``
    selector of a panel looks back over ``lookback`` (remote-written samples of a job that
    does not run go stale after five minutes, as in the rules' variant); ``text`` unchanged
    for the other sinks. The variables' ``label_values()`` need plain selectors and search
    the dashboard's time range anyway."""
    if sink != "remote-write":
        return text
    from jobreport.monitoring.variants import lookback_selectors

    board: dict[str, Any] = json.loads(text)
    for panel in _panels(board["panels"]):
        for target in panel.get("targets", []):
            target["expr"] = lookback_selectors(target["expr"], lookback)
    return json.dumps(board, indent=2, ensure_ascii=False) + "\n"


def _panels(panels: list[dict[str, Any]]) -> Iterable[dict[str, Any]]:
    for panel in panels:
        yield panel
        yield from _panels(panel.get("panels", []))  # collapsed rows


def _variable(name: str, selector: str) -> dict[str, Any]:
    query = f"label_values({selector}, {name})"
    return {
        "name": name, "label": name, "type": "query",
        "datasource": {"type": "prometheus", "uid": "${datasource}"},
        "query": {"query": query, "refId": f"{name}-var"}, "definition": query,
        "refresh": 2, "multi": True, "includeAll": True, "allValue": ".*",
        "current": {"selected": True, "text": ["All"], "value": ["$__all"]},
        "sort": 1, "regex": "", "hide": 0, "options": [],
    }
