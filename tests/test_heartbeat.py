"""The one heartbeat loop: it stops and is joined before the end of its run is recorded and
pushed, and the store drops a late heartbeat of a finished run whatever the timing. The race
is forced (a heartbeat held at the moment the run ends), not hoped for."""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from pathlib import Path

import pytest

from jobreport import load_config
from jobreport.heartbeat import Heartbeat
from jobreport.result import RunResult
from jobreport.runs import Recorder
from jobreport.sinks.base import Delivered, DeliveryResult
from jobreport.spec import JobSpec
from jobreport.state import GroupState, group_key
from jobreport.store.store import RunStart, Store
from jobreport.wrapper.wrapper import run_job

DEADLINE = 30.0  # generous: a loaded machine may be slow, a correct one never waits this long


class HoldingSink:
    """Records deliveries in order (by the thread that made them: the heartbeat's, the
    start worker's, or the end); holds the first heartbeat until ``release`` is set and
    notes whichever other delivery arrived while it was held."""

    name = "holding"

    def __init__(self) -> None:
        self.pushes: list[str] = []
        self.caught = threading.Event()
        self.release = threading.Event()
        self.overlap: list[str] = []
        #: set when a delivery arrives while the heartbeat is held
        self.overlapped = threading.Event()
        self.lock = threading.Lock()
        self._holding = False

    def deliver(self, state: GroupState, *, complete: bool, deadline: float) -> DeliveryResult:
        thread = threading.current_thread().name
        if thread == "jobreport-heartbeat":
            what = "heartbeat"
        elif thread == "jobreport-start":
            what = "start"
        else:
            what = "end" if state.running == 0 else "other"
        with self.lock:
            if self._holding:
                self.overlap.append(what)
                self.overlapped.set()
            self.pushes.append(what)
            hold = what == "heartbeat" and not self.caught.is_set()
            if hold:
                self._holding = True
                self.caught.set()
        if hold:
            self.release.wait(DEADLINE)
            with self.lock:
                self._holding = False
            self.pushes.append("heartbeat-done")
        return Delivered()

    def remove(self, grouping: Mapping[str, str], *, deadline: float) -> DeliveryResult:
        return Delivered()


def test_stop_waits_for_the_beat_in_progress() -> None:
    """stop() returns only once a beat being sent has finished."""
    entered, release = threading.Event(), threading.Event()
    order: list[str] = []

    def beat() -> None:
        entered.set()
        release.wait(DEADLINE)
        order.append("beat done")

    heartbeat = Heartbeat(beat, 0.01, "j").start()
    assert entered.wait(DEADLINE)
    stopper = threading.Thread(target=lambda: (heartbeat.stop(), order.append("stopped")))
    stopper.start()
    stopper.join(0.5)
    assert stopper.is_alive()  # held by the beat, not returned beside it
    release.set()
    stopper.join(DEADLINE)
    assert order == ["beat done", "stopped"]


def test_no_beat_after_stop() -> None:
    """After stop() no beat runs any more, and the thread is gone."""
    beats: list[float] = []
    three = threading.Event()

    def beat() -> None:
        beats.append(time.monotonic())
        if len(beats) >= 3:
            three.set()

    heartbeat = Heartbeat(beat, 0.01, "j").start()
    assert three.wait(DEADLINE)
    assert heartbeat.stop(DEADLINE)
    n = len(beats)
    assert not [t for t in threading.enumerate() if t.name == "jobreport-heartbeat"]
    assert len(beats) == n >= 3


def test_a_heartbeat_held_when_the_run_ends_comes_before_the_end(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The command ends while a heartbeat push is held: the end is recorded and pushed only
    after that heartbeat finished, never beside or before it."""
    config = load_config().with_overrides(gateway="http://fake.invalid",
                                          db=f"sqlite:///{tmp_path / 's.db'}")
    sender = HoldingSink()
    store = Store(config.db)
    reporter = Recorder(config, store=store, sinks=[sender])
    flag = tmp_path / "held"
    # Whether the heartbeat was still going when the wrapper's stop() returned: a stop
    # that did not wait for it lets the end go out beside it.
    still_beating: list[bool] = []
    stop = Heartbeat.stop

    def watched_stop(heartbeat: Heartbeat, timeout: float | None = None) -> bool:
        sender.overlapped.set()  # the wrapper has come to the end of the run
        ended = stop(heartbeat, timeout)
        thread = heartbeat._thread
        still_beating.append(thread is not None and thread.is_alive())
        return ended

    monkeypatch.setattr(Heartbeat, "stop", watched_stop)

    def release_when_the_wrapper_ends_the_run() -> None:
        # the command exits as soon as the heartbeat is held; the heartbeat stays held
        # until the wrapper either waits for it (stop) or pushes its end beside it
        sender.caught.wait(DEADLINE)
        flag.touch()
        sender.overlapped.wait(DEADLINE)
        sender.release.set()

    releaser = threading.Thread(target=release_when_the_wrapper_ends_the_run)
    releaser.start()
    script = f"i=0; while [ ! -e {flag} ] && [ $i -lt 600 ]; do sleep 0.05; i=$((i+1)); done"
    code = run_job(("sh", "-c", script), JobSpec("hb", heartbeat=0.05), config, reporter)
    releaser.join(DEADLINE)
    assert code == 0
    assert still_beating == [False], "stop() returned while the heartbeat was still going"
    assert "end" not in sender.overlap
    assert sender.pushes.index("heartbeat-done") < sender.pushes.index("end")
    assert sender.pushes[-1] == "end"  # nothing follows the end push
    assert store.history("hb")[0].outcome == "success"


def test_store_drops_a_heartbeat_of_a_run_that_is_not_open(tmp_path: Path) -> None:
    """set_heartbeat with the run's uid changes nothing once the run is closed."""
    store = Store(f"sqlite:///{tmp_path / 's.db'}")
    grouping = {"job": "j", "instance": "h"}
    key = group_key(grouping)
    run_id = store.open_run(RunStart("j", grouping, time.time(), "h", uid="u1"))
    assert store.set_heartbeat(grouping, 1000.0, uid="u1") is not None
    store.close_run(run_id, RunResult(ended=time.time(), duration=0.1, outcome="success",
                                      exit_code=0))
    before = store.group_state(key)
    assert store.set_heartbeat(grouping, 2000.0, uid="u1") is None
    assert store.set_heartbeat(grouping, 2000.0, uid="never-opened") is None
    assert store.group_state(key) == before
    assert before[0].last_heartbeat == 1000.0


def test_reporter_sends_no_heartbeat_for_an_ended_run(tmp_path: Path) -> None:
    """A heartbeat called after finish() (a thread that was late) pushes nothing."""
    config = load_config().with_overrides(gateway="http://fake.invalid",
                                          db=f"sqlite:///{tmp_path / 's.db'}")
    sender = HoldingSink()
    sender.caught.set()  # hold nothing
    reporter = Recorder(config, store=Store(config.db), sinks=[sender])
    run = reporter.start(JobSpec("late"), wait=None)
    reporter.finish(run, RunResult.measured(run.monotonic_start, outcome="success",
                                            exit_code=0))
    pushes = list(sender.pushes)
    reporter.heartbeat(run)
    assert sender.pushes == pushes and pushes
