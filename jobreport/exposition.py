"""The metric families of one push of a ``GroupState``, and the body in the text format.

``families`` derives them as plain data (``CustomFamily`` records: name, help, type,
samples); every sink reads that one derivation. The group's own values are listed here
(``_GAUGES``), the last run's figures come from ``RunResult``'s fields and the thresholds
from the newest run's ``JobSpec`` (its fields' gauges). ``text`` writes the Pushgateway's
body itself, byte for byte what prometheus_client's ``generate_latest`` writes (a test
holds the two equal), so that the end of a run does not import prometheus_client (about a
quarter of the end of a short ``jobreport run``); the families a job added are still
written by prometheus_client, which is then loaded. ``StateCollector`` gives the same
families to prometheus_client's own API.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING

from jobreport._version import __version__
from jobreport.names import DEFAULT_NAMESPACE
from jobreport.outcomes import OUTCOMES, SUCCESS
from jobreport.result import RESULT_GAUGES, CustomFamily
from jobreport.state import GroupState

if TYPE_CHECKING:
    from prometheus_client.core import Metric

__all__ = ["StateCollector", "escape_label_value", "families", "families_text", "text"]

# name (without namespace), help text, attribute of GroupState: the group's own values
_GAUGES: tuple[tuple[str, str, str], ...] = (
    ("running", "Runs of this group in progress now.", "running"),
    ("last_start_timestamp_seconds", "Unix time the last run started.", "last_start"),
    ("last_success_timestamp_seconds", "Unix time of the last successful end.", "last_success"),
    ("last_failure_timestamp_seconds", "Unix time of the last unsuccessful end.",
     "last_failure"),
    ("last_heartbeat_timestamp_seconds", "Unix time of the last heartbeat of a running job.",
     "last_heartbeat"),
    # schedules (jobreport.schedule)
    ("success_deadline_timestamp_seconds",
     "The next success is due by then (--schedule: next fire time + max runtime + grace).",
     "success_deadline"),
    ("start_deadline_timestamp_seconds",
     "The next run must have started by then (--schedule: next fire time + grace).",
     "start_deadline"),
    ("consecutive_failures", "Unsuccessful runs since the last success.",
     "consecutive_failures"),
    ("typical_size_bytes",
     "Median size of the last 10 successful runs that reported a size.", "typical_size"),
    ("typical_duration_seconds", "Median duration of the last 10 successful runs.",
     "typical_duration"),
)




def families(state: GroupState, namespace: str = DEFAULT_NAMESPACE) -> Iterator[CustomFamily]:
    """The families of one push of ``state``: jobreport's own (those ``state.only`` names,
    when it is set), then the families the job added (not with ``only``)."""
    yield from _own(state, namespace)
    if state.only is None:
        yield from state.custom


def _own(s: GroupState, ns: str) -> Iterator[CustomFamily]:

    def wanted(name: str) -> bool:
        return s.only is None or name in s.only

    def gauge(name: str, doc: str, value: float) -> CustomFamily:
        return CustomFamily(f"{ns}_{name}", doc, "gauge", ((f"{ns}_{name}", (), value),))

    for name, doc, attr in _GAUGES:
        value = getattr(s, attr)
        if value is not None and wanted(name):
            yield gauge(name, doc, float(value))
    if s.spec is not None:  # what the newest run is held to
        for name, doc, value in s.spec.gauges():
            if wanted(name):
                yield gauge(name, doc, value)
    last = s.last
    if last is not None:
        for name, doc, attr in RESULT_GAUGES:
            value = getattr(last, attr)
            if value is not None and wanted(name):
                yield gauge(name, doc, float(value))
        if wanted("last_run_success"):
            yield gauge("last_run_success", "1 if the last run succeeded, else 0.",
                        1.0 if last.outcome == SUCCESS else 0.0)
        if wanted("last_outcome"):
            yield CustomFamily(
                f"{ns}_last_outcome", "Outcome of the last run (state set).", "gauge",
                tuple((f"{ns}_last_outcome", (("outcome", o),), 1.0 if o == last.outcome
                       else 0.0) for o in OUTCOMES))
    if s.runs_total is not None and wanted("runs"):
        runs = s.runs_total
        yield CustomFamily(
            f"{ns}_runs", "Runs of this job on this instance, by outcome.", "counter",
            tuple((f"{ns}_runs_total", (("outcome", o),), float(runs.get(o, 0)))
                  for o in OUTCOMES))
    if wanted("info"):
        yield CustomFamily(f"{ns}_info", "Who reported: jobreport's version.", "gauge",
                           ((f"{ns}_info", (("version", __version__),), 1.0),))


def text(state: GroupState, namespace: str = DEFAULT_NAMESPACE) -> bytes:
    """The body of a push of ``state`` in the text exposition format (0.0.4)."""
    own: list[str] = []
    for family in _own(state, namespace):
        exposed = family.name + "_total" if family.type == "counter" else family.name
        own.append(f"# HELP {exposed} {_escape_help(family.help)}\n"
                   f"# TYPE {exposed} {family.type}\n")
        for name, labels, value in family.samples:
            if labels:
                pairs = ",".join(f'{k}="{escape_label_value(v)}"' for k, v in sorted(labels))
                own.append(f"{name}{{{pairs}}} {_go_float(value)}\n")
            else:
                own.append(f"{name} {_go_float(value)}\n")
    body = "".join(own).encode("utf-8")
    custom = state.custom if state.only is None else ()
    return body + families_text(custom) if custom else body


def _escape_help(doc: str) -> str:
    return doc.replace("\\", r"\\").replace("\n", r"\n")


def escape_label_value(value: str) -> str:
    """A label value as the text format writes it."""
    return value.replace("\\", r"\\").replace("\n", r"\n").replace('"', r'\"')


def _go_float(value: float) -> str:
    """A value as Go (and prometheus_client's ``floatToGoString``) writes it."""
    d = float(value)
    if math.isinf(d):
        return "+Inf" if d > 0 else "-Inf"
    if math.isnan(d):
        return "NaN"
    s = repr(d)
    dot = s.find(".")
    # Go switches to exponents sooner than Python
    if d > 0 and dot > 6:
        mantissa = f"{s[0]}.{s[1:dot]}{s[dot + 1:]}".rstrip("0.")
        return f"{mantissa}e+{dot - 1:02d}"
    return s


class StateCollector:
    """A prometheus_client collector of ``families(state, namespace)`` (the textfile sink
    writes through it)."""

    def __init__(self, state: GroupState, namespace: str = DEFAULT_NAMESPACE) -> None:
        self.state = state
        self.ns = namespace

    def collect(self) -> Iterator[Metric]:
        return (_metric(f) for f in families(self.state, self.ns))


def _metric(fam: CustomFamily) -> Metric:
    from prometheus_client.core import Metric

    metric = Metric(fam.name, fam.help or fam.name, fam.type)
    for sample_name, labels, value in fam.samples:
        metric.add_sample(sample_name, dict(labels), value)
    return metric


def families_text(fams: Iterable[CustomFamily]) -> bytes:
    """``fams`` in the text exposition format, by prometheus_client (the families a job
    added; also ``$JOBREPORT_METRICS_FILE``)."""
    from prometheus_client.exposition import generate_latest
    from prometheus_client.registry import CollectorRegistry

    class _Families:
        def collect(self) -> Iterator[Metric]:
            return (_metric(f) for f in fams)

    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Families())
    return generate_latest(registry)
