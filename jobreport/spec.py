"""A job's spec: what each of its runs is held to, limited by and labelled with.

``FIELDS`` is the one list of its settings (each a ``jobreport.fields.Field``: kind, range,
flag and variable, help, doors, store column, gauge). What each room needs derives from it,
and tests/test_spec.py walks it: ``jobreport run``'s options (``cli.option_table``), the
keys of a ``[jobs.NAME]`` section (``config.files``), the keywords of ``job_metrics``
(``SpecKeywords``), the store's per-run columns (``store.schema``) and the gauges of a push
(``exposition``). A new threshold is one entry here plus its use.

``JobSpec`` is made once, each value checked at its door (``JobSpec.checked``), and carried
whole: the command line or ``job_metrics`` -> the run (``jobreport.runs``), which lays it
over the job's config section (``JobSpec.over``) -> the store -> the exposition. Standard
library only, and little of it: ``jobreport run`` makes its spec before its command starts.
"""

from __future__ import annotations

from collections.abc import Mapping

from jobreport.durations import format_duration
from jobreport.fields import (
    CLI,
    CONFIG,
    COUNT,
    CRON,
    DURATION,
    FLAG,
    METRICS_FILE,
    OUTPUT_DOORS,
    PATHS,
    PYTHON,
    RATIO,
    SIZE,
    ZONE,
    Field,
    SpecError,
    parse_flag,
    parse_labels,
)

# not typing's: this module is on the path of `jobreport run` before its command starts
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from typing import Any, TypedDict

__all__ = [
    "BY_NAME", "CLI", "CONFIG", "COUNT", "CRON", "DURATION", "FIELDS", "FLAG", "GAUGED",
    "METRICS_FILE", "PATHS", "PYTHON", "RATIO", "SIZE", "STORED", "TAIL_MAX_BYTES", "ZONE",
    "Field", "JobSpec", "SpecError", "contradiction", "parse_flag", "parse_labels",
]

#: The output tail a run keeps (and the store stores) is at most this many last bytes.
TAIL_MAX_BYTES = 64 * 1024

