"""How the command line prints runs and groups: tables, ages, sizes, dates (with their zone).

Everything a table shows passes through ``printable``: a job name or label value holding an
escape sequence must not be able to rewrite the terminal of whoever looks at it."""

from __future__ import annotations

import datetime as _dt
import time
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

import click

from jobreport.durations import format_duration, parse_duration

if TYPE_CHECKING:
    from jobreport.commands.status import GroupStatus
    from jobreport.store.read_rows import RunRecord

__all__ = ["group_text", "history_table", "parse_since", "printable", "run_details",
           "status_table", "table", "when"]


def printable(text: str, keep: str = "") -> str:
    """``text`` with every character a terminal would act on (control characters, escape
    sequences, bidirectional overrides, line separators) written as an escape (``\x1b``,
    ``\u202e``); the characters of ``keep`` stay as they are."""
    if text.isprintable():
        return text
    out = []
    for char in text:
        if char.isprintable() or char in keep:
            out.append(char)
        elif ord(char) < 0x100:
            out.append(f"\\x{ord(char):02x}")
        elif ord(char) < 0x10000:
            out.append(f"\\u{ord(char):04x}")
        else:
            out.append(f"\\U{ord(char):08x}")
    return "".join(out)


def _stamp(ts: float, pattern: str = "%Y-%m-%d %H:%M:%S") -> str:
    """Local time with its zone (``2026-05-01 03:00:04 CEST``)."""
    return _dt.datetime.fromtimestamp(ts).astimezone().strftime(pattern + " %Z")


def group_text(grouping: dict[str, str]) -> str:
    ordered = sorted(grouping.items(), key=lambda kv: (kv[0] != "job", kv[0] != "instance"))
    return "group " + printable(" ".join(f"{k}={v}" for k, v in ordered))


def parse_since(text: str) -> float:
    try:
        return time.time() - parse_duration(text)
    except ValueError as e:
        too_long = "too long" in str(e)
    try:
        moment = _dt.datetime.fromisoformat(text)
    except ValueError:
        raise click.BadParameter(
            f"{text!r} is out of range: a duration from 0s to 100y" if too_long else
            f"{text!r} is neither a duration (24h, 7d) nor a date (2024-05-01)",
            param_hint="--since") from None
    try:
        return moment.timestamp()
    except (ValueError, OverflowError, OSError):  # before the epoch or the year 9999 local
        raise click.BadParameter(f"{text!r} is out of range for a date on this host",
                                 param_hint="--since") from None


def when(ts: float | None) -> str:
    if ts is None:
        return "-"
    return _stamp(ts)


def age(seconds: float | None) -> str:
    if seconds is None:
        return "never"
    return format_duration(round(seconds)) + " ago"


def seconds_text(value: float | None) -> str:
    if value is None:
        return "-"
    return format_duration(round(value, 3) if value < 60 else round(value))


def bytes_text(value: float | None) -> str:
    if value is None:
        return "-"
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(value) < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return "-"  # pragma: no cover


def number_text(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:g}"


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Columns padded to their widest cell; every cell made ``printable``."""
    rows = [[printable(c) for c in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip()]
    for row in rows:
        lines.append("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
    return "\n".join(lines)


def labels_text(grouping: dict[str, str], skip: Iterable[str] = ("job", "instance")) -> str:
    return ",".join(f"{k}={v}" for k, v in grouping.items() if k not in skip) or "-"


def _figure(r: RunRecord, name: str) -> Any:
    """A figure of the run's result (None while it runs)."""
    return getattr(r.result, name) if r.result is not None else None


