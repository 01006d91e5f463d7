"""The fault matrix: every answer class a gateway (or what stands in front of it) can give,
in every phase that talks to it, against the contract in docs/operations.md and docs/troubleshooting.md.

Answer classes: refused, reset, unresolvable name (under ``.invalid``), hang, drip, 301,
400, 401, 403, 404, 409, 413, 429, 500, 502, 503-then-200. Phases: start push, end push,
heartbeat, flush, status, delete. A real Pushgateway takes every request outside the phase
under test (through ``tests.stubs.Stub`` in ``forward`` mode), and in it the stub gives the
answer; refused and unresolvable peers are real dead addresses, so they fail every phase.

Each cell asserts that the job is untouched (its body's output and outcome, an exception
re-raised as it was), that the run is in the store, pending or delivered as the contract
says (a retryable answer and a rejection both keep the group pending; only the 503 that a
retry gets past delivers), and that the cell stayed within a generous time bound. Most
cells run the library in-process with small budgets; a few run the real ``jobreport``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from jobreport import job_metrics, load_config
from jobreport.commands.delete import delete_group
from jobreport.commands.status import gateway_status
from jobreport.config import Config
from jobreport.delivery import flush
from jobreport.errors import DeliveryError
from jobreport.state import group_key
from jobreport.store.store import Store
from tests import servers, stubs
from tests.conftest import Gateway
from tests.faults import assert_no_traceback, cli_env, run_cli

BUDGET, START_BUDGET, TIMEOUT = 1.0, 0.4, 0.5
#: The budget of a push that must land (through a healed stub, or to the real gateway): a
#: push that lands returns at once, but on a busy machine the forwarded answer may take
#: longer than TIMEOUT, and then the retries need room. Faulted pushes keep BUDGET.
LANDING_BUDGET = 60.0
#: Generous: the longest cell spends a start budget, a heartbeat and an end budget, plus a
#: busy machine's slowness; what the bound catches (a dripping answer followed to its end,
#: a hang never cut) takes minutes.
BOUND = 3 * BUDGET + 15.0
#: The same for a cell that starts a ``jobreport`` process (start-up is seconds when busy).
PROCESS_BOUND = BOUND + 25.0

REFUSED, UNRESOLVABLE = "refused", "unresolvable"
CLASSES: list[int | str] = [REFUSED, stubs.RESET, UNRESOLVABLE, stubs.HANG, stubs.DRIP, 301,
                            400, 401, 403, 404, 409, 413, 429, 500, 502, stubs.FLAKY]
PHASES = ["start", "end", "heartbeat", "flush", "status", "delete"]


class Body(Exception):
    """What the job's body raises in the end-push cells: it must come back unchanged."""


class Cell:
    """What one cell works with."""

    def __init__(self, peer: Peer, config: Config, job: str, tmp_path: Path, *,
                 gateway: Gateway, capsys: pytest.CaptureFixture[str]) -> None:
        self.peer, self.config, self.job, self.tmp_path = peer, config, job, tmp_path
        self.gateway, self.capsys = gateway, capsys
        self.store = Store(f"sqlite:///{tmp_path / 's.db'}")

    def out(self) -> str:
        return self.capsys.readouterr().out


class Peer:
    """Where the config points: the stub (whose answer can be switched per phase) or a dead
    address (refused / unresolvable: every phase fails, nothing heals it)."""

    def __init__(self, answer: int | str, gateway: Gateway) -> None:
        self.answer = answer
        self.stub: stubs.Stub | None = None
        if answer == REFUSED:
            self.url = f"http://127.0.0.1:{servers.free_port()}"
        elif answer == UNRESOLVABLE:
            self.url = "http://jobreport-fault-matrix.invalid:9091"
        else:
            self.stub = stubs.Stub(gateway.url, drip_every=0.2).__enter__()
            self.url = self.stub.url

    @property
    def dead(self) -> bool:
        return self.stub is None

    def fault(self) -> None:
        if self.stub is not None:
            self.stub.mode = self.answer

    def heal(self) -> None:
        if self.stub is not None:
            self.stub.mode = stubs.FORWARD

    def faulty_requests(self) -> int:
        if self.stub is None:
            return 0
        return sum(1 for _m, _p, mode in self.stub.requests if mode == self.answer)

    def requests(self) -> int:
        return 0 if self.stub is None else len(self.stub.requests)

    def close(self) -> None:
        if self.stub is not None:
            self.stub.__exit__(None, None, None)


@pytest.fixture(scope="module")
def shared_gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    server = servers.pushgateway(tmp_path_factory.mktemp("matrix-pg")).start()
    try:
        yield Gateway(server)
    finally:
        server.stop()


def wait_for(condition: Callable[[], object], what: str, timeout: float = 60.0) -> None:
    """Wait until ``condition()`` holds (bounded), polling on an event, never a bare sleep."""
    pause = threading.Event()
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        pause.wait(0.02)