#: Every field of a job's spec, in the order ``jobreport run --help`` shows them.
FIELDS: tuple[Field, ...] = (
    Field("expect_every", DURATION,
          "The job should succeed this often, e.g. 24h (overdue after this plus --grace).",
          flag="--expect-every", env="JOBREPORT_EXPECT_EVERY", above=True,
          why="the job would be overdue right after every success", column="real",
          gauge=("expected_interval_seconds",
                 "The job is overdue this long after its last success (expect_every + grace).",
                 "expected_interval")),
    Field("grace", DURATION,
          "Slack after --expect-every before the job is overdue [default: 10% of it]; "
          "with --schedule, after each fire time [default: 10% of the gap].",
          flag="--grace", env="JOBREPORT_GRACE", column="real"),
    Field("max_runtime", DURATION,
          "A run is stuck after this long (pushed for the alert; nothing is killed).",
          flag="--max-runtime", env="JOBREPORT_MAX_RUNTIME", above=True,
          why="every run would count as stuck at once", column="real",
          gauge=("max_runtime_seconds", "A run is stuck after this long.")),
    Field("schedule", CRON,
          'When the job runs: five cron fields ("0 3 * * 1-5") or @hourly, @daily, '
          "@weekly, @monthly, @yearly (@midnight and @annually as cron takes them); pushes "
          "start and success deadlines instead of an interval (not with --expect-every).",
          flag="--schedule", env="JOBREPORT_SCHEDULE", column="cron"),
    Field("timezone", ZONE,
          "IANA time zone of --schedule, e.g. Europe/Berlin [default: the host's].",
          flag="--timezone", env="JOBREPORT_TIMEZONE", column="zone"),
    Field("min_runtime", DURATION,
          "A successful run shorter than this is suspicious (the too-short alert).",
          flag="--min-runtime", env="JOBREPORT_MIN_RUNTIME", column="real",
          gauge=("min_runtime_seconds", "A successful run shorter than this is suspicious.")),
    Field("alert_after_failures", COUNT,
          "The failed alert waits for N unsuccessful runs in a row [default: 1].",
          flag="--alert-after-failures", env="JOBREPORT_ALERT_AFTER_FAILURES", low=1,
          high=10000, column="int",
          gauge=("alert_after_failures",
                 "The failed-run alert waits for this many failures in a row.")),
    Field("retire_after", DURATION,
          "The group stops alerting once its last start is this old while another instance "
          "of the job started later (a host that is gone); longer than the job's interval.",
          flag="--retire-after", env="JOBREPORT_RETIRE_AFTER", above=True,
          why="every group but the newest would be retired at once", column="real",
          gauge=("retire_after_seconds",
                 "The group's alerts stop when its last start is this old and another "
                 "instance of the job started later.")),
    Field("min_size", SIZE,
          "A successful run that produced fewer bytes than this is wrong (the output-too-"
          "small alert): bytes, or 10MB (10^6 bytes), 1GiB (2^30 bytes).",
          flag="--min-size", env="JOBREPORT_MIN_SIZE", low=1, high=1e18,
          doors=OUTPUT_DOORS, column="real",
          gauge=("min_size_bytes",
                 "A successful run that produced fewer bytes than this is wrong.")),
    Field("min_items", COUNT,
          "A successful run that processed fewer items than this is wrong (the output-too-"
          "small alert).",
          flag="--min-items", env="JOBREPORT_MIN_ITEMS", low=1, high=10**12,
          doors=OUTPUT_DOORS, column="int",
          gauge=("min_items",
                 "A successful run that processed fewer items than this is wrong.")),
    Field("max_shrink", RATIO,
          "A successful run smaller than its typical size (the median of the last 10) by "
          "more than this share is wrong, e.g. 50% (or 0.5).",
          flag="--max-shrink", env="JOBREPORT_MAX_SHRINK", low=0, high=1,
          doors=OUTPUT_DOORS, column="real",
          gauge=("max_shrink_ratio",
                 "A successful run smaller than (1 - this) times the typical size is wrong.")),
    # at most 5m: JobreportJobHeartbeatLost fires after 10 minutes without a heartbeat, so
    # a longer interval would page between two heartbeats of a healthy run
    Field("heartbeat", DURATION,
          "Push a liveness timestamp this often while the command runs (at most 5m: the "
          "heartbeat-lost alert fires after 10 minutes without one).",
          flag="--heartbeat", env="JOBREPORT_HEARTBEAT", above=True, high=300.0,
          why="it would push without pause", doors=(CLI, PYTHON)),
    Field("timeout", DURATION,
          "Stop the command's whole process tree after this long (exit code 124).",
          flag="--timeout", env="JOBREPORT_RUN_TIMEOUT", above=True,
          why="the command would be stopped as soon as it starts", doors=(CLI,)),
    Field("kill_after", DURATION,
          "After the timeout's SIGTERM, SIGKILL whatever still runs after this long.",
          flag="--kill-after", env="JOBREPORT_KILL_AFTER", default=10.0, doors=(CLI,)),
    Field("size_paths", PATHS,
          "Report the bytes of this file or directory tree after the run as "
          "jobreport_last_size_bytes, and whether the run wrote to it "
          "(jobreport_last_output_updated; repeatable; in the environment, separate with "
          "':').",
          flag="--size-path", env="JOBREPORT_SIZE_PATH", default=(), doors=(CLI,)),
    Field("lock", FLAG,
          "Do not start while another run of this job (same group) runs on this host: "
          "record outcome skipped and exit 75.",
          flag="--lock", env="JOBREPORT_LOCK", default=False, doors=(CLI,)),
    Field("tail_lines", COUNT,
          "Keep this many last lines of output in the history (only when the output is "
          "not a terminal; 0: none).",
          flag="--tail", env="JOBREPORT_TAIL", high=10000, default=20, doors=(CLI,)),
)

#: The fields by name.
BY_NAME: dict[str, Field] = {f.name: f for f in FIELDS}
#: The fields each run keeps in the store (a column each), and those a push carries.
STORED: tuple[Field, ...] = tuple(f for f in FIELDS if f.column is not None)
GAUGED: tuple[Field, ...] = tuple(f for f in FIELDS if f.gauge is not None)


