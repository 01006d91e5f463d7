"""What the shipped alert rules would fire for a group the gateway holds, judged here from the
same gauges and thresholds (``monitoring/rules/jobreport-alerts.yml``), and how grave each is:
the judgement of ``jobreport status`` and of its ``--check`` for Nagios, Icinga and the
like.

``KINDS`` is the one table: each problem, the rule it mirrors and that rule's severity
(tests/test_status_check.py holds it equal to the rules file, and holds the judgement to
what promtool says the rules fire). A problem that no rule has (runs a sink has not
received, a value that is not a number) has a state of its own. The states are the
monitoring-plugin exit codes: 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol

from jobreport.outcomes import SKIPPED

__all__ = ["CRITICAL", "HEARTBEAT_LOST_AFTER", "KINDS", "NOT_JUDGED", "OK", "SEVERITIES",
           "STATE_NAMES", "UNKNOWN", "WARNING", "Finding", "Kind", "Readings", "findings",
           "rank", "worst"]

OK, WARNING, CRITICAL, UNKNOWN = 0, 1, 2, 3
STATE_NAMES = {OK: "OK", WARNING: "WARNING", CRITICAL: "CRITICAL", UNKNOWN: "UNKNOWN"}
#: The rules' ``severity`` labels as states.
SEVERITIES = {"warning": WARNING, "critical": CRITICAL}
#: JobreportJobHeartbeatLost fires when the last heartbeat of a running job is older.
HEARTBEAT_LOST_AFTER = 600.0


@dataclass(frozen=True)
class Kind:
    """A kind of problem: what ``status`` calls it (``label``, also in the ``--check``
    summary), the alert rule it mirrors (None: no rule has it) and its state."""

    label: str
    rule: str | None
    state: int


#: Every problem ``status`` finds: the rule it mirrors and the rule's severity.
KINDS: dict[str, Kind] = {k.label: k for k in (
    Kind("overdue", "JobreportJobOverdue", CRITICAL),
    Kind("never succeeded", "JobreportJobNeverSucceeded", CRITICAL),
    Kind("failed", "JobreportJobFailed", WARNING),
    Kind("missed start", "JobreportJobMissedStart", WARNING),
    Kind("too short", "JobreportJobTooShort", WARNING),
    Kind("too small", "JobreportJobOutputTooSmall", CRITICAL),
    Kind("output not updated", "JobreportJobOutputNotUpdated", CRITICAL),
    Kind("running too long", "JobreportJobRunningTooLong", WARNING),
    Kind("heartbeat lost", "JobreportJobHeartbeatLost", WARNING),
    Kind("pushes failing", "JobreportPushFailing", WARNING),
    # no rule: what the store says a sink has not received (a refused receiver, a missing
    # textfile directory), a value that is not a number (nothing can be judged from it)
    Kind("undelivered", None, WARNING),
    Kind("odd value", None, UNKNOWN),
    # not a problem: a failure the failed alert still waits on (--alert-after-failures)
    Kind("failing", None, OK),
)}

#: The rules ``status`` does not judge: they are about Prometheus scraping the gateway,
#: which ``status`` reads directly (a gateway it cannot read is UNKNOWN).
NOT_JUDGED = frozenset({"JobreportPushgatewayDown", "JobreportPushgatewayNotScraped"})


class Readings(Protocol):
    """What a group holds that the rules read (``jobreport.commands.status.GroupStatus``,
    named by its shape): each None when the group does not hold it."""

    @property
    def now(self) -> float: ...
    @property
    def last_outcome(self) -> str | None: ...
    @property
    def last_success(self) -> float | None: ...
    @property
    def last_start(self) -> float | None: ...
    @property
    def running(self) -> int: ...
    @property
    def expected_interval(self) -> float | None: ...
    @property
    def max_runtime(self) -> float | None: ...
    @property
    def last_push(self) -> float | None: ...
    @property
    def last_push_failure(self) -> float | None: ...
    @property
    def success_deadline(self) -> float | None: ...
    @property
    def start_deadline(self) -> float | None: ...
    @property
    def min_runtime(self) -> float | None: ...
    @property
    def last_duration(self) -> float | None: ...
    @property
    def last_run_success(self) -> float | None: ...
    @property
    def consecutive_failures(self) -> float | None: ...
    @property
    def alert_after_failures(self) -> float | None: ...
    @property
    def last_heartbeat(self) -> float | None: ...
    @property
    def last_end(self) -> float | None: ...
    @property
    def last_size(self) -> float | None: ...
    @property
    def last_items(self) -> float | None: ...
    @property
    def min_size(self) -> float | None: ...
    @property
    def min_items(self) -> float | None: ...
    @property
    def max_shrink(self) -> float | None: ...
    @property
    def typical_size(self) -> float | None: ...
    @property
    def output_updated(self) -> float | None: ...


@dataclass(frozen=True)
class Finding:
    """One problem of a group (or of a sink): its kind, how ``status`` says it, and the
    labels the alert would carry beside the group's (``threshold``, ``outcome``)."""

    kind: Kind
    text: str
    labels: tuple[tuple[str, str], ...] = ()

    @property
    def state(self) -> int:
        return self.kind.state

    def __str__(self) -> str:
        return self.text