def settings(url: str | None, tmp_path: Path, *, must_land: bool = False) -> Config:
    """The cell's settings; ``must_land``: its end push, flush, status or delete is meant
    to get through (LANDING_BUDGET), not to fail (BUDGET)."""
    budget = LANDING_BUDGET if must_land else BUDGET
    return load_config(env={}, gateway=url, db=f"sqlite:///{tmp_path / 's.db'}",
                       instance="matrix", budget=f"{budget}s", start_budget=f"{START_BUDGET}s",
                       timeout=f"{TIMEOUT}s")


def pending_jobs(tmp_path: Path) -> list[str]:
    return [p.job for p in Store(f"sqlite:///{tmp_path / 's.db'}").pending()]


def in_gateway(gateway: Gateway, job: str) -> bool:
    return any(g["labels"].get("job") == job for g in gateway.groups())


def delivers(answer: int | str, phase: str) -> bool:
    """The contract: which cells end with the group delivered. A retry gets past the one
    503; a fault in the start push or a heartbeat is healed by the end push (the peer
    answers again by then), except for a dead address."""
    if answer == stubs.FLAKY:
        return True
    return phase in ("start", "heartbeat") and answer not in (REFUSED, UNRESOLVABLE)


@pytest.mark.parametrize(("answer", "phase"), [
    pytest.param(a, p, id=f"{a}-{p}") for a in CLASSES for p in PHASES])
def test_cell(answer: int | str, phase: str, shared_gateway: Gateway, tmp_path: Path,
              capsys: pytest.CaptureFixture[str]) -> None:
    """One answer class in one phase: the job is untouched, the store holds the run,
    pending or delivered as the contract says, within the bound."""
    peer = Peer(answer, shared_gateway)
    config = settings(peer.url, tmp_path, must_land=delivers(answer, phase))
    cell = Cell(peer, config, f"m_{phase}_{answer}".replace("-", "_"),
                tmp_path, gateway=shared_gateway, capsys=capsys)
    capsys.readouterr()
    start = time.monotonic()
    try:
        CELLS[phase](cell)
    finally:
        took = time.monotonic() - start
        peer.close()
    assert took <= BOUND, f"{phase} with {answer} took {took:.1f}s"
    assert cell.store.history(cell.job), "the run is in the store"
    if phase != "status":  # status only reads
        # delete retires the group before its DELETE, so that no flush brings it back
        # even when the DELETE fails (then the user deletes again)
        expected_pending = phase != "delete" and not delivers(answer, phase)
        assert (cell.job in pending_jobs(tmp_path)) is expected_pending, (
            f"{cell.job}: pending should be {expected_pending}")


# --- the phases ----------------------------------------------------------------------------


def _start(cell: Cell) -> None:
    peer = cell.peer
    peer.fault()
    with job_metrics(cell.job, config=cell.config) as run:
        print("body output")
        if peer.dead:
            wait_for(lambda: list(cell.tmp_path.glob("unreachable-*.json")), "the start push")
        else:
            wait_for(lambda: peer.faulty_requests() >= 1, "the start push")
            peer.heal()
    assert run.outcome == "success"
    assert cell.out() == "body output\n"


def _end(cell: Cell) -> None:
    cell.peer.fault()
    with pytest.raises(Body, match=r"^kept as it was$"), job_metrics(cell.job,
                                                                    config=cell.config):
        print("body output")
        raise Body("kept as it was")
    assert cell.out() == "body output\n"
    assert cell.store.history(cell.job)[0].outcome == "failure"


def _heartbeat(cell: Cell) -> None:
    peer, store = cell.peer, cell.store
    key = group_key(cell.config.grouping(cell.job))
    with job_metrics(cell.job, config=cell.config, heartbeat=0.2) as run:
        print("body output")
        if peer.dead:
            wait_for(lambda: key in store.group_keys(cell.job)
                     and store.group_state(key)[0].last_heartbeat is not None,
                     "a heartbeat")
        else:
            wait_for(lambda: peer.requests() >= 1, "the start push")
            peer.fault()
            wait_for(lambda: peer.faulty_requests() >= 1, "a heartbeat push")
            peer.heal()
    assert run.outcome == "success"
    assert cell.out() == "body output\n"


def _flush(cell: Cell) -> None:
    with job_metrics(cell.job, config=settings(None, cell.tmp_path)):
        print("body output")
    assert cell.job in pending_jobs(cell.tmp_path)
    cell.peer.fault()
    result = flush(cell.config, store=cell.store, job=cell.job)
    assert result.ok is delivers(cell.peer.answer, "flush")
    assert cell.out() == "body output\n"


def _status(cell: Cell) -> None:
    with job_metrics(cell.job, config=settings(cell.gateway.url, cell.tmp_path,
                                               must_land=True)):
        print("body output")
    cell.peer.fault()
    if delivers(cell.peer.answer, "status"):
        assert any(g.job == cell.job for g in gateway_status(cell.config).groups)
    else:
        with pytest.raises(DeliveryError) as raised:
            gateway_status(cell.config)
        assert "\n" not in str(raised.value)
    assert cell.out() == "body output\n"


