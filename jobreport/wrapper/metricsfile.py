"""Metrics a wrapped command writes to ``$JOBREPORT_METRICS_FILE``, and ``NAME=VALUE`` pairs.

A shell script appends lines while it runs::

    echo "backup_tables 42" >> "$JOBREPORT_METRICS_FILE"

Accepted are ``name value`` lines and the Prometheus text exposition format (``# HELP``,
``# TYPE`` gauge, counter, histogram, summary or untyped, ``name{label="value"} value``), as
``generate_latest`` writes it. A later line for the same series replaces an earlier one.
Names in jobreport's namespace are refused, except ``jobreport_last_size_bytes`` and
``jobreport_last_items``, which become the run's size and items, and the gauges of the
thresholds that judge a run's output (``jobreport_min_size_bytes``, ``jobreport_min_items``,
``jobreport_max_shrink_ratio``: the fields of ``jobreport.spec`` with the metrics-file
door), which hold the run to them where its command line does not, each held to its range.
A line that cannot be used is reported with its line number and skipped; it never fails
the run.
"""

from __future__ import annotations

import errno
import math
import os
import re
import stat
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jobreport.errors import InvalidNameError
from jobreport.names import DEFAULT_NAMESPACE, RESERVED_LABELS, check_metric_name
from jobreport.result import CustomFamily
from jobreport.spec import COUNT, FIELDS, METRICS_FILE, Field

__all__ = ["MAX_BYTES", "READ_TIMEOUT", "ParsedMetrics", "parse_assignments", "parse_text",
           "read_file"]

#: At most this much of the file is read: a runaway writer cannot stall the end of a run.
MAX_BYTES = 1024 * 1024
#: Reading the file never takes longer than this (seconds of wall-clock time).
READ_TIMEOUT = 5.0
#: The sample names each type allows besides the family's own name.
_SUFFIXES: dict[str, tuple[str, ...]] = {
    "gauge": (),
    "untyped": (),
    "counter": ("_total",),
    "histogram": ("_bucket", "_count", "_sum"),
    "summary": ("_count", "_sum"),
}
_NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
_SAMPLE = re.compile(rf"({_NAME})\s*(\{{.*\}})?\s+(\S+)(?:\s+(\S+))?\s*")
_LABEL = re.compile(r'\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*=\s*"((?:[^"\\]|\\.)*)"\s*(,|$)')
_ESCAPES = {"\\\\": "\\", '\\"': '"', "\\n": "\n"}


@dataclass
class ParsedMetrics:
    """Families ready for the end push, and one message per line that was skipped."""

    families: list[CustomFamily] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    size: float | None = None
    """``jobreport_last_size_bytes`` as written by ``job_metrics`` inside ``jobreport run``."""
    items: float | None = None
    """``jobreport_last_items``, likewise."""
    spec: dict[str, Any] = field(default_factory=dict)
    """Thresholds of the run's spec the file gave (typed, by field name)."""


@dataclass
class _Family:
    name: str
    type: str = "gauge"
    help: str = ""
    samples: dict[tuple[str, tuple[tuple[str, str], ...]], float] = field(default_factory=dict)


def read_file(path: str | Path, namespace: str = DEFAULT_NAMESPACE, *,
              timeout: float = READ_TIMEOUT) -> ParsedMetrics:
    """Parse the metrics file at ``path``; a missing or empty file holds no metrics.

    Only a regular file is read (a FIFO or a device put in its place is refused, never
    waited on), at most ``MAX_BYTES`` of it, within ``timeout`` seconds of wall-clock time.
    A last line cut by the limit is dropped with a problem that names it."""
    try:
        data = _read_bounded(str(path), timeout)
    except FileNotFoundError:
        return ParsedMetrics()
    except _NotRegular:
        return ParsedMetrics(problems=[f"{path} is not a regular file (a FIFO, a device or "
                                       "a link?); not read"])
    except TimeoutError:
        return ParsedMetrics(problems=[f"reading {path} took longer than {timeout:g}s; "
                                       "not read"])
    except OSError as e:
        return ParsedMetrics(problems=[f"cannot read {path}: {e.strerror}"])
    cut: str | None = None
    over = len(data) > MAX_BYTES
    if over:
        data = data[:MAX_BYTES]
        head, newline, tail = data.rpartition(b"\n")
        if tail:  # the limit fell inside a line: its number would be cut too
            number = data.count(b"\n") + 1
            data = head + newline
            cut = (f"line {number}: {_shown(tail.decode('utf-8', 'replace'))}: cut at the "
                   f"{MAX_BYTES}-byte limit; dropped")
    result = parse_text(data.decode("utf-8", errors="replace"), namespace)
    if over:
        result.problems.append(f"only the first {MAX_BYTES} bytes were read")
    if cut is not None:
        result.problems.append(cut)
    return result


