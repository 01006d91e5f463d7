"""Per group and sink, how far delivery got: the delivered-up-to marks, the errors of
failed attempts, what is still pending, and a new store's adoption of what a sink holds.

A mixin of ``Store`` (jobreport.store.store), which provides the transactions and ``_bump``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager

from jobreport.records import GroupState, grouping_from_key
from jobreport.store import sql
from jobreport.store.backends import Tx
from jobreport.store.rows import DEFAULT_SINK, PendingGroup, Undelivered

__all__ = ["DeliveryMarks"]


class DeliveryMarks:
    """The delivery side of the store."""

    def _write(self) -> AbstractContextManager[Tx]:
        raise NotImplementedError

    def _read(self) -> AbstractContextManager[Tx]:
        raise NotImplementedError

    @staticmethod
    def _bump(tx: Tx, key: str, job: str) -> int:
        raise NotImplementedError

    def mark_delivered(self, key: str, seq: int, *, sink: str = DEFAULT_SINK,
                       problem: str | None = None, left_out: Sequence[str] = ()) -> int:
        """``sink`` accepted the state ``seq`` of group ``key`` (``problem``: it did so only
        with ``left_out`` families removed, which keeps the group pending). Returns the
        group's current seq: larger means it changed during the delivery."""
        with self._write() as tx:
            self._delivery_row(tx, key, sink)
            tx.run(sql.DELIVERED, {
                "k": key, "sink": sink, "s": seq - 1 if problem else seq, "now": time.time(),
                "e": problem[:2000] if problem else None,
                "left": json.dumps(list(left_out)) if left_out else None,
            })
            rows = tx.rows(sql.SEQ, {"k": key})
            return int(rows[0]["seq"]) if rows else 0

    def knows_delivery(self, key: str, sink: str) -> bool:
        """Whether ``sink`` was ever given group ``key`` from this store."""
        with self._read() as tx:
            return bool(tx.rows(sql.HAS_DELIVERY, {"k": key, "sink": sink}))

    def adopt(self, key: str, sink: str, held: Callable[[], GroupState | None]) -> bool:
        """Before the first delivery of group ``key`` to ``sink`` from this new store, take
        over what the sink holds (``held()``: its counters, last success and failure), so
        that the store's first complete push does not lower them. Done once per group and
        sink, exactly: ``held()`` is asked under the store's write lock and the group's row
        lock, and every delivery of the group waits for it (the delivery mark it leaves),
        so no push of this store can reach the sink between the reading and the adoption,
        and no two processes adopt the same counters. Returns whether it read the sink.

        ``held()`` raising a retryable ``DeliveryError`` (no answer, 5xx) adopts nothing,
        leaves no mark and raises it: the caller must not push now, and the next delivery
        asks again. A permanent one (the sink will not say) counts as nothing held."""
        from jobreport.errors import DeliveryError

        with self._write() as tx:
            tx.run(sql.LOCK_GROUP, {"k": key})
            if tx.rows(sql.HAS_DELIVERY, {"k": key, "sink": sink}):
                return False  # adopted or delivered already (another process, meanwhile)
            try:
                state = held()
            except DeliveryError as e:
                if e.retryable:
                    raise
                state = None
            self._delivery_row(tx, key, sink)
            if state is None:
                return True
            self._bump(tx, key, state.job)
            insert, conflict = tx.insert_missing
            for outcome, n in (state.runs_total or {}).items():
                tx.run(sql.NEW_COUNT.format(insert=insert, conflict=conflict),
                       {"k": key, "o": outcome})
                tx.run(sql.ADD_COUNT, {"k": key, "o": outcome, "n": n})
            for column in ("last_success", "last_failure"):
                if getattr(state, column) is not None:
                    tx.run(sql.LATER.format(column=column),
                           {"k": key, "v": getattr(state, column)})
            return True

    def mark_failed(self, key: str, error: str, *, sink: str = DEFAULT_SINK) -> None:
        """``sink`` did not take group ``key``'s state: keep it pending, error recorded."""
        with self._write() as tx:
            self._delivery_row(tx, key, sink)
            tx.run(sql.FAILED_DELIVERY, {"e": error[:2000], "now": time.time(), "k": key,
                                         "sink": sink})

    @staticmethod
    def _delivery_row(tx: Tx, key: str, sink: str) -> None:
        insert, conflict = tx.insert_missing
        tx.run(sql.NEW_DELIVERY.format(insert=insert, conflict=conflict),
               {"k": key, "sink": sink})

    def pending(self, sink: str = DEFAULT_SINK) -> list[PendingGroup]:
        """Every group (not retired) whose newest state has not reached ``sink``."""
        with self._read() as tx:
            out = []
            for g in tx.rows(sql.PENDING, {"sink": sink}):
                n = tx.rows(sql.PENDING_RUNS, {"k": g["group_key"], "d": g["delivered_seq"]})
                out.append(PendingGroup(g["group_key"], g["job"],
                                        grouping_from_key(g["group_key"]), int(n[0]["n"]),
                                        since=n[0]["since"], last_error=g["last_error"]))
            return out

    def undelivered(self, job: str | None = None) -> list[Undelivered]:
        """Every group (not retired) that a sink has not taken the newest state of, with
        the error of the last attempt: what ``check``, ``status`` and ``history`` show."""
        with self._read() as tx:
            out = []
            for d in tx.rows(sql.UNDELIVERED):
                if job is not None and d["job"] != job:
                    continue
                since = tx.rows(sql.PENDING_RUNS, {"k": d["group_key"],
                                                   "d": d["delivered_seq"]})[0]["since"]
                out.append(Undelivered(str(d["group_key"]), str(d["job"]), d["sink"], since,
                                       d["last_error"], d["last_attempt"]))
            return out