def contradiction(values: Mapping[str, Any],
                  call: Callable[[str], str] = str) -> SpecError | None:
    """The first contradiction among ``values`` (typed, by field name), or None. ``call``
    names a field as the door it came through would (``--min-runtime``, ``min_runtime``)."""
    every, schedule = values.get("expect_every"), values.get("schedule")
    if every is not None and schedule is not None:
        return SpecError("schedule", f"{call('expect_every')} and {call('schedule')} "
                         "exclude each other: a job has an interval or a schedule, not both",
                         ("schedule", "expect_every"))
    low, high = values.get("min_runtime"), values.get("max_runtime")
    if low is not None and high is not None and low >= high:
        return SpecError(
            "min_runtime", f"{call('min_runtime')} ({format_duration(low)}) must be shorter "
            f"than {call('max_runtime')} ({format_duration(high)}): every success would be "
            "too short or stuck", ("min_runtime", "max_runtime"))
    grace = values.get("grace")
    if grace is not None and every is not None and grace > every:
        return SpecError(
            "grace", f"{call('grace')} ({format_duration(grace)}) is longer than "
            f"{call('expect_every')} ({format_duration(every)}): a missed run would not "
            "count before the next one was due too", ("grace", "expect_every"))
    if grace is not None and schedule is not None:
        from jobreport.schedule import shortest_gap  # (cronsim: only for both given)

        gap = shortest_gap(schedule)
        if grace > gap:
            return SpecError(
                "grace", f"{call('grace')} ({format_duration(grace)}) is longer than the "
                f"shortest gap between the fire times of {call('schedule')} "
                f"({format_duration(gap)}): a missed run would not count before the next "
                "one was due too", ("grace", "schedule"))
    timeout = values.get("timeout")
    if low is not None and timeout is not None and low >= timeout:
        return SpecError(
            "min_runtime", f"{call('min_runtime')} ({format_duration(low)}) must be shorter "
            f"than {call('timeout')} ({format_duration(timeout)}): every run would be "
            "stopped before it could be long enough", ("min_runtime", "timeout"))
    return None