class _NotRegular(Exception):
    pass


def _read_bounded(path: str, timeout: float) -> bytes:
    """The first ``MAX_BYTES + 1`` bytes of the regular file ``path``, read in a thread so
    that a file system that hangs (a dead NFS server) costs at most ``timeout``."""
    if not stat.S_ISREG(os.lstat(path).st_mode):
        raise _NotRegular
    box: list[bytes | BaseException] = []

    def read() -> None:
        try:
            # O_NONBLOCK: a FIFO swapped in after the check must not block the open
            fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC)
            try:
                if not stat.S_ISREG(os.fstat(fd).st_mode):
                    raise _NotRegular
                chunks, size = [], 0
                while size <= MAX_BYTES:
                    chunk = os.read(fd, MAX_BYTES + 1 - size)
                    if not chunk:
                        break
                    chunks.append(chunk)
                    size += len(chunk)
                box.append(b"".join(chunks))
            finally:
                os.close(fd)
        except BaseException as e:  # handed to the caller
            box.append(e)

    reader = threading.Thread(target=read, name="jobreport-metrics-file", daemon=True)
    reader.start()
    reader.join(timeout)
    if not box:
        raise TimeoutError
    if isinstance(box[0], BaseException):
        if isinstance(box[0], OSError) and box[0].errno == errno.ELOOP:
            raise _NotRegular from None
        raise box[0]
    return box[0]


def parse_text(text: str, namespace: str = DEFAULT_NAMESPACE) -> ParsedMetrics:
    """Parse ``name value`` lines or text exposition; see the module docstring."""
    parser = _Parser(namespace)
    lines = text.split("\n")
    for number, raw in enumerate(lines, start=1):
        try:
            parser.line(raw)
        except ValueError as e:
            parser.problems.append(f"line {number}: {_shown(raw)}: {e}")
    return parser.result()


def parse_assignments(pairs: Iterable[str], namespace: str = DEFAULT_NAMESPACE) -> ParsedMetrics:
    """Parse ``NAME=VALUE`` (or ``NAME{label="v"}=VALUE``) arguments of ``jobreport push``."""
    parser = _Parser(namespace)
    for pair in pairs:
        name, sep, value = pair.rpartition("=")
        try:
            if not sep or not name.strip() or not value.strip():
                raise ValueError("write NAME=VALUE, e.g. backup_tables=42")
            parser.line(f"{name.strip()} {value.strip()}")
        except ValueError as e:
            parser.problems.append(f"{_shown(pair)}: {e}")
    return parser.result()


def _shown(raw: str) -> str:
    return repr(raw if len(raw) <= 80 else raw[:77] + "...")


