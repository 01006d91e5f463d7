"""The ``Recorder`` both ways in share: open a run, push its start, close it, push the
group's whole state, and never let any of that change or block the job beyond a small
budget.

A run starts from its ``JobSpec`` (made at the door: the command line or ``job_metrics``),
laid over the job's config section here, once, and then carried whole: into the store
with the run, and into the group's state. The store and the sinks are opened lazily
(``prepare()``), so that a wrapper can start its child first and load them while the child
runs.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from jobreport.config import Config
from jobreport.errors import StoreError
from jobreport.liveness import alive as _alive
from jobreport.liveness import pid_namespace
from jobreport.liveness import process_start as _process_start
from jobreport.logger import unexpected
from jobreport.outcomes import SKIPPED, SUCCESS
from jobreport.result import RunResult
from jobreport.runs.run import Run
from jobreport.runs.shared import SHARED
from jobreport.sinks.base import Delivered, Sink
from jobreport.spec import JobSpec
from jobreport.state import GroupState

if TYPE_CHECKING:
    from jobreport.runs.background import Turn
    from jobreport.store.store import RunStart, Store

__all__ = ["Recorder", "Run"]


log = logging.getLogger("jobreport")


#: How long the start worker waits before opening a run: shorter runs are recorded whole.
START_DELAY = 0.05
#: How long to wait for the store when another process holds its lock.
STORE_WAIT = 15.0
#: At most this long after a run's end is delivered goes to trimming the store (and never
#: past the end's budget): seconds of catching up on a store that is far over its limits;
#: a store within them takes a few milliseconds.
RETENTION_TIME = 0.5


class Recorder:
    """Records runs in the store and delivers each group's state to every configured sink.

    Collaborators can be injected (tests); by default they are shared per process
    (``SHARED``). Satisfies ``jobreport.protocols.RunReporter``.
    """

    def __init__(self, config: Config, *, store: Store | None = None,
                 sinks: list[Sink] | None = None) -> None:
        self.config = config
        self._store = store
        self._sinks = sinks
        self._prepared = store is not None and sinks is not None
        self._lock = threading.Lock()

    # --- collaborators ------------------------------------------------------------------

    def prepare(self) -> None:
        """Import and open what reporting needs (call it in a thread while a child runs)."""
        with self._lock:
            if self._prepared:
                return
            self._prepared = True
            if self._store is None:
                try:
                    self._store = SHARED.store(self.config.db)
                    self._store.ensure_schema()
                except StoreError as e:
                    self._store = None
                    log.warning("jobreport: store unavailable (%s); pushing without history", e)
            if self._sinks is None:
                self._sinks = SHARED.sinks_for(self.config)
            # what the end push needs, loaded now rather than after the run
            import jobreport.delivery
            import jobreport.exposition  # noqa: F401

            if self.config.remote_write_url:  # protobuf and snappy, only when configured
                from jobreport.sinks.remote_write import preload

                preload()

    @property
    def store(self) -> Store | None:
        self.prepare()
        return self._store

    @property
    def sinks(self) -> list[Sink]:
        self.prepare()
        return self._sinks or []

    def _drop_store(self, error: StoreError) -> None:
        log.warning("jobreport: store unavailable (%s); pushing without history", error)
        self._store = None

    # --- a run --------------------------------------------------------------------------

    def start(self, spec: JobSpec, *, command: str | None = None, wait: float | None = 0.0,
              delay: float = START_DELAY, uid: str | None = None,
              child_pid: int | None = None, child_pid_start: float | None = None,
              exclusive: bool = False) -> Run:
        """Open a run held to ``spec`` and push its start, in the background.

        ``spec`` is laid over the job's config section (``JobSpec.over``: what it gives
        wins; a contradiction between the two drops the section's side, with a warning),
        and a schedule without a zone gets the host's. The worker waits ``delay`` seconds
        first: a run that is over by then is recorded whole at its end, with one push
        instead of two. ``wait`` is how long to wait for the start push (``None``: the
        configured start budget); it is best effort, never raises. ``exclusive``: the run
        holds its group's lock in a store many hosts share (``--lock`` with PostgreSQL), so
        the runs of the group left open anywhere are abandoned."""
        spec = self._complete(spec)
        run = Run(
            job=spec.job, grouping=self.config.grouping(spec.job, spec.labels),
            started=time.time(), monotonic_start=time.monotonic(), spec=spec,
            pid=os.getpid(), command=command, child_pid=child_pid,
            child_pid_start=child_pid_start, exclusive=exclusive, uid=uid,
        )
        SHARED.starts.submit(self._start_worker, run, delay)
        timeout = self.config.start_budget if wait is None else wait
        if timeout > 0:
            run._ready.wait(timeout)
        return run

    def _complete(self, spec: JobSpec) -> JobSpec:
        """``spec`` over the job's config section, its schedule's zone named."""
        spec, dropped = spec.over(self.config.job(spec.job))
        for problem in dropped:
            log.warning("jobreport: ignoring [jobs.%s] %s in the config file: %s", spec.job,
                        " and ".join(problem.names), problem.problem)
        if spec.schedule and spec.timezone is None:
            from jobreport.schedule import local_zone_name

            # the host's zone is the job's host's: recorded, so that a flush elsewhere (a
            # fleet-wide store) reads the schedule in the same zone
            spec = spec.replace(timezone=local_zone_name())
        return spec

    def _start_worker(self, run: Run, delay: float) -> None:
        try:
            if run._ended.wait(delay):
                return
            self.prepare()
            with run._lock:
                if run.ended:
                    return
                run._opening = True
            store = self._store
            if store is not None:
                try:
                    _record_marker_runs(store, run.key, self.config.grouping)
                    run.id = store.open_run(self._run_start(run), alive=_alive)
                except StoreError as e:
                    self._drop_store(e)
            if not run.ended:
                self._deliver(run, budget=self.config.start_budget, what="start")
        except Exception:  # never let reporting break the job
            unexpected("the start of %s was not reported", run.job)
        finally:
            run._ready.set()

    def _run_start(self, run: Run) -> RunStart:
        from jobreport.store.store import RunStart

        return RunStart(
            job=run.job, grouping=run.grouping, started=run.started, host=_host(),
            pid=run.pid, pid_start=_process_start(run.pid), spec=run.spec,
            command=run.command, uid=run.uid, pid_ns=pid_namespace(),
            child_pid=run.child_pid, child_pid_start=run.child_pid_start,
            exclusive=run.exclusive,
        )

    def heartbeat(self, run: Run) -> None:
        """Push ``jobreport_last_heartbeat_timestamp_seconds`` for a running job (with a
        store: the group's whole state, which holds it)."""
        now = time.time()
        if run.ended:
            return  # a heartbeat never follows the end of its run
        store = self.store
        if store is not None:
            try:
                if store.set_heartbeat(run.grouping, now, uid=run.uid) is None:
                    return  # the store no longer has the run open: drop it
            except StoreError as e:
                self._drop_store(e)
        partial = None
        if self._store is None:
            partial = GroupState(job=run.job, grouping=run.grouping, last_heartbeat=now,
                                 only=frozenset({"last_heartbeat_timestamp_seconds"}))
        budget = min(self.config.timeout, self.config.budget)
        self._deliver(run, budget=budget, what="heartbeat", partial=partial)

    def finish(self, run: Run, result: RunResult, *,
               held_to: Mapping[str, Any] | None = None, turn: Turn | None = None) -> bool:
        """Close ``run`` with ``result`` and deliver its group's whole state. Returns True
        when every sink has it; logs a one-line warning (and keeps the group pending for the
        next run or ``jobreport flush``) otherwise. ``held_to``: values of the run's spec
        that its end gave (the metrics file's thresholds), laid over what it was held to.

        ``turn`` is the run's place in its group's order (``background.Ends.turn``): the
        run is written to the store after the end handed over before it, whichever thread
        gets there first; when a later end of the group was handed over meanwhile, the
        delivery is left to it (with a store, it pushes the group's whole newest state)."""
        if held_to:
            run.spec = run.spec.replace(**held_to)
        later = False
        try:
            if run.stop():
                # the start worker is opening the run or pushing its start: let it finish
                # first, so that the start push can never land after the end push
                run._ready.wait(self.config.start_budget + STORE_WAIT)
            if turn is not None:
                turn.wait()
            known = self._close(run, result, spec=run.spec if held_to else None)
        finally:
            if turn is not None:
                later = turn.done()
        if later and self._store is not None and known is not None:
            return True  # the later end delivers this run with its own
        partial = None if self._store is not None else _state_without_store(run, result)
        budget_end = time.monotonic() + self.config.budget
        delivered = self._deliver(run, budget=self.config.budget, what="end",
                                  partial=partial, known=known)
        self._retain(run, min(budget_end, time.monotonic() + RETENTION_TIME))
        return delivered

    def _retain(self, run: Run, deadline: float) -> None:
        """Once the end is delivered: trim the run's group, and sweep the store when that
        is due (at most hourly), until ``deadline``; never raises, never waits longer."""
        store = self._store
        if store is None or run.id is None or time.monotonic() >= deadline:
            return
        from jobreport.store.retention import Retention

        retention = Retention(self.config.keep_days, self.config.keep_runs)
        sinks = [sink.name for sink in self.sinks]
        try:
            if store.trim(run.key, retention, sinks=sinks, deadline=deadline, exact=False):
                store.sweep(retention, sinks=sinks, deadline=deadline)
        except StoreError as e:  # busy (another process writes) or unwell: next time
            log.debug("jobreport: the store was not trimmed: %s", e)
        except Exception:  # never let the retention reach the job
            unexpected("the store was not trimmed after a run of %s", run.job)

    def _close(self, run: Run, result: RunResult,
               spec: JobSpec | None = None) -> tuple[GroupState, int] | None:
        """Write ``run``'s end to the store (with ``spec`` when its end changed what it is
        held to); the group's state and seq it made (None without a store)."""
        store = self.store
        if store is None:
            return None
        try:
            if run.id is not None:
                return store.close_run(run.id, result, spec=spec)
            _record_marker_runs(store, run.key, self.config.grouping)
            run.id, state, seq = store.record_run(self._run_start(run), result, alive=_alive)
            return state, seq
        except StoreError as e:
            self._drop_store(e)
            return None

    def record_skipped(self, spec: JobSpec, *, command: str | None = None) -> Run:
        """Record (and push) a run that did not start because another one holds the lock."""
        run = self.start(spec, command=command, delay=STORE_WAIT)
        self.finish(run, RunResult(ended=time.time(), duration=0.0, outcome=SKIPPED,
                                   exit_code=0))
        return run

    # --- delivery -----------------------------------------------------------------------

    def _deliver(self, run: Run, *, budget: float, what: str,
                 partial: GroupState | None = None,
                 known: tuple[GroupState, int] | None = None) -> bool:
        """Deliver ``run``'s group to every sink: its whole state from the store (``known``,
        when just read), or ``partial`` (what this process alone knows) without a store."""
        from jobreport.delivery import (
            deliver_each,
            deliver_group,
            deliver_state,
            notice_no_sink,
            warn_undelivered,
        )

        sinks = self.sinks
        if not sinks:
            if what == "end":
                notice_no_sink(self._store is not None)
            return False
        store = self._store
        if store is None and partial is None:
            partial = _state_without_store(run, None)

        def one(sink: Sink) -> bool:
            try:
                if partial is None and store is not None:
                    outcome = deliver_group(store, sink, run.key, budget=budget, known=known,
                                            namespace=self.config.namespace)
                else:
                    outcome = deliver_state(sink, partial or _state_without_store(run, None),
                                            complete=False, budget=budget,
                                            namespace=self.config.namespace)
            except StoreError as e:
                self._drop_store(e)
                return False
            if not isinstance(outcome, Delivered):
                if what != "start":
                    warn_undelivered(what, run.job, sink.name, outcome, stored=store is not None)
                return False
            return True

        if len(sinks) == 1:
            return one(sinks[0])
        return deliver_each(sinks, one, budget)


def _state_without_store(run: Run, result: RunResult | None) -> GroupState:
    """What this run alone knows. Left out (None) is what only the history knows (counters;
    the last success when this run failed): such a push is a POST, so the gateway keeps
    its values."""
    state = GroupState(
        job=run.job, grouping=run.grouping, running=0 if result else 1, last_start=run.started,
    )
    if result is not None and result.outcome != SKIPPED:
        if result.outcome == SUCCESS:
            state = state._replace(last=result, last_success=result.ended,
                                   consecutive_failures=0)
        else:
            # without the history nobody can count: alert rather than stay silent
            state = state._replace(last=result, last_failure=result.ended,
                                   consecutive_failures=run.spec.alert_after_failures or 1)
    return state.held_to(run.spec, known=False)


def _host() -> str:
    return socket.gethostname()


def _record_marker_runs(store: Store, key: str,
                       grouping_of: Callable[[str, Mapping[str, str]], dict[str, str]]
                       ) -> None:
    """Runs of the group that only a ``jobreport run`` marker knows (its wrapper was killed
    before the store heard of the run) become open runs, closed as abandoned by the
    ``open_run``/``record_run`` that follows."""
    from jobreport.marker import adopt

    try:
        adopt(store, key, _host(), grouping_of)
    except StoreError:
        raise
    except Exception:
        unexpected("the run markers of %s were not read", key)