class JobSpec:
    """What each run of ``job`` is held to, limited by and labelled with (see ``FIELDS``).

    ``JobSpec(job, labels, **values)`` takes typed values as they are (the store's rows,
    tests); ``JobSpec.checked`` is the door for what a person typed. ``given`` names the
    fields that were given (the others hold their default): what ``over`` lays over the
    job's config section. Read-only once made (``replace`` makes a changed copy)."""

    __slots__ = ("given", "job", "labels", *(f.name for f in FIELDS))

    # the attributes, one per field (tests/test_spec.py holds them equal to FIELDS)
    job: str
    labels: Mapping[str, str]
    given: frozenset[str]
    expect_every: float | None
    grace: float | None
    max_runtime: float | None
    schedule: str | None
    timezone: str | None
    min_runtime: float | None
    alert_after_failures: int | None
    retire_after: float | None
    min_size: float | None
    min_items: int | None
    max_shrink: float | None
    heartbeat: float | None
    timeout: float | None
    kill_after: float
    size_paths: tuple[str, ...]
    lock: bool
    tail_lines: int

    def __init__(self, job: str, labels: Mapping[str, str] | None = None,
                 **values: Any) -> None:
        unknown = set(values) - set(BY_NAME)
        if unknown:
            raise TypeError(f"JobSpec has no field {sorted(unknown)[0]!r}")
        # given: set, and not just the default (--tail 20 is what no --tail says)
        given = frozenset(name for name, value in values.items()
                          if value is not None and value != BY_NAME[name].default)
        set_ = object.__setattr__
        set_(self, "job", job)
        set_(self, "labels", dict(labels or {}))
        set_(self, "given", given)
        for f in FIELDS:
            set_(self, f.name, values[f.name] if f.name in given else f.default)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"JobSpec is read-only: use replace({name}=...)")

    @classmethod
    def checked(cls, job: str, values: Mapping[str, object], *,
                labels: Mapping[str, str] | None = None, door: str = PYTHON,
                call: Callable[[str], str] = str) -> JobSpec:
        """The spec of ``values`` as they came through ``door`` (None: not given), each
        converted and held to its range, then to one another. Raises ``SpecError``
        naming the field (``call`` names it as the door does); ``TypeError`` for a name
        that is no field of that door."""
        typed: dict[str, Any] = {}
        for name, value in values.items():
            f = BY_NAME.get(name)
            if f is None or door not in f.doors:
                raise TypeError(f"unexpected keyword argument {name!r}")
            if value is not None:
                try:
                    typed[name] = f.convert(value)
                except ValueError as e:
                    raise SpecError(name, str(e)) from None
        problem = contradiction(typed, call)
        if problem is not None:
            raise problem
        return cls(job, labels, **typed)

    def replace(self, **changes: Any) -> JobSpec:
        """A copy with some values replaced (None: back to not given)."""
        values = {name: getattr(self, name) for name in self.given}
        values.update(changes)
        labels = values.pop("labels", self.labels)
        return JobSpec(values.pop("job", self.job), labels, **values)

    def over(self, lower: JobSpec) -> tuple[JobSpec, list[SpecError]]:
        """This spec laid over ``lower`` (the job's config section): what this one gives
        wins, the rest comes from ``lower``. ``expect_every`` and ``schedule`` go as a
        pair: giving one here drops both from ``lower``. Where the two levels contradict
        each other, ``lower``'s side is dropped; the problems are returned (to warn), each
        naming what was dropped."""
        values = {name: getattr(lower, name) for name in lower.given}
        if self.given & {"expect_every", "schedule"}:
            values.pop("expect_every", None)
            values.pop("schedule", None)
        values.update({name: getattr(self, name) for name in self.given})
        dropped: list[SpecError] = []
        for _ in range(len(FIELDS)):
            problem = contradiction(values)
            if problem is None:
                break
            lowers = tuple(name for name in problem.names if name not in self.given)
            if not lowers:  # pragma: no cover - each level was checked at its own door
                break
            for name in lowers:
                values.pop(name, None)
            dropped.append(SpecError(lowers[0], problem.problem, lowers))
        return JobSpec(self.job, {**lower.labels, **self.labels}, **values), dropped

    # --- what the rooms read ------------------------------------------------------------

    @property
    def expected_interval(self) -> float | None:
        """``expect_every`` + ``grace``, the grace 10% of ``expect_every`` by default."""
        if self.expect_every is None:
            return None
        grace = self.grace if self.grace is not None else self.expect_every * 0.1
        return self.expect_every + grace

    def too_short(self, outcome: str | None, duration: float | None) -> bool:
        """A success shorter than ``min_runtime``."""
        return (self.min_runtime is not None and outcome == "success"
                and duration is not None and duration < self.min_runtime)

    def too_small(self, outcome: str | None, size: float | None,
                  items: float | None) -> bool:
        """A success whose size is below ``min_size`` or whose items are fewer than
        ``min_items`` (``max_shrink`` needs the group's typical size: the rules judge it)."""
        return outcome == "success" and (
            (self.min_size is not None and size is not None and size < self.min_size)
            or (self.min_items is not None and items is not None and items < self.min_items))

    def gauges(self) -> Iterator[tuple[str, str, float]]:
        """(metric without namespace, help, value) of each field a push carries and that
        is set."""
        for f in GAUGED:
            if f.gauge is None:  # (not in GAUGED)
                continue
            metric, doc, attribute = f.gauge
            value = getattr(self, attribute)
            if value is not None:
                yield metric, doc, float(value)

    def output_gauges(self) -> Iterator[tuple[str, float]]:
        """(metric without namespace, value) of the given thresholds that a metrics file may
        carry (``METRICS_FILE``: what judges the output)."""
        for f in GAUGED:
            if METRICS_FILE in f.doors and f.name in self.given and f.gauge is not None:
                yield f.gauge[0], float(getattr(self, f.name))

    def columns(self) -> dict[str, Any]:
        """The values the store keeps with the run, by column (``STORED``)."""
        return {f.name: getattr(self, f.name) for f in STORED}

    @classmethod
    def from_columns(cls, job: str, row: Mapping[str, Any]) -> JobSpec:
        """The spec a run's row holds (as ``columns`` wrote it)."""
        values = {f.name: row[f.name] for f in STORED if row.get(f.name) is not None}
        for name, value in values.items():
            if BY_NAME[name].column == "int":
                values[name] = int(value)
        return cls(job, **values)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, JobSpec):
            return NotImplemented
        return all(getattr(self, n) == getattr(other, n) for n in JobSpec.__slots__)

    def __hash__(self) -> int:
        return hash((self.job, tuple(sorted(self.given))))

    def __repr__(self) -> str:
        shown = ", ".join(f"{n}={getattr(self, n)!r}" for n in sorted(self.given))
        labels = f", labels={dict(self.labels)!r}" if self.labels else ""
        return f"JobSpec({self.job!r}{labels}{', ' if shown else ''}{shown})"


if TYPE_CHECKING:
    class SpecKeywords(TypedDict, total=False):
        """The keywords of ``job_metrics(...)`` that make its spec (``FIELDS`` with the
        ``python`` door, and ``labels``); tests/test_spec.py holds them equal."""

        labels: Mapping[str, str] | None
        expect_every: str | float | None
        grace: str | float | None
        max_runtime: str | float | None
        schedule: str | None
        timezone: str | None
        min_runtime: str | float | None
        alert_after_failures: int | None
        retire_after: str | float | None
        min_size: str | float | None
        min_items: int | None
        max_shrink: str | float | None
        heartbeat: str | float | None

