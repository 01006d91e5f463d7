"""A new store (its file was removed) adopts what the Pushgateway holds for a group exactly
once, before any push of that store reaches the group: two processes delivering the same
group at the same moment neither lower the counters nor count a run twice. The
interleaving is forced with a hold inside the first adoption's read of the gateway."""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from jobreport import job_metrics, load_config
from jobreport.config import Config
from jobreport.delivery import deliver_group
from jobreport.errors import DeliveryError
from jobreport.result import RunResult
from jobreport.runs import SHARED
from jobreport.sinks.base import Delivered, RetryLater
from jobreport.sinks.pushgateway import PushgatewaySink
from jobreport.held import HeldGroup
from jobreport.state import GroupState, group_key
from jobreport.store.store import RunStart, Store
from tests.conftest import Gateway
from tests.gateway_text import held_of
from tests.servers import free_port

WAIT = 60.0  # a generous ceiling for a thread to reach a point on a busy machine


def config_for(url: str, tmp_path: Path) -> Config:
    return load_config(env={}, gateway=url, instance="h1", budget="30s", timeout="10s",
                       start_budget="5s", db=f"sqlite:///{tmp_path / 'store.db'}")


class HeldSink(PushgatewaySink):
    """A Pushgateway sink whose read of what the gateway holds stops (after reading it)
    until ``go`` is set, saying so with ``reading``."""

    def __init__(self, config: Config) -> None:
        super().__init__(config)
        self.reading = threading.Event()
        self.go = threading.Event()

    def held(self, grouping: Mapping[str, str], *, deadline: float) -> HeldGroup | None:
        held = super().held(grouping, deadline=deadline)
        self.reading.set()
        assert self.go.wait(WAIT), "the test never let the adoption go on"
        return held


def record_success(store: Store, grouping: dict[str, str]) -> None:
    now = time.time()
    store.record_run(RunStart("raced", grouping, now - 1, "h1"),
                     RunResult(ended=now, duration=1.0, outcome="success", exit_code=0))


def test_two_deliveries_of_a_new_store_count_every_run_once(
        gateway: Gateway, tmp_path: Path) -> None:
    """The gateway holds 4 successes of a store that was removed. Two processes (two store
    connections) each record a run in the new store and deliver the group; the first one's
    adoption is held right after it read the gateway, while the second delivers. In the
    end the gateway and the store hold exactly 4 + 2 successes."""
    config = config_for(gateway.url, tmp_path)
    for _ in range(4):
        with job_metrics("raced", config=config):
            pass
    db = tmp_path / "store.db"
    for suffix in ("", "-wal", "-shm"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)
    grouping = {"job": "raced", "instance": "h1"}
    key = group_key(grouping)

    first, second = Store(config.db), Store(config.db)  # two processes' connections
    record_success(first, grouping)
    record_success(second, grouping)
    assert second.fresh and not second.created  # the other process knows it is new too

    held = HeldSink(config)
    outcomes: dict[str, Any] = {}
    adopting = threading.Event()  # the second delivery reached the adoption (and waits)
    original = second.adopt

    def second_adopt(*args: Any, **kwargs: Any) -> bool:
        adopting.set()
        return original(*args, **kwargs)

    second.adopt = second_adopt  # type: ignore[method-assign]

    def deliver(name: str, store: Store, sink: PushgatewaySink) -> None:
        outcomes[name] = deliver_group(store, sink, key, budget=30.0)

    one = threading.Thread(target=deliver, args=("first", first, held), daemon=True)
    one.start()
    assert held.reading.wait(WAIT), "the first delivery never read the gateway"
    two = threading.Thread(target=deliver, args=("second", second, PushgatewaySink(config)),
                           daemon=True)
    two.start()
    # the second one either delivers on its own (a store without the lock) or waits at the
    # adoption: either way, now let the first go on
    deadline = time.monotonic() + WAIT
    while not adopting.is_set() and two.is_alive() and time.monotonic() < deadline:
        adopting.wait(0.05)
    held.go.set()
    one.join(WAIT)
    two.join(WAIT)
    assert isinstance(outcomes.get("first"), Delivered), outcomes
    assert isinstance(outcomes.get("second"), Delivered), outcomes
    s = gateway.samples("raced", instance="h1")
    assert s['jobreport_runs_total{outcome="success"}'] == 6
    state, _ = Store(config.db).group_state(key)
    assert state.runs_total is not None and state.runs_total["success"] == 6
    # and the next run (a new process: not the one that saw the old file) counts on
    SHARED.reset()
    with job_metrics("raced", config=config):
        pass
    assert gateway.samples("raced", instance="h1")['jobreport_runs_total{outcome="success"}'] \
        == 7