class _Parser:
    def __init__(self, namespace: str) -> None:
        self.namespace = namespace
        self.families: dict[str, _Family] = {}
        self.problems: list[str] = []
        self.figures: dict[str, float] = {}
        # the run's own figures, which job_metrics inside `jobreport run` hands over
        self.own = {f"{ns}_last_{what}": what for ns in {namespace, DEFAULT_NAMESPACE}
                    for what in ("size_bytes", "items")}
        # the thresholds a run's output is held to, by the name of their gauge
        self.thresholds: dict[str, Field] = {
            f"{ns}_{f.gauge[0]}": f for ns in {namespace, DEFAULT_NAMESPACE}
            for f in FIELDS if METRICS_FILE in f.doors and f.gauge is not None}
        self.spec: dict[str, Any] = {}

    def result(self) -> ParsedMetrics:
        out = [_freeze(f) for f in self.families.values() if f.samples]
        return ParsedMetrics(families=out, problems=self.problems,
                             size=self.figures.get("size_bytes"),
                             items=self.figures.get("items"), spec=self.spec)

    def line(self, raw: str) -> None:
        line = raw.strip()
        if not line:
            return
        if line.startswith("#"):
            self._meta(line)
        else:
            self._sample(line)

    def _meta(self, line: str) -> None:
        parts = line[1:].strip().split(None, 2)
        if len(parts) < 2 or parts[0] not in ("HELP", "TYPE"):
            return  # an ordinary comment
        kind, name = parts[0], _family_name(parts[1])
        if name in self.own or name in self.thresholds:
            return
        _check_name(name, self.namespace)
        fam = self.families.setdefault(name, _Family(name))
        rest = parts[2].strip() if len(parts) > 2 else ""
        if kind == "HELP":
            fam.help = _unescape(rest)
            return
        if rest not in _SUFFIXES:
            raise ValueError(f"type {rest or '(none)'} is not supported (use gauge, counter, "
                             "histogram, summary or untyped)")
        if fam.samples and fam.type != rest:
            raise ValueError(f"# TYPE must come before the samples of {name}")
        fam.type = rest

    def _sample(self, line: str) -> None:
        match = _SAMPLE.fullmatch(line)
        if match is None:
            raise ValueError('expected "name value" or name{label="value"} value')
        name, label_text, value_text, timestamp = match.groups()
        value = _value(value_text)
        if timestamp is not None:
            raise ValueError("timestamps are not allowed (the Pushgateway rejects them)")
        labels = _labels(label_text[1:-1]) if label_text else ()
        if name in self.own and not labels:
            from jobreport.numbers import figure

            what = self.own[name]
            self.figures[what] = figure("size" if what == "size_bytes" else what, value)
            return
        threshold = self.thresholds.get(name)
        if threshold is not None and not labels:
            whole = threshold.kind == COUNT and value.is_integer()
            self.spec[threshold.name] = threshold.convert(int(value) if whole else value)
            return
        fam = _family_for(name, self.families)
        if fam is None:
            _check_name(name, self.namespace)
            fam = self.families[name] = _Family(name)
        if fam.type == "counter" and (value < 0 or math.isnan(value)):
            raise ValueError("a counter cannot be negative or NaN")
        fam.samples[(name, labels)] = value


def _family_for(sample_name: str, families: dict[str, _Family]) -> _Family | None:
    """The family a sample belongs to: its own name, or a suffix its family's type allows
    (``x_total`` of counter ``x``, ``h_bucket`` of histogram ``h``)."""
    fam = families.get(sample_name)
    if fam is not None:
        return fam
    for suffix in ("_total", "_bucket", "_count", "_sum"):
        if sample_name.endswith(suffix):
            fam = families.get(sample_name[: -len(suffix)])
            if fam is not None and suffix in _SUFFIXES[fam.type]:
                return fam
    return None


def _family_name(name: str) -> str:
    if not re.fullmatch(_NAME, name):
        raise ValueError("not a metric name (letters, digits, _ and :, not first a digit)")
    return name


def _check_name(name: str, namespace: str) -> None:
    try:
        check_metric_name(name, namespace)
    except InvalidNameError as e:
        raise ValueError(f"{e.name} {e.problem}") from None


def _value(text: str) -> float:
    from jobreport.numbers import sample_value

    return sample_value(text)


def _labels(text: str) -> tuple[tuple[str, str], ...]:
    labels: dict[str, str] = {}
    pos = 0
    text = text.strip()
    while pos < len(text):
        match = _LABEL.match(text, pos)
        if match is None:
            raise ValueError('labels must look like {name="value",other="value"}')
        name, value = match.group(1), _unescape(match.group(2))
        if name in RESERVED_LABELS or name.startswith("__"):
            raise ValueError(f"label {name} is reserved")
        if name in labels:
            raise ValueError(f"label {name} appears twice")
        labels[name] = value
        pos = match.end()
    return tuple(sorted(labels.items()))


def _unescape(text: str) -> str:
    return re.sub(r'\\[\\"n]', lambda m: _ESCAPES[m.group(0)], text)


def _freeze(fam: _Family) -> CustomFamily:
    name = fam.name
    samples = [(sample, labels, value) for (sample, labels), value in fam.samples.items()]
    if fam.type == "counter":
        # the samples of counter x are x_total, whether written x, x_total or declared so
        name = fam.name.removesuffix("_total")
        merged = {labels: value for _sample, labels, value in samples}
        samples = [(name + "_total", labels, value) for labels, value in merged.items()]
    return CustomFamily(name=name, help=fam.help, type=fam.type, samples=tuple(samples))