def _delete(cell: Cell) -> None:
    with job_metrics(cell.job, config=settings(cell.gateway.url, cell.tmp_path,
                                               must_land=True)):
        print("body output")
    assert in_gateway(cell.gateway, cell.job)
    # one more run that waits for delivery, so that the store has something pending
    with job_metrics(cell.job, config=settings(None, cell.tmp_path)):
        pass
    cell.peer.fault()
    if delivers(cell.peer.answer, "delete"):
        delete_group(cell.config, cell.job)
        # the Pushgateway applies a DELETE after answering it (202)
        wait_for(lambda: not in_gateway(cell.gateway, cell.job), "the DELETE applied")
    else:
        with pytest.raises(DeliveryError) as raised:
            delete_group(cell.config, cell.job)
        assert "\n" not in str(raised.value)
        assert in_gateway(cell.gateway, cell.job), "a failed delete leaves the group"
    assert cell.out() == "body output\n"


CELLS: dict[str, Callable[[Cell], None]] = {
    "start": _start, "end": _end, "heartbeat": _heartbeat, "flush": _flush,
    "status": _status, "delete": _delete,
}


# --- a few cells through the real command ------------------------------------------------


@pytest.mark.parametrize("answer", [REFUSED, stubs.DRIP, stubs.HANG, 301, 400, 500,
                                    stubs.FLAKY], ids=str)
def test_jobreport_run_end_push(answer: int | str, shared_gateway: Gateway,
                                tmp_path: Path) -> None:
    """`jobreport run` with the answer class on every push: the command's exit code,
    stdout and stderr are its own, the run is pending unless a retry got it through, and
    the run took at most about the budgets."""
    peer = Peer(answer, shared_gateway)
    peer.fault()
    job = f"cli_{answer}".replace("-", "_")
    budget = LANDING_BUDGET if delivers(answer, "end") else BUDGET
    env = cli_env(JOBREPORT_GATEWAY=peer.url, JOBREPORT_DB=f"sqlite:///{tmp_path}/s.db",
                  JOBREPORT_BUDGET=f"{budget}s", JOBREPORT_START_BUDGET=f"{START_BUDGET}s",
                  JOBREPORT_TIMEOUT=f"{TIMEOUT}s", JOBREPORT_INSTANCE="matrix")
    start = time.monotonic()
    try:
        proc = run_cli(["run", "--job", job, "--", "sh", "-c",
                        "echo out; echo err >&2; exit 5"], env)
    finally:
        took = time.monotonic() - start
        peer.close()
    assert proc.returncode == 5
    assert proc.stdout == "out\n"
    assert proc.stderr.splitlines()[0] == "err"
    assert_no_traceback(proc.stderr)
    assert took <= PROCESS_BOUND
    store = Store(f"sqlite:///{tmp_path}/s.db")
    assert store.history(job)[0].exit_code == 5
    assert (job in pending_jobs(tmp_path)) is not delivers(answer, "end")
    if not delivers(answer, "end"):
        assert "jobreport:" in proc.stderr  # one warning says what happened


@pytest.mark.parametrize("answer", [REFUSED, stubs.HANG, 500, 404], ids=str)
def test_jobreport_status_cannot_read(answer: int | str, shared_gateway: Gateway,
                                      tmp_path: Path) -> None:
    """`jobreport status` that cannot read the gateway exits 3 with one clear line."""
    peer = Peer(answer, shared_gateway)
    peer.fault()
    env = cli_env(JOBREPORT_GATEWAY=peer.url, JOBREPORT_DB=f"sqlite:///{tmp_path}/s.db",
                  JOBREPORT_BUDGET=f"{BUDGET}s", JOBREPORT_TIMEOUT=f"{TIMEOUT}s")
    start = time.monotonic()
    try:
        proc = run_cli(["status"], env)
    finally:
        took = time.monotonic() - start
        peer.close()
    assert proc.returncode == 3
    assert proc.stdout == ""
    assert_no_traceback(proc.stderr)
    assert took <= PROCESS_BOUND


def test_a_real_pushgateway_404_keeps_the_run_pending(shared_gateway: Gateway,
                                                      tmp_path: Path) -> None:
    """The real Pushgateway answers 404 for a wrong path prefix: the run stays pending, and
    a flush with the right URL delivers it."""
    wrong = settings(shared_gateway.url + "/prefix", tmp_path)
    with job_metrics("m_real_404", config=wrong):
        pass
    assert pending_jobs(tmp_path) == ["m_real_404"]
    result = flush(settings(shared_gateway.url, tmp_path, must_land=True),
                   store=Store(f"sqlite:///{tmp_path / 's.db'}"))
    assert result.ok and pending_jobs(tmp_path) == []
    assert in_gateway(shared_gateway, "m_real_404")