def test_a_new_store_does_not_push_before_it_could_read_the_gateway(tmp_path: Path) -> None:
    """The gateway cannot be reached while a new store delivers: nothing is adopted, no
    push is made, and no delivery mark is left, so the next delivery reads the gateway
    first (a push now could lower what the gateway holds)."""
    config = config_for(f"http://127.0.0.1:{free_port()}", tmp_path)
    store = Store(config.db)
    grouping = {"job": "raced", "instance": "h1"}
    record_success(store, grouping)
    sent: list[GroupState] = []

    class Refused(PushgatewaySink):
        def held(self, grouping: Mapping[str, str], *, deadline: float) -> HeldGroup | None:
            raise DeliveryError("refused", retryable=True, unreachable=True)

        def deliver(self, state: GroupState, *, complete: bool, deadline: float) -> Any:
            sent.append(state)
            return Delivered()

    outcome = deliver_group(store, Refused(config), group_key(grouping), budget=5.0)
    assert isinstance(outcome, RetryLater)
    assert sent == []
    assert store.delivered_seq(group_key(grouping), "pushgateway") is None
    assert [p.job for p in store.pending()] == ["raced"]


def test_what_a_hostile_gateway_holds_is_not_adopted() -> None:
    """Counters that are negative, fractional, not finite or absurd, and timestamps far in
    the future, are not taken over (they would lower or overflow the counts, or hold the
    last success ahead so that the job is never overdue)."""
    grouping = {"job": "j", "instance": "h1"}
    future = time.time() + 1e9
    text = (
        'jobreport_runs_total{instance="h1",job="j",outcome="success"} -5\n'
        'jobreport_runs_total{instance="h1",job="j",outcome="failure"} 1e300\n'
        'jobreport_runs_total{instance="h1",job="j",outcome="timeout"} NaN\n'
        'jobreport_runs_total{instance="h1",job="j",outcome="abandoned"} 2.5\n'
        'jobreport_runs_total{instance="h1",job="j",outcome="signal"} 3\n'
        f'jobreport_last_success_timestamp_seconds{{instance="h1",job="j"}} {future}\n'
        f'jobreport_last_failure_timestamp_seconds{{instance="h1",job="j"}} {time.time() - 60}\n'
        'jobreport_consecutive_failures{instance="h1",job="j"} -1\n'
        'jobreport_typical_size_bytes{instance="h1",job="j"} -1\n'
        'jobreport_typical_duration_seconds{instance="h1",job="j"} 12.5\n'
    ).encode()
    held = held_of([text], grouping, "jobreport")
    assert held is not None
    assert held.runs() == {"signal": 3}
    assert held.timestamp("last_success_timestamp_seconds") is None
    failure = held.timestamp("last_failure_timestamp_seconds")
    assert failure is not None and failure < time.time()
    assert held.count("consecutive_failures") is None
    assert held.amount("typical_size_bytes") is None
    assert held.amount("typical_duration_seconds") == 12.5
    for hostile in ("NaN", "+Inf", "1e300"):
        line = f'jobreport_typical_size_bytes{{instance="h1",job="j"}} {hostile}\n'.encode()
        again = held_of([line], grouping, "jobreport")
        assert again is not None and again.amount("typical_size_bytes") is None
