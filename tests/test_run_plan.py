"""What a run is held to (``records.RunPlan``) is one record: made once at the start, kept
in the store as a column per field, and given to the group's state by one function, so
that the state with a store and the state of a run alone (no store) agree on every
threshold and deadline."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from jobreport.records import GroupState, RunPlan, RunResult
from jobreport.reporter import Run, _state_without_store
from jobreport.store.store import RunStart, Store

PLANS = [
    RunPlan(),
    RunPlan(expected_interval=90.0, max_runtime=30.0, min_runtime=2.0,
            alert_after_failures=3),
    RunPlan(max_runtime=600.0, schedule="0 3 * * 1-5", timezone="Europe/Berlin",
            grace=120.0, min_runtime=5.0, alert_after_failures=1),
]


def _thresholds(state: GroupState) -> dict[str, object]:
    return {name: getattr(state, name) for name in (
        "expected_interval", "max_runtime", "min_runtime", "alert_after_failures",
        "start_deadline", "success_deadline")}


@pytest.mark.parametrize("plan", PLANS)
@pytest.mark.parametrize("outcome", ["success", "failure"])
def test_the_store_keeps_the_plan_and_both_states_agree(plan: RunPlan, outcome: str,
                                                        tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 's.db'}")
    store.ensure_schema()
    grouping = {"job": "p", "instance": "h1"}
    now = time.time()
    result = RunResult(ended=now, duration=3.0, outcome=outcome,
                       exit_code=0 if outcome == "success" else 1)
    _run_id, with_store, _seq = store.record_run(
        RunStart("p", grouping, now - 3.0, "h1", plan=plan), result)
    run = Run(job="p", grouping=grouping, started=now - 3.0, monotonic_start=0.0, plan=plan)
    alone = _state_without_store(run, result)
    expected = _thresholds(with_store)
    if plan.schedule and outcome != "success":
        # alone, a failed run cannot know the last success its success deadline counts from
        assert alone.success_deadline is None
        expected["success_deadline"] = None
    assert _thresholds(alone) == expected
    assert with_store.expected_interval == plan.expected_interval
    assert with_store.min_runtime == plan.min_runtime
    if plan.schedule:
        assert with_store.start_deadline is not None and with_store.start_deadline > now
    [row] = store.history("p")
    assert row.min_runtime == plan.min_runtime
