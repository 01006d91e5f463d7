"""A new store reads what the gateway holds for its group before its first push of it (the
gateway is the memory of runs that start from nothing: containers, pods, CI runners):
bounded by the delivery's budget, never a fixed second; only the group's samples kept
while the gateway's answer streams in; taken over exactly once however many processes of
the store read at once."""

from __future__ import annotations

import subprocess
import threading
import time
import tracemalloc
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from jobreport import load_config
from jobreport.config import Config
from jobreport.delivery import deliver_group
from jobreport.result import RunResult
from jobreport.sinks.base import Delivered
from jobreport.sinks.pushgateway import PushgatewaySink
from jobreport.held import HeldGroup
from jobreport.state import group_key
from jobreport.store.store import RunStart, Store
from tests.conftest import Gateway
from tests.faults import FaultProxy, assert_no_traceback
from tests.gateway_text import held_of
from tests.pods import Pods

WAIT = 60.0  # a generous ceiling for a thread to reach a point on a busy machine


def samples(gateway: Gateway, job: str) -> dict[str, float]:
    """The samples of the job's one group, keyed as ``Gateway.samples`` does, without the
    ``instance=""`` the gateway adds to a group pushed without an instance."""
    return {k.replace('{instance=""}', "").replace('instance="",', ""): v
            for k, v in gateway.samples(job).items()}


def runs_of(gateway: Gateway, job: str) -> dict[str, float]:
    return {k: v for k, v in samples(gateway, job).items()
            if k.startswith(("jobreport_runs_total", "jobreport_consecutive_failures"))}


def test_every_pod_is_delivered_through_a_gateway_answering_in_2s(
        gateway: Gateway, tmp_path: Path) -> None:
    """Pods (a new store and a new host name each run) against a Pushgateway whose every
    answer takes 2 s, with a 30 s budget: every run is delivered (the read of what the
    gateway holds waits for it as the push does), the counters of every outcome count on
    across pods, and the failure streak carries over: three failures in a row push 3, so
    that --alert-after-failures 2 can fire; a success resets it. One group for the job."""
    with FaultProxy(gateway.url, delay=2.0) as slow:
        pods = Pods(tmp_path / "pods", JOBREPORT_GATEWAY=slow.url, JOBREPORT_BUDGET="30s",
                    JOBREPORT_TIMEOUT="10s")
        expected: dict[str, float] = {}
        for n, code in enumerate((0, 3, 3, 3, 0, 3)):
            began = time.monotonic()
            done = pods.run(["run", "--job", "podjob", "--alert-after-failures", "2", "--",
                             "sh", "-c", f"exit {code}"])
            took = time.monotonic() - began
            assert done.returncode == code, done.stderr
            assert_no_traceback(done.stderr)
            assert "kept in the store" not in done.stderr, done.stderr
            assert took < 30 + 15, took  # the budget, and the start's
            outcome = "success" if code == 0 else "failure"
            key = f'jobreport_runs_total{{outcome="{outcome}"}}'
            expected[key] = expected.get(key, 0) + 1
            streak = [0, 1, 2, 3, 0, 1][n]
            held = runs_of(gateway, "podjob")
            assert {k: v for k, v in held.items() if k in expected} == expected, (n, held)
            assert held["jobreport_consecutive_failures"] == streak, (n, held)
    assert [g["labels"] for g in gateway.groups()] == [{"job": "podjob"}]
    assert any(path == "/metrics" for method, path, _ in slow.requests if method == "GET")