def rank(state: int) -> int:
    """How grave a state is: CRITICAL over WARNING over UNKNOWN over OK (the order of the
    monitoring plugins' own ``max_state_alt``: one grave problem is not hidden by a value
    that could not be judged)."""
    return (OK, UNKNOWN, WARNING, CRITICAL).index(state)


def worst(states: Iterable[int]) -> int:
    """The state of several partial results: the gravest (``rank``)."""
    return max(states, key=rank, default=OK)


def findings(s: Readings) -> list[Finding]:
    """What the shipped rules would fire for group ``s`` at ``s.now``, each rule as its
    expression says (a threshold the group does not push keeps its rule silent)."""
    out: list[Finding] = []
    now = s.now
    succeeded = s.last_success is not None and s.last_success > 0
    # JobreportJobOverdue: past the success deadline, or the last success older than the
    # interval (expect_every + grace)
    if s.success_deadline is not None and s.success_deadline < now:
        out.append(_found("overdue", "overdue: past its deadline" if succeeded
                          else "overdue: never succeeded"))
    elif (s.expected_interval is not None and succeeded and s.last_success is not None
          and now - s.last_success > s.expected_interval):
        out.append(_found("overdue", "overdue"))
    # JobreportJobNeverSucceeded: started, never succeeded, the start older than the interval
    if (s.expected_interval is not None and not succeeded and s.last_start is not None
            and now - s.last_start > s.expected_interval):
        out.append(_found("never succeeded", "overdue: never succeeded"))
    out += _failed(s)
    # JobreportJobMissedStart: past the start deadline, and not running
    if s.start_deadline is not None and s.start_deadline < now and not s.running:
        out.append(_found("missed start", "missed start"))
    # JobreportJobTooShort: shorter than the minimum, unless the run is known to have failed
    if (s.min_runtime is not None and s.last_duration is not None
            and s.last_duration < s.min_runtime and s.last_run_success != 0):
        out.append(_found("too short", "too short"))
    # JobreportJobOutputTooSmall: below its minimum size or items, or shrunk by more than
    # max_shrink from its typical size, unless the run is known to have failed
    threshold = _too_small(s)
    if threshold is not None and s.last_run_success != 0:
        out.append(Finding(KINDS["too small"], "too small", (("threshold", threshold),)))
    # JobreportJobOutputNotUpdated: a finished run that left its --size-path untouched
    if s.last_end is not None and s.output_updated == 0 and s.last_run_success != 0:
        out.append(_found("output not updated", "output not updated"))
    # JobreportJobRunningTooLong
    if (s.running and s.max_runtime is not None and s.last_start is not None
            and now - s.last_start > s.max_runtime):
        out.append(_found("running too long", "running too long"))
    # JobreportJobHeartbeatLost: only a heartbeat of the run in progress counts
    if (s.running and s.last_heartbeat is not None and s.last_start is not None
            and s.last_heartbeat >= s.last_start
            and now - s.last_heartbeat > HEARTBEAT_LOST_AFTER):
        out.append(_found("heartbeat lost", "heartbeat lost"))
    # JobreportPushFailing: the gateway rejected the last push
    if (s.last_push_failure is not None and s.last_push is not None
            and s.last_push_failure > s.last_push):
        out.append(_found("pushes failing", "pushes failing"))
    return out


def _too_small(s: Readings) -> str | None:
    """The threshold JobreportJobOutputTooSmall fires on (its ``threshold`` label: the first
    of min_size, max_shrink, min_items that holds), or None."""
    size, items = s.last_size, s.last_items
    if size is not None and s.min_size is not None and size < s.min_size:
        return "min_size"
    if (size is not None and s.max_shrink is not None and s.typical_size is not None
            and size < (1 - s.max_shrink) * s.typical_size):
        return "max_shrink"
    if items is not None and s.min_items is not None and items < s.min_items:
        return "min_items"
    return None


def _failed(s: Readings) -> list[Finding]:
    """JobreportJobFailed: the last finished run did not succeed (not a skip), and that makes
    as many unsuccessful runs in a row as the job's alert_after_failures (1 when it pushes
    none); a group without the failure count alerts on its last run, one without
    last_run_success on the count."""
    streak, wanted = s.consecutive_failures, s.alert_after_failures
    reached = streak is not None and streak >= (wanted if wanted is not None else 1)
    if s.last_run_success is not None:
        last_failed = s.last_run_success == 0 and s.last_outcome != SKIPPED
        fires = last_failed and (reached or streak is None)
    else:
        last_failed = fires = reached
    outcome = s.last_outcome or "not successful"
    if fires:
        row = f" ({int(streak)} in a row)" if streak is not None and streak > 1 else ""
        # the rule takes the outcome label from the state set, when the group pushes both
        labels = (("outcome", s.last_outcome),) if (
            s.last_outcome is not None and s.last_run_success is not None) else ()
        return [Finding(KINDS["failed"], f"last run: {outcome}{row}", labels)]
    if last_failed and streak is not None and wanted is not None:
        return [_found("failing", f"last run: {outcome} ({int(streak)} of {int(wanted)} "
                                  "in a row before the failed alert)")]
    return []


def _found(label: str, text: str) -> Finding:
    return Finding(KINDS[label], text)
