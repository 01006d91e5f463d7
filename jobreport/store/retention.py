"""A bounded store: how many runs, and how old, each group keeps (``Retention``), and the
work that trims a group or sweeps the whole store, in small batches by indexed range.

A run trims its own group after its end is delivered (``Store.trim``); the rest of the
store is swept at most once an hour, by one process at a time (``Store.sweep``: a time in
``jobreport_meta`` that one process moves forward to claim the sweep). Each batch is one
short transaction that deletes (or empties the output tail of) at most ``BATCH`` runs found
through an index: the group's runs by id (``ix_jobreport_runs_group_id``), by start
(``ix_jobreport_runs_group_started``), and the runs that still hold a tail (a partial
index, ``ix_jobreport_runs_group_tail``). Nothing scans the whole table, and the work of one
call ends at its deadline.

Never removed: a group's newest run and the newest run that ended (what its pushes are
made of: the spec, the last start, the last result), a run still open, and a run whose end
a sink configured now has not been given yet (``closed_seq`` above the smallest
``delivered_seq`` of those sinks). Counters, the last success and failure, the failure
streak and the typical size and duration live in ``jobreport_groups`` and
``jobreport_counts``, so trimming runs never changes what a push carries.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any, NamedTuple

from jobreport.store.backends import Backend, Tx

__all__ = ["BATCH", "SWEEP_EVERY", "TAILS_KEPT", "Retention", "sweep", "trim_batch",
           "trim_group"]

#: At most this many runs are deleted (or emptied of their tail) in one transaction.
BATCH = 500
#: The whole store is swept at most this often (seconds).
SWEEP_EVERY = 3600.0
#: The output tails of this many newest runs of a group are kept.
TAILS_KEPT = 100
DAY = 86400.0

# the newest runs of a group, which no trim removes: the newest recorded (it gives the
# spec and the last start) and the newest ended (it gives the last result)
_NEWEST = ("SELECT id FROM jobreport_runs WHERE group_key = :k "
           "AND (outcome IS NULL OR outcome <> 'skipped') ORDER BY id DESC LIMIT 1")
_LAST_ENDED = ("SELECT id FROM jobreport_runs WHERE group_key = :k AND ended IS NOT NULL "
               "AND (outcome IS NULL OR outcome <> 'skipped') "
               "ORDER BY closed_seq DESC, id DESC LIMIT 1")
_NEWEST_ANY = "SELECT id FROM jobreport_runs WHERE group_key = :k ORDER BY id DESC LIMIT 1"
# the id of the (n+1)-th newest run of a group: it and the runs before it are beyond n
_BEYOND = ("SELECT id FROM jobreport_runs WHERE group_key = :k ORDER BY id DESC "
           "LIMIT 1 OFFSET :n")
_DELIVERED = "SELECT sink, delivered_seq FROM jobreport_deliveries WHERE group_key = :k"
_RECORDED = "SELECT sum(n) AS n FROM jobreport_counts WHERE group_key = :k"
# the candidates, oldest first, by the group's index on id or on start; the protection
# (open, undelivered, the newest two) is a filter on those few rows
_BY_COUNT = ("group_key = :k AND id <= :cut", "id")
_BY_AGE = ("group_key = :k AND started < :old", "started")
_KEEP = "ended IS NOT NULL AND id NOT IN (:p1, :p2, :p3)"
_TAILS = ("UPDATE jobreport_runs SET tail = NULL WHERE id IN (SELECT id FROM jobreport_runs "
          "WHERE group_key = :k AND tail IS NOT NULL AND id <= :cut ORDER BY id LIMIT :b)")


# a NamedTuple (immutable, compared by value) rather than a frozen dataclass: made at every
# run's end, where a dataclass's generated methods cost about 0.4 ms (benchmarks/README.md)
class Retention(NamedTuple):
    """How much history each group keeps: runs newer than ``keep_days`` days and among its
    newest ``keep_runs`` (0: that limit is off), and the output tails of its newest
    ``keep_tails`` runs."""

    keep_days: int = 400
    keep_runs: int = 10_000
    keep_tails: int = TAILS_KEPT


def trim_batch(tx: Tx, key: str, retention: Retention, sinks: Sequence[str], *,
               now: float, batch: int | None = None, exact: bool = True) -> int:
    """One batch of trimming group ``key``: delete at most ``batch`` runs beyond the
    retention and empty at most ``batch`` old output tails. Returns how many rows it
    changed (``batch`` or more: there may be more to do).

    Finding the runs beyond ``keep_runs`` walks the group's newest ``keep_runs`` index
    entries (half a millisecond for 10,000): not ``exact`` (a run trimming its own group),
    that is done on every ``keep_runs / 1000``-th run of the group only, so that a run
    costs the same on a store within its limits whatever they are; a group is then at
    most 0.1% over ``keep_runs`` (ten runs at the default) until its next check or the
    hourly sweep."""
    batch = BATCH if batch is None else batch
    params: dict[str, Any] = {"k": key, "b": batch}
    newest_any = tx.rows(_NEWEST_ANY, params)
    if not newest_any:
        return 0
    newest, ended = tx.rows(_NEWEST, params), tx.rows(_LAST_ENDED, params)
    params.update(p1=newest[0]["id"] if newest else -1, p2=ended[0]["id"] if ended else -1,
                  p3=newest_any[0]["id"])
    keep = _KEEP
    floor = _delivered_floor(tx, key, sinks)
    if floor is not None:
        keep += " AND closed_seq <= :floor"
        params["floor"] = floor
    changed = 0
    if retention.keep_runs and (exact or _count_due(tx, key, retention.keep_runs)):
        cut = tx.rows(_BEYOND, {**params, "n": retention.keep_runs})
        if cut:
            changed += _delete(tx, _BY_COUNT, keep, {**params, "cut": cut[0]["id"]})
    if retention.keep_days and changed < batch:
        old = now - retention.keep_days * DAY
        changed += _delete(tx, _BY_AGE, keep, {**params, "old": old,
                                               "b": batch - changed})
    if retention.keep_tails:
        cut = tx.rows(_BEYOND, {**params, "n": retention.keep_tails})
        if cut:
            changed += tx.run(_TAILS, {**params, "cut": cut[0]["id"]})
    return changed


def _delete(tx: Tx, candidates: tuple[str, str], keep: str, params: dict[str, Any]) -> int:
    where, order = candidates  # fixed clauses of this module only
    return tx.run(f"DELETE FROM jobreport_runs WHERE id IN (SELECT id FROM jobreport_runs "  # noqa: S608
                  f"WHERE {where} AND {keep} ORDER BY {order} LIMIT :b)", params)


def _count_due(tx: Tx, key: str, keep_runs: int) -> bool:
    """Whether the group's runs are due to be counted against ``keep_runs`` now: on every
    ``keep_runs // 1000``-th run it recorded (its counters count each once)."""
    every = keep_runs // 1000
    if every <= 1:
        return True
    total = tx.rows(_RECORDED, {"k": key})[0]["n"]
    return int(total or 0) % every == 0