def history_table(records: Sequence[RunRecord]) -> str:
    rows = [
        [str(r.id), when(r.started), r.job, r.grouping.get("instance", "-"),
         labels_text(r.grouping), seconds_text(r.duration), _outcome_text(r),
         "-" if r.exit_code is None else str(r.exit_code), bytes_text(_figure(r, "size")),
         number_text(_figure(r, "items")), _short(_figure(r, "error"))]
        for r in records
    ]
    return table(["ID", "STARTED", "JOB", "INSTANCE", "LABELS", "DURATION", "OUTCOME",
                   "EXIT", "SIZE", "ITEMS", "ERROR"], rows)


#: The widest error the table shows (``history --run ID`` shows it whole).
_ERROR_WIDTH = 40


def _short(error: str | None) -> str:
    if not error:
        return "-"
    return error if len(error) <= _ERROR_WIDTH else error[:_ERROR_WIDTH - 3] + "..."


def _outcome_text(r: RunRecord) -> str:
    """The outcome; a success shorter than the run's --min-runtime, smaller than its
    --min-size or --min-items, or that wrote nothing to its --size-path is marked."""
    marks = []
    if r.too_short and r.spec is not None and r.spec.min_runtime is not None:
        marks.append(f"too short: < {seconds_text(r.spec.min_runtime)}")
    if r.too_small:
        marks.append("too small")
    if r.result is not None and r.result.output_updated == 0:
        marks.append("output not updated")
    if marks:
        return f"{r.outcome} ({'; '.join(marks)})"
    return r.outcome or "running"


def run_details(r: RunRecord) -> str:
    fields = [
        ("run", str(r.id)), ("run id", r.uid or "-"), ("job", r.job),
        ("labels", labels_text(r.grouping, ("job",))),
        ("host", r.host), ("pid", "-" if r.pid is None else str(r.pid)),
        ("command", r.command or "-"), ("started", when(r.started)), ("ended", when(r.ended)),
        ("duration", seconds_text(r.duration)), ("outcome", _outcome_text(r)),
        ("exit code", "-" if r.exit_code is None else str(r.exit_code)),
        ("error", _figure(r, "error") or "-"),
        ("size", bytes_text(_figure(r, "size"))), ("items", number_text(_figure(r, "items"))),
        ("cpu", seconds_text(_figure(r, "cpu_seconds"))),
        ("max rss", bytes_text(_figure(r, "max_rss_bytes"))),
    ]
    for family in _figure(r, "custom") or ():
        for name, labels, value in family.samples:
            shown = name + ("{" + ",".join(f'{k}="{v}"' for k, v in labels) + "}"
                            if labels else "")
            fields.append((shown, f"{value:g}"))
    fields = [(printable(k), printable(v)) for k, v in fields]
    width = max(len(k) for k, _ in fields)
    out = [f"{k.ljust(width)}  {v}" for k, v in fields]
    tail = _figure(r, "tail")
    if tail:
        out += ["", "last lines of output:", printable(tail, keep="\n\t")]
    return "\n".join(out)


def status_table(groups: Sequence[GroupStatus]) -> str:
    rows = [
        [g.job, g.instance or "-", labels_text({"job": g.job, **g.labels}),
         g.last_outcome or "-", age(g.success_age),
         "running" if g.running else "idle", _deadline_text(g),
         "retired: a later instance runs on" if g.retired
         else printable("; ".join(str(f) for f in g.findings)) or "ok"]
        for g in groups
    ]
    return table(["JOB", "INSTANCE", "LABELS", "LAST OUTCOME", "LAST SUCCESS", "NOW",
                   "NEXT DEADLINE", "PROBLEMS"], rows)


def _deadline_text(g: GroupStatus) -> str:
    """The next deadline the group pushed (a schedule's start or success deadline, or when
    an --expect-every job is overdue), and whether it has passed; "-" for a job with
    neither."""
    deadline = g.next_deadline
    if deadline is None:
        return "-"
    left = deadline - g.now
    stamp = _stamp(deadline, "%Y-%m-%d %H:%M")
    if left < 0:
        return f"{stamp} (passed {format_duration(round(-left))} ago)"
    return f"{stamp} (in {format_duration(round(left))})"
