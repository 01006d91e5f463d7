"""Every exchange with the gateway has one wall-clock deadline, whatever the peer does, and
a gateway that could not be reached moments ago costs the next runs one short attempt.

Bounds are asserted only as generous ceilings (budget + a few seconds) on this shared
machine; what must not happen (a dripping peer holding a run for its whole answer) is far
above them.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from jobreport.config import Config, load_config
from jobreport.delivery import flush
from jobreport.errors import DeliveryError
from jobreport.exposition import text
from jobreport.sinks._peers import PeerMemory
from jobreport.sinks.http import QUICK_ATTEMPT
from jobreport.sinks.pushgateway import PushgatewaySink
from jobreport.state import GroupState
from jobreport.store.store import Store
from tests import stubs
from tests.conftest import Gateway
from tests.faults import assert_no_traceback, cli_env, run_cli
from tests.servers import free_port

SLACK = 5.0  # a generous ceiling on this noisy 2-core machine
#: The same for a bound that includes starting a ``jobreport`` process: on a busy machine
#: its start-up alone takes seconds. The bounds stay far below what they catch.
PROCESS_SLACK = 30.0


BODY = text(GroupState(job="b", grouping={"job": "b"}, running=1))


def push(sink: PushgatewaySink, budget: float) -> None:
    """A push of ``BODY`` within ``budget`` seconds; raises ``DeliveryError``."""
    sink.push_text("b", {"instance": "h1"}, BODY, deadline=time.monotonic() + budget)


def config_for(url: str, tmp_path: Path, **settings: str) -> Config:
    return load_config(env={}, gateway=url, db=f"sqlite:///{tmp_path / 's.db'}",
                       instance="h1", **settings)


@pytest.mark.integration
@pytest.mark.parametrize("mode", [stubs.DRIP, stubs.HANG])
def test_a_dripping_or_silent_answer_is_cut_at_the_budget(mode: str, tmp_path: Path) -> None:
    """A peer that answers one byte at a time (each byte well within the per-read timeout)
    or not at all is cut off when the budget is spent, with a clear timeout error."""
    with stubs.Stub(mode=mode, drip_every=0.2) as stub:
        sink = PushgatewaySink(config_for(stub.url, tmp_path, timeout="5s"))
        start = time.monotonic()
        with pytest.raises(DeliveryError) as raised:
            push(sink, budget=1.5)
        took = time.monotonic() - start
    assert "did not answer within" in str(raised.value)
    assert raised.value.retryable
    assert took <= 1.5 + SLACK
    assert stub.requests, "the request reached the peer"


@pytest.mark.integration
def test_jobreport_run_with_a_dripping_gateway_keeps_the_job_and_its_bound(
        tmp_path: Path) -> None:
    """`jobreport run` against a dripping gateway: the command's exit code and output are
    untouched, the run waits in the store, and the whole run stays near the budget (a
    1000-byte answer at 0.2 s a byte would take 200 s)."""
    with stubs.Stub(mode=stubs.DRIP, drip_every=0.2) as stub:
        env = cli_env(JOBREPORT_GATEWAY=stub.url, JOBREPORT_DB=f"sqlite:///{tmp_path}/s.db",
                      JOBREPORT_BUDGET="2s", JOBREPORT_START_BUDGET="0.5s",
                      JOBREPORT_TIMEOUT="5s", JOBREPORT_INSTANCE="h1")
        start = time.monotonic()
        proc = run_cli(["run", "--job", "drip", "--", "sh", "-c", "echo kept; exit 3"], env)
        took = time.monotonic() - start
    assert proc.returncode == 3
    assert proc.stdout == "kept\n"
    assert "did not answer within" in proc.stderr
    assert_no_traceback(proc.stderr)
    assert took <= 2 + 0.5 + PROCESS_SLACK  # a dripped answer would take 200 s
    assert [p.job for p in Store(f"sqlite:///{tmp_path}/s.db").pending()] == ["drip"]


def test_a_refused_gateway_is_remembered(tmp_path: Path) -> None:
    """After a refused connection, the next exchange (another process would read the same
    file) makes one attempt of about a second, with no retries; the memory says why."""
    url = f"http://127.0.0.1:{free_port()}"
    config = config_for(url, tmp_path)
    slept: list[float] = []
    first = PushgatewaySink(config, sleep=slept.append)
    with pytest.raises(DeliveryError) as refused:
        push(first, budget=2.0)
    assert refused.value.unreachable
    assert slept, "the first run retries within its budget"
    files = list(tmp_path.glob("unreachable-*.json"))
    assert len(files) == 1 and "127.0.0.1" not in files[0].name

    again: list[float] = []
    second = PushgatewaySink(config, sleep=again.append)
    with pytest.raises(DeliveryError) as raised:
        push(second, budget=2.0)
    assert again == [], "one attempt only"
    assert raised.value.unreachable
    assert "one short attempt" in str(raised.value)


def test_the_memory_ends_with_a_success_or_after_a_while(gateway: Gateway,
                                                          tmp_path: Path) -> None:
    """A gateway that answers again is forgotten at once; an old memory does not count."""
    config = config_for(gateway.url, tmp_path)
    memory = PeerMemory(tmp_path)
    memory.unreachable(gateway.url, "connection refused")
    assert memory.unreachable_since(gateway.url) is not None
    push(PushgatewaySink(config, peers=memory), budget=60.0)
    assert memory.unreachable_since(gateway.url) is None
    assert PeerMemory(tmp_path).unreachable_since(gateway.url) is None

    now = [1000.0]
    old = PeerMemory(tmp_path, clock=lambda: now[0])
    old.unreachable("http://elsewhere:1", "refused")
    now[0] += 301
    assert PeerMemory(tmp_path, clock=lambda: now[0]).unreachable_since(
        "http://elsewhere:1") is None
    now[0] = 10.0  # a clock stepped back does not make the memory last for ever
    assert PeerMemory(tmp_path, clock=lambda: now[0]).unreachable_since(
        "http://elsewhere:1") is None


def test_flush_stops_at_the_first_unreachable_answer(tmp_path: Path) -> None:
    """Twenty pending groups and a refused gateway: flush tries once, not twenty budgets."""
    db = f"sqlite:///{tmp_path / 's.db'}"
    offline = load_config(env={}, db=db, instance="h1")
    from jobreport import job_metrics

    for i in range(20):
        with job_metrics(f"job{i}", config=offline):
            pass
    store = Store(db)
    assert len(store.pending()) == 20
    config = config_for(f"http://127.0.0.1:{free_port()}", tmp_path, budget="3s")
    start = time.monotonic()
    result = flush(config, store=store)
    took = time.monotonic() - start
    assert len(result.failed) == 1 and result.groups == 0
    assert took <= 3 + SLACK
    assert len(store.pending()) == 20


def test_status_and_check_answer_at_once_when_refused(tmp_path: Path) -> None:
    """`jobreport status` and `check` say "refused" at the first answer (no budget of
    retries) and exit with their documented codes."""
    env = cli_env(JOBREPORT_GATEWAY=f"http://127.0.0.1:{free_port()}",
                  JOBREPORT_DB=f"sqlite:///{tmp_path}/s.db", JOBREPORT_BUDGET="300s")
    start = time.monotonic()
    status = run_cli(["status"], env)
    check = run_cli(["check"], env)
    took = time.monotonic() - start
    assert status.returncode == 3 and "connection refused" in status.stderr
    assert check.returncode == 1 and "connection refused" in check.stdout + check.stderr
    assert_no_traceback(status.stderr, check.stderr)
    assert took <= 2 * QUICK_ATTEMPT + 2 * PROCESS_SLACK  # far below the 300 s budget


def test_a_second_run_after_a_refused_one_is_quick(tmp_path: Path) -> None:
    """Two `jobreport run`s against a refused gateway: both keep the command's exit code,
    both runs wait in the store, and the second pays about a second, not the budget."""
    env = cli_env(JOBREPORT_GATEWAY=f"http://127.0.0.1:{free_port()}",
                  JOBREPORT_DB=f"sqlite:///{tmp_path}/s.db", JOBREPORT_BUDGET="120s",
                  JOBREPORT_START_BUDGET="0.3s", JOBREPORT_INSTANCE="h1")
    # the first run pays its own (short) budget; the second's is long, to tell them apart
    first = run_cli(["run", "--job", "r1", "--", "sh", "-c", "echo one"],
                    {**env, "JOBREPORT_BUDGET": "2s"})
    start = time.monotonic()
    second = run_cli(["run", "--job", "r2", "--", "sh", "-c", "echo two; exit 4"], env)
    took = time.monotonic() - start
    assert (first.returncode, first.stdout) == (0, "one\n")
    assert (second.returncode, second.stdout) == (4, "two\n")
    assert "connection refused" in second.stderr
    assert took <= QUICK_ATTEMPT + PROCESS_SLACK  # the budget is 120 s
    assert sorted(p.job for p in Store(f"sqlite:///{tmp_path}/s.db").pending()) == ["r1", "r2"]


@pytest.mark.integration
def test_a_dripping_remote_write_receiver_is_cut_at_the_budget(tmp_path: Path) -> None:
    """The remote-write sink keeps the same wall-clock deadline per exchange."""
    from jobreport.sinks.remote_write import RemoteWriteSink

    with stubs.Stub(mode=stubs.DRIP, drip_every=0.2) as stub:
        config = config_for(stub.url, tmp_path, timeout="1s")
        writer = RemoteWriteSink(config, stub.url + "/api/v1/write")
        start = time.monotonic()
        with pytest.raises(DeliveryError) as raised:
            writer.write(GroupState(job="b", grouping={"job": "b"}, running=1),
                         deadline=time.monotonic() + 1.5)
        took = time.monotonic() - start
    assert "did not answer within" in str(raised.value)
    assert took <= 1.5 + SLACK
