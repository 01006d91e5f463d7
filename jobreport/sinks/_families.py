"""The families a job added, checked before any sink sees them, and a state without some.

A custom family comes from anywhere (``job.register()`` collectors, the metrics file,
``jobreport push``, a store written by an older jobreport), and one bad line makes the
Pushgateway refuse the whole body with a parse error that records no failure (so
``JobreportPushFailing`` would stay silent) and node_exporter drop the whole textfile. So
the rules of the text format that are clear are checked here, family by family, and a
family that breaks one is left out of the push (the caller warns, naming it):

- its name and every sample name are metric names outside jobreport's namespace, and each
  sample belongs to its family (``x``, ``x_total``, ``x_bucket``... as its type allows), so
  that a collector cannot forge a ``jobreport_*`` series or another family's;
- label names are plain (``[a-zA-Z_][a-zA-Z0-9_]*``, not ``__``-prefixed);
- a summary's ``quantile`` and a histogram's ``le`` are floats as the Pushgateway's parser
  reads them (no ``abc``, ``1_0``, `` 1``, ``0x1p-2`` or ``1e999``);
- no series appears twice, no two families share a name, every text is valid UTF-8.

Cheap to import: no metrics library here.
"""

from __future__ import annotations

import math
import re

from jobreport.errors import InvalidNameError
from jobreport.names import check_metric_name
from jobreport.result import CustomFamily
from jobreport.state import GroupState

__all__ = ["faults", "listing", "pointed_at", "without"]

# the sample names each type allows (prometheus_client's exposition writes them so)
_SUFFIXES: dict[str, tuple[str, ...]] = {
    "gauge": ("",), "untyped": ("",), "unknown": ("",), "stateset": ("",),
    "counter": ("", "_total", "_created"),
    "info": ("_info",),
    "summary": ("", "_sum", "_count", "_created"),
    "histogram": ("_bucket", "_sum", "_count", "_created"),
    "gaugehistogram": ("_bucket", "_gsum", "_gcount"),
}
# the label that must hold a float, per type (the Pushgateway's parser reads it as one)
_FLOAT_LABEL = {"summary": "quantile", "histogram": "le", "gaugehistogram": "le"}
_LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*", re.ASCII)
# what Go's strconv.ParseFloat takes in the Pushgateway's text parser (no '_', no hex)
_GO_FLOAT = re.compile(r"[+-]?(?:(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?"
                       r"|inf|infinity)|nan", re.ASCII | re.IGNORECASE)


def _go_float(text: str) -> bool:
    if not _GO_FLOAT.fullmatch(text):
        return False
    # out of range ("1e999") is an error in Go, not infinity
    return not math.isinf(float(text)) or "inf" in text.lower()


def _utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _fault(family: CustomFamily, namespace: str) -> str | None:
    """What is wrong with ``family`` for a push (None: nothing)."""
    texts = [family.name, family.help, family.type]
    for name, labels, _ in family.samples:
        texts.append(name)
        texts.extend(t for pair in labels for t in pair)
    if not all(_utf8(t) for t in texts):
        return "holds text that is not valid UTF-8"
    try:
        check_metric_name(family.name, namespace)
    except InvalidNameError as e:
        return f"the name {e.problem}"
    suffixes = _SUFFIXES.get(family.type)
    if suffixes is None:
        return f"type {family.type!r} is not a metric type"
    allowed = {family.name + s for s in suffixes}
    float_label = _FLOAT_LABEL.get(family.type)
    seen: set[tuple[str, tuple[tuple[str, str], ...]]] = set()
    for name, labels, _ in family.samples:
        if name not in allowed:
            return (f"the sample {name!r} does not belong to a {family.type} named "
                    f"{family.name!r}")
        try:
            check_metric_name(name, namespace)
        except InvalidNameError as e:
            return f"the sample name {name!r} {e.problem}"
        for label, value in labels:
            if not _LABEL_NAME.fullmatch(label) or label.startswith("__"):
                return (f"the label name {label!r} is not allowed (letters, digits and "
                        "underscores, not first a digit, not starting with __)")
            if label == float_label and not _go_float(value):
                return f"the {label} label {value!r} is not a number"
        series = (name, tuple(sorted(labels)))
        if series in seen:
            return f"the series {name}{dict(labels)} appears twice"
        seen.add(series)
    return None


def _exposed(family: CustomFamily) -> str:
    """The name of the family's ``# TYPE`` line (prometheus_client's exposition)."""
    return family.name + {"counter": "_total", "info": "_info"}.get(family.type, "")


def faults(state: GroupState, namespace: str) -> dict[str, str]:
    """The group's own families that no push should carry, each with what is wrong."""
    out: dict[str, str] = {}
    taken: dict[str, str] = {}  # a sample name -> the family that uses it
    for family in state.custom:
        problem = _fault(family, namespace)
        if problem is None:
            names = {name for name, _, _ in family.samples} | {_exposed(family)}
            clash = sorted(taken[n] for n in names if n in taken)
            if clash:
                problem = f"its names clash with the family {clash[0]}"
            else:
                taken.update(dict.fromkeys(names, family.name))
        if problem is not None:
            out.setdefault(family.name, problem)
    return out


#: A warning names at most this many families (a collector can yield thousands).
_SHOWN = 5
_PLAIN_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]{0,199}", re.ASCII)


def listing(found: dict[str, str]) -> str:
    """``found`` (family -> what is wrong) for one line of a warning: names that are not
    plain metric names are quoted (no newline or terminal control reaches the line), and
    past the first few only their number is said."""
    def shown(name: str) -> str:
        return name if _PLAIN_NAME.fullmatch(name) else ascii(name)[:200]

    items = [f"{shown(name)} ({why[:300]})" for name, why in sorted(found.items())]
    more = len(items) - _SHOWN
    return "; ".join(items[:_SHOWN]) + (f"; and {more} more" if more > 0 else "")


def without(state: GroupState, names: set[str] | frozenset[str] | tuple[str, ...]
            ) -> GroupState:
    """``state`` without the custom families called ``names`` (the last run's and the
    pushed ones); every other value as it is."""
    if not names:
        return state
    last = (state.last._replace(custom=tuple(f for f in state.last.custom
                                             if f.name not in names))
            if state.last is not None else None)
    return state._replace(last=last, pushed=tuple(f for f in state.pushed
                                                  if f.name not in names))


def pointed_at(state: GroupState, reason: str, namespace: str) -> tuple[str, ...]:
    """The group's own families a sink's 400 is about: named in its text (a type clash),
    or owning the line of the body it points at (``text format parsing error in line N``)."""
    def mentioned(name: str) -> bool:
        return re.search(rf"(?<![\w:]){re.escape(name)}(?![\w:])", reason) is not None

    named = {f.name for f in state.custom
             if any(mentioned(n) for n in {f.name, _exposed(f), *(s[0] for s in f.samples)})}
    line = re.search(r"\bin line (\d+)\b", reason)
    if line is not None:
        from jobreport.exposition import text

        body = text(state, namespace)  # the body the sink was sent, line for line
        family = None
        for row in body.decode("utf-8", "replace").splitlines()[:int(line.group(1))]:
            if row.startswith(("# HELP ", "# TYPE ")):
                family = row.split(" ", 3)[2]
        exposed = {_exposed(f): f.name for f in state.custom}
        if family in exposed:
            named.add(exposed[family])
    return tuple(sorted(named))
