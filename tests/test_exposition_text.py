"""The body of a push is written by jobreport itself (``exposition.text``), not by
prometheus_client, to keep that library off the end of a run: it must be byte for byte what
prometheus_client's ``generate_latest`` writes for the same families, for any state."""

from __future__ import annotations

import math

from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client.exposition import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from jobreport.durations import MAX_SECONDS
from jobreport.exposition import _go_float, families, text
from jobreport.outcomes import OUTCOMES
from jobreport.result import CustomFamily, RunResult
from jobreport.spec import JobSpec
from jobreport.state import GroupState
from tests.registry import registry_for

# every kind of float prometheus_client writes in its own way: Go's exponent form, NaN, Inf
floats = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0.0, -0.0, 1.0, 1e6, 1234567.0, 12345678.9, 1e21, 1e-7, 1.5e300]),
    st.integers(min_value=-(2**53), max_value=2**53).map(float),
)
maybe = st.none() | floats
# what a spec may hold: its ranges (jobreport.spec), with Go's exponent form among them
durations = st.none() | st.sampled_from([0.001, 0.5, 1234567.0, 12345678.9]) | st.floats(
    min_value=0.0, max_value=MAX_SECONDS)
names = st.sampled_from(["running", "max_runtime_seconds", "expected_interval_seconds", "last_start_timestamp_seconds", "runs", "info",
                         "last_outcome", "last_run_success", "last_duration_seconds",
                         "consecutive_failures", "last_exit_code"])


@st.composite
def results(draw: st.DrawFn) -> RunResult:
    return RunResult(ended=draw(floats), duration=draw(floats),
                     outcome=draw(st.sampled_from(OUTCOMES)),
                     exit_code=draw(st.none() | st.integers(-255, 255)),
                     size=draw(maybe), items=draw(maybe), cpu_seconds=draw(maybe),
                     max_rss_bytes=draw(maybe))


@st.composite
def specs(draw: st.DrawFn) -> JobSpec:
    return JobSpec("j", expect_every=draw(durations), grace=draw(durations),
                   max_runtime=draw(durations), min_runtime=draw(durations),
                   alert_after_failures=draw(st.none() | st.integers(1, 10000)))


@st.composite
def states(draw: st.DrawFn) -> GroupState:
    runs = draw(st.none() | st.dictionaries(st.sampled_from(OUTCOMES),
                                            st.integers(0, 10**12)))
    return GroupState(
        job="j", grouping={"job": "j", "instance": "h"},
        running=draw(st.integers(0, 3)), last_start=draw(maybe), last_success=draw(maybe),
        last_failure=draw(maybe), last=draw(st.none() | results()), runs_total=runs,
        spec=draw(st.none() | specs()),
        last_heartbeat=draw(maybe), success_deadline=draw(maybe),
        start_deadline=draw(maybe),
        consecutive_failures=draw(st.none() | st.integers(0, 10**6)),
        only=draw(st.none() | st.frozensets(names)),
    )


@settings(max_examples=300, deadline=None)
@given(states(), st.sampled_from(["jobreport", "acme_batch"]))
def test_the_body_is_what_prometheus_client_writes(state: GroupState, namespace: str) -> None:
    assert text(state, namespace) == generate_latest(registry_for(state, namespace))


@settings(max_examples=300, deadline=None)
@given(floats)
def test_values_are_written_as_go_writes_them(value: float) -> None:
    from prometheus_client.utils import floatToGoString

    assert _go_float(value) == floatToGoString(value)
    if not math.isnan(value):
        assert float(_go_float(value)) == value


def test_the_families_a_job_added_follow_ours_and_parse_back() -> None:
    """A job's own families (written by prometheus_client) come after jobreport's, in one
    body that the text parser reads back whole; a state that names ``only`` some families
    leaves the job's out."""
    custom = CustomFamily("backup_files", 'Files "seen"\nby the job.', "gauge",
                          (("backup_files", (("dir", 'a\\b"c\nd'),), 3.0),))
    last = RunResult(ended=10.0, duration=2.0, outcome="success", exit_code=0,
                     custom=(custom,))
    state = GroupState(job="j", grouping={"job": "j"}, last=last, runs_total={"success": 1})
    body = text(state)
    assert body == generate_latest(registry_for(state))
    parsed = {f.name: f for f in text_string_to_metric_families(body.decode())}
    assert parsed["backup_files"].samples[0].labels == {"dir": 'a\\b"c\nd'}
    assert parsed["jobreport_runs"].samples[0].value == 1.0
    assert [f.name for f in families(state)][-1] == "backup_files"
    only = GroupState(job="j", grouping={"job": "j"}, last=last, only=frozenset({"running"}))
    assert text(only) == b"# HELP jobreport_running Runs of this group in progress now.\n" \
        b"# TYPE jobreport_running gauge\njobreport_running 0.0\n"
