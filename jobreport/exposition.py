"""Turn a ``GroupState`` into the metric families of one push (prometheus_client)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector, CollectorRegistry

from jobreport._version import __version__
from jobreport.names import DEFAULT_NAMESPACE
from jobreport.outcomes import OUTCOMES, SUCCESS
from jobreport.records import RESULT_GAUGES, CustomFamily, GroupState

__all__ = ["StateCollector", "families_text", "registry_for"]

# name (without namespace), help text, attribute of GroupState; the figures of the last run
# come from RunResult's fields (records.RESULT_GAUGES)
_GAUGES: tuple[tuple[str, str, str], ...] = (
    ("running", "Runs of this group in progress now.", "running"),
    ("last_start_timestamp_seconds", "Unix time the last run started.", "last_start"),
    ("last_success_timestamp_seconds", "Unix time of the last successful end.", "last_success"),
    ("last_failure_timestamp_seconds", "Unix time of the last unsuccessful end.",
     "last_failure"),
    ("expected_interval_seconds",
     "The job is overdue this long after its last success (expect_every + grace).",
     "expected_interval"),
    ("max_runtime_seconds", "A run is stuck after this long.", "max_runtime"),
    ("last_heartbeat_timestamp_seconds", "Unix time of the last heartbeat of a running job.",
     "last_heartbeat"),
    # schedules (jobreport.schedule)
    ("success_deadline_timestamp_seconds",
     "The next success is due by then (--schedule: next fire time + max runtime + grace).",
     "success_deadline"),
    ("start_deadline_timestamp_seconds",
     "The next run must have started by then (--schedule: next fire time + grace).",
     "start_deadline"),
    ("min_runtime_seconds", "A successful run shorter than this is suspicious.",
     "min_runtime"),
    ("alert_after_failures", "The failed-run alert waits for this many failures in a row.",
     "alert_after_failures"),
    ("consecutive_failures", "Unsuccessful runs since the last success.",
     "consecutive_failures"),
)


class StateCollector(Collector):
    """Yields the families of a ``GroupState`` in the ``namespace``."""

    def __init__(self, state: GroupState, namespace: str = DEFAULT_NAMESPACE) -> None:
        self.state = state
        self.ns = namespace

    def _wanted(self, name: str) -> bool:
        return self.state.only is None or name in self.state.only

    def collect(self) -> Iterator[Metric]:
        s = self.state
        for name, doc, attr in _GAUGES:
            value = getattr(s, attr)
            if value is not None and self._wanted(name):
                yield GaugeMetricFamily(f"{self.ns}_{name}", doc, value=float(value))
        last = s.last
        if last is not None:
            for name, doc, attr in RESULT_GAUGES:
                value = getattr(last, attr)
                if value is not None and self._wanted(name):
                    yield GaugeMetricFamily(f"{self.ns}_{name}", doc, value=float(value))
            if self._wanted("last_run_success"):
                yield GaugeMetricFamily(
                    f"{self.ns}_last_run_success", "1 if the last run succeeded, else 0.",
                    value=1.0 if last.outcome == SUCCESS else 0.0,
                )
            if self._wanted("last_outcome"):
                outcome = GaugeMetricFamily(
                    f"{self.ns}_last_outcome", "Outcome of the last run (state set).",
                    labels=["outcome"],
                )
                for o in OUTCOMES:
                    outcome.add_metric([o], 1.0 if o == last.outcome else 0.0)
                yield outcome
        if s.runs_total is not None and self._wanted("runs"):
            runs = CounterMetricFamily(
                f"{self.ns}_runs", "Runs of this job on this instance, by outcome.",
                labels=["outcome"],
            )
            for o in OUTCOMES:
                runs.add_metric([o], float(s.runs_total.get(o, 0)))
            yield runs
        if self._wanted("info"):
            yield _info(self.ns)
        if s.only is None:
            for fam in s.custom:
                yield _custom(fam)


def _info(ns: str) -> GaugeMetricFamily:
    info = GaugeMetricFamily(f"{ns}_info", "Who reported: jobreport's version.",
                             labels=["version"])
    info.add_metric([__version__], 1.0)
    return info


def _custom(fam: CustomFamily) -> Metric:
    metric = Metric(fam.name, fam.help or fam.name, fam.type)
    for sample_name, labels, value in fam.samples:
        metric.add_sample(sample_name, dict(labels), value)
    return metric


def families_text(families: Iterable[CustomFamily]) -> bytes:
    """``families`` in the text exposition format (for ``$JOBREPORT_METRICS_FILE``)."""
    from prometheus_client.exposition import generate_latest

    class _Families(Collector):
        def collect(self) -> Iterator[Metric]:
            return (_custom(f) for f in families)

    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Families())
    return generate_latest(registry)


def registry_for(state: GroupState, namespace: str = DEFAULT_NAMESPACE) -> CollectorRegistry:
    """A fresh registry (never the global default) holding ``state``'s families."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(StateCollector(state, namespace))
    return registry