def test_a_read_that_does_not_fit_the_budget_keeps_the_run_for_flush(
        gateway: Gateway, tmp_path: Path) -> None:
    """The read is bounded by the budget (here 1 s, less than the gateway's 2 s): the run
    is kept pending, nothing is pushed that could lower what the gateway holds, and a
    later flush with a budget that fits delivers it on top of what the gateway held."""
    with FaultProxy(gateway.url) as fast:
        Pods(tmp_path / "before", JOBREPORT_GATEWAY=fast.url).run(
            ["run", "--job", "later", "--", "true"])
    assert samples(gateway, "later")['jobreport_runs_total{outcome="success"}'] == 1
    with FaultProxy(gateway.url, delay=2.0) as slow:
        pods = Pods(tmp_path / "pods", JOBREPORT_GATEWAY=slow.url, JOBREPORT_BUDGET="1s")
        host, home = pods.new()
        env = pods.env(home)
        done = subprocess.run(pods.command(["run", "--job", "later", "--", "false"], host),
                              env=env, capture_output=True, text=True, timeout=120,
                              check=False)
        assert done.returncode == 1
        assert "kept in the store" in done.stderr, done.stderr
        assert not any(m in ("PUT", "POST") for m, _, _ in slow.requests), slow.requests
        env["JOBREPORT_BUDGET"] = "30s"
        flushed = subprocess.run(pods.command(["flush"], host), env=env, capture_output=True,
                                 text=True, timeout=120, check=False)
        assert flushed.returncode == 0, flushed.stderr
    s = samples(gateway, "later")
    assert s['jobreport_runs_total{outcome="success"}'] == 1
    assert s['jobreport_runs_total{outcome="failure"}'] == 1
    assert s["jobreport_consecutive_failures"] == 1


def test_the_read_keeps_only_the_group_not_the_answer() -> None:
    """Reading one group out of an answer of 40 MB (20,000 other groups of 28 series)
    holds about one chunk at a time, not the answer: the peak of memory allocated while
    reading stays under 2 MB."""
    grouping = {"job": "wanted", "instance": "h7"}

    def answer() -> Iterator[bytes]:
        yield b"# TYPE jobreport_runs_total untyped\n"
        for i in range(20_000):
            lines = [f'jobreport_runs_total{{instance="h{i}",job="other",outcome="success"}} '
                     f"{i}\n"]
            lines += [f'jobreport_last_{n}_timestamp_seconds{{instance="h{i}",job="j{i}"}} '
                      "1.7e9\n" for n in range(27)]
            yield "".join(lines).encode()
        yield b'jobreport_runs_total{instance="h7",job="wanted",outcome="success"} 41\n'
        yield b'jobreport_consecutive_failures{instance="h7",job="wanted"} 2\n'
        yield b'jobreport_consecutive_failures{instance="h7",job="wanted",path="/x"} 9\n'

    assert sum(len(c) for c in answer()) > 35e6
    tracemalloc.start()
    try:
        held = held_of(answer(), grouping, "jobreport")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert held is not None
    assert held.runs() == {"success": 41}
    assert held.count("consecutive_failures") == 2
    assert peak < 2e6, peak


def test_labels_escaped_by_the_text_format_are_read_back_exactly() -> None:
    """A grouping label holding a quote, a backslash, a line break, a comma or a brace is
    matched as the text format escapes it; a group with one label more, or one less, is
    another group; a group pushed without an instance shows instance=""."""
    odd = 'a "b" \\c\nd,e}f'
    text = (
        '# HELP jobreport_runs_total Runs.\n'
        f'jobreport_runs_total{{instance="",job="j",path="{_esc(odd)}",outcome="success"}} 5\n'
        f'jobreport_runs_total{{instance="",job="j",outcome="success"}} 7\n'
        f'jobreport_runs_total{{instance="",job="j",path="{_esc(odd)}",x="1",'
        'outcome="success"} 9\n'
        f'jobreport_info{{instance="",job="j",path="{_esc(odd)}",version="1.0"}} 1\n'
    ).encode()
    held = held_of([text], {"job": "j", "path": odd}, "jobreport")
    assert held is not None and held.runs() == {"success": 5}
    plain = held_of([text], {"job": "j"}, "jobreport")
    assert plain is not None and plain.runs() == {"success": 7}
    assert held_of([text], {"job": "j", "instance": "h"}, "jobreport") is None
    with pytest.raises(ValueError):
        held_of([b'{"status":"success","data":[]}'], {"job": "j"}, "jobreport")