def _delivered_floor(tx: Tx, key: str, sinks: Sequence[str]) -> int | None:
    """The smallest ``delivered_seq`` of the group among ``sinks`` (a sink that has no mark
    for it yet: 0); None without sinks (nothing waits for a delivery)."""
    if not sinks:
        return None
    marks = {str(r["sink"]): int(r["delivered_seq"] or 0) for r in tx.rows(_DELIVERED,
                                                                          {"k": key})}
    return min(marks.get(sink, 0) for sink in sinks)



# --- a group, and the whole store ----------------------------------------------------------

_DUE = "retention_due"
_CURSOR = "retention_cursor"
_NEW_META = "{insert} INTO jobreport_meta (key, value) VALUES (:key, :value) {conflict}"
# one process claims the sweep: the one whose UPDATE moves the due time forward
_CLAIM = ("UPDATE jobreport_meta SET value = :next WHERE key = :key "
          "AND CAST(value AS DOUBLE PRECISION) <= :now")
_SET_META = "UPDATE jobreport_meta SET value = :value WHERE key = :key"
_GET_META = "SELECT value FROM jobreport_meta WHERE key = :key"
_GROUPS_AFTER = ("SELECT group_key FROM jobreport_groups WHERE group_key > :after "
                 "ORDER BY group_key LIMIT 50")


def _left(deadline: float) -> float:
    return deadline - time.monotonic()


def trim_group(db: Backend, key: str, retention: Retention, sinks: Sequence[str], *,
               deadline: float, now: float | None = None, exact: bool = True) -> bool:
    """Trim group ``key`` batch by batch until nothing is left to trim (True) or
    ``deadline`` (a ``time.monotonic()`` reading) has come (False). A transaction waits for
    another process's lock only until the deadline. ``exact``: see ``trim_batch``."""
    now = time.time() if now is None else now
    while _left(deadline) > 0:
        with db.write(wait=_left(deadline)) as tx:
            changed = trim_batch(tx, key, retention, sinks, now=now, exact=exact)
        if changed < BATCH:
            return True
    return False


def sweep(db: Backend, retention: Retention, sinks: Sequence[str], *, deadline: float,
          now: float | None = None) -> bool | None:
    """Trim every group, once an hour at most: None when no sweep is due (or another
    process has it), True when this call went over every group, False when the deadline
    came first (the next call, in any process, goes on from the group it stopped at)."""
    now = time.time() if now is None else now
    with db.write(wait=max(0.001, _left(deadline))) as tx:
        insert, conflict = tx.insert_missing
        for key in (_DUE, _CURSOR):
            tx.run(_NEW_META.format(insert=insert, conflict=conflict),
                   {"key": key, "value": "0" if key == _DUE else ""})
        if not tx.run(_CLAIM, {"key": _DUE, "now": now, "next": repr(now + SWEEP_EVERY)}):
            return None
        after = str(tx.rows(_GET_META, {"key": _CURSOR})[0]["value"] or "")
    done = False
    while _left(deadline) > 0:
        with db.read() as tx:
            keys = [str(r["group_key"]) for r in tx.rows(_GROUPS_AFTER, {"after": after})]
        if not keys:
            done = True
            break
        for key in keys:
            if not trim_group(db, key, retention, sinks, deadline=deadline, now=now):
                break
            after = key
    # a claimed sweep says where it got to (if it cannot at once, the next one starts over
    # from the previous place, in an hour)
    with db.write(wait=max(0.05, _left(deadline))) as tx:
        tx.run(_SET_META, {"key": _CURSOR, "value": "" if done else after})
        if not done:  # due again at once: the next run goes on with it
            tx.run(_SET_META, {"key": _DUE, "value": repr(now)})
    return done
