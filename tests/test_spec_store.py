"""What a run is held to (its ``JobSpec``) is one record: made once at the start, kept in the
store as a column per stored field, and given to the group's state by one method
(``GroupState.hold_to``), so that the state with a store and the state of a run alone (no
store) agree on every threshold and deadline."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from jobreport.result import RunResult
from jobreport.runs.recorder import Run, _state_without_store
from jobreport.spec import STORED, JobSpec
from jobreport.state import GroupState
from jobreport.store import schema
from jobreport.store.store import RunStart, Store

SPECS = [
    JobSpec("p"),
    JobSpec("p", expect_every=90.0, grace=9.0, max_runtime=30.0, min_runtime=2.0,
            alert_after_failures=3),
    JobSpec("p", max_runtime=600.0, schedule="0 3 * * 1-5", timezone="Europe/Berlin",
            grace=120.0, min_runtime=5.0, alert_after_failures=1),
]


def _thresholds(state: GroupState) -> dict[str, object]:
    assert state.spec is not None
    return {"gauges": list(state.spec.gauges()), "start_deadline": state.start_deadline,
            "success_deadline": state.success_deadline}


def test_every_stored_field_has_a_store_column_of_its_name() -> None:
    """The store's per-run columns are the spec's stored fields, each of its type."""
    columns = {c.name: c for c in schema.runs.columns}
    for f in STORED:
        assert f.name in columns, f
        kind = type(columns[f.name].type).__name__
        assert kind == {"real": "Double", "int": "Integer", "cron": "String",
                        "zone": "String"}[f.column or ""], f


@pytest.mark.parametrize("spec", SPECS, ids=repr)
@pytest.mark.parametrize("outcome", ["success", "failure"])
def test_the_store_keeps_the_spec_and_both_states_agree(spec: JobSpec, outcome: str,
                                                        tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 's.db'}")
    store.ensure_schema()
    grouping = {"job": "p", "instance": "h1"}
    now = time.time()
    result = RunResult(ended=now, duration=3.0, outcome=outcome,
                       exit_code=0 if outcome == "success" else 1)
    _run_id, with_store, _seq = store.record_run(
        RunStart("p", grouping, now - 3.0, "h1", spec=spec), result)
    run = Run(job="p", grouping=grouping, started=now - 3.0, monotonic_start=0.0, spec=spec)
    alone = _state_without_store(run, result)
    expected = _thresholds(with_store)
    if spec.schedule and outcome != "success":
        # alone, a failed run cannot know the last success its success deadline counts from
        assert alone.success_deadline is None
        expected["success_deadline"] = None
    assert _thresholds(alone) == expected
    assert with_store.spec == spec  # every stored field back as it went in
    if spec.schedule:
        assert with_store.start_deadline is not None and with_store.start_deadline > now
    [row] = store.history("p")
    assert row.spec == spec