def _esc(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


class BarrierSink(PushgatewaySink):
    """A Pushgateway sink whose read of what the gateway holds waits, after reading, until
    ``parties`` readers have read: every one of them read before any adopts."""

    def __init__(self, config: Config, barrier: threading.Barrier) -> None:
        super().__init__(config)
        self.barrier = barrier

    def held(self, grouping: Mapping[str, str], *, deadline: float) -> HeldGroup | None:
        found = super().held(grouping, deadline=deadline)
        self.barrier.wait(WAIT)
        return found


def test_processes_of_one_new_store_that_read_at_once_adopt_once(
        gateway: Gateway, tmp_path: Path) -> None:
    """Three processes (three connections) of one new store each record a run and read the
    gateway (3 successes and a failure streak of 2 held) before any of them adopts. The
    first to take the store's lock adopts and leaves the group's delivery mark; the others
    find the mark and take nothing over (their reading is as old as theirs, and the first
    may have pushed meanwhile). In the end: 3 + 3 successes, the streak ended."""
    config = load_config(env={}, gateway=gateway.url, no_instance=True, budget="30s",
                         db=f"sqlite:///{tmp_path / 'store.db'}")
    pods = Pods(tmp_path / "before", JOBREPORT_GATEWAY=gateway.url)
    for code in (0, 0, 0, 1, 1):
        pods.run(["run", "--job", "raced", "--", "sh", "-c", f"exit {code}"])
    assert samples(gateway, "raced")["jobreport_consecutive_failures"] == 2
    grouping = {"job": "raced"}
    key = group_key(grouping)
    stores = [Store(config.db) for _ in range(3)]
    for store in stores:
        now = time.time()
        store.record_run(RunStart("raced", grouping, now - 1, "pod"),
                         RunResult(ended=now, duration=1.0, outcome="success", exit_code=0))
    barrier = threading.Barrier(3)
    adopted: list[bool] = []
    results: dict[int, Any] = {}
    for store in stores:
        original = store.adopt

        def adopt(*args: Any, _original: Any = original, **kwargs: Any) -> bool:
            took = bool(_original(*args, **kwargs))
            adopted.append(took)
            return took

        store.adopt = adopt  # type: ignore[method-assign]

    def deliver(i: int) -> None:
        results[i] = deliver_group(stores[i], BarrierSink(config, barrier), key, budget=30.0)

    threads = [threading.Thread(target=deliver, args=(i,), daemon=True) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(WAIT)
    assert all(isinstance(results.get(i), Delivered) for i in range(3)), results
    assert sorted(adopted) == [False, False, True]
    s = samples(gateway, "raced")
    assert s['jobreport_runs_total{outcome="success"}'] == 6
    assert s['jobreport_runs_total{outcome="failure"}'] == 2
    assert s["jobreport_consecutive_failures"] == 0


def test_failures_of_a_new_store_continue_the_streak_the_gateway_holds(
        gateway: Gateway, tmp_path: Path) -> None:
    """The streak read back is carried on by the failures a new store records before its
    first delivery, and ended by a success it recorded: never the other way round."""
    Pods(tmp_path / "a", JOBREPORT_GATEWAY=gateway.url).run(
        ["run", "--job", "streak", "--", "false"])
    assert samples(gateway, "streak")["jobreport_consecutive_failures"] == 1
    config = load_config(env={}, gateway=gateway.url, no_instance=True,
                         db=f"sqlite:///{tmp_path / 'store.db'}")
    store = Store(config.db)
    grouping = {"job": "streak"}
    for outcome in ("failure", "timeout"):
        now = time.time()
        store.record_run(RunStart("streak", grouping, now - 1, "pod"),
                         RunResult(ended=now, duration=1.0, outcome=outcome, exit_code=1))
    assert isinstance(deliver_group(store, PushgatewaySink(config), group_key(grouping),
                                    budget=10.0), Delivered)
    assert samples(gateway, "streak")["jobreport_consecutive_failures"] == 3
