"""What the Pushgateway says, parsed once: its ``/metrics`` text as it streams in, into
what it holds per group (``read_groups``: every group, or one; a ``HeldGroup`` each), and
its ``/api/v1/status`` into its version (``parse_version``).

The ``/metrics`` text is the one reading of what a gateway holds, for every command (a new
store's read back, ``status``, ``status --check``, ``prune``, ``delete``): the gateway's
JSON API cannot be read as it comes with the standard library, and held whole it costs
some 90 KB of memory a group (900 MB at 10,000 groups). The text comes family by family,
so each group's values arrive spread over the whole answer: what is kept while it streams
is, per group, only what the caller asks for (``keep``), never the answer. It is read here
rather than with prometheus_client's parser (``text_fd_to_metric_families``, which the
textfile sink uses): that one builds every sample of every family, 4-5x slower on a
gateway of 10,000 groups (9 s against 2 s for 16 MB of text, both traced), past the
budget of a command a person waits for.

A group is what the gateway writes ``push_time_seconds`` (and
``push_failure_time_seconds``) for, with exactly its grouping labels (and ``instance=""``
when the group has no instance, which is how a group without one reads back). One of
jobreport's series belongs to the group of its labels less the labels of its own
(``outcome``, ``version``); a group is jobreport's when it holds ``<namespace>_info``.

A gateway can hold anything another pusher put there, so the reading is tolerant of odd
samples (another type, a value that is not a number, a line it cannot read: left out). An
answer that is not the Pushgateway's (a proxy's page, JSON, Prometheus' or an exporter's
own ``/metrics``, an empty body) is nonsense and raises ``ValueError``: it is never read as
"no groups".

Cheap to import: standard library only.
"""

from __future__ import annotations

import json
import re
from collections.abc import Collection, Iterable, Iterator, Mapping
from types import MappingProxyType

from jobreport.exposition import escape_label_value
from jobreport.held import HeldGroup

__all__ = ["PUSH_FAILURE_TIME", "PUSH_TIME", "parse_version", "read_groups"]

#: The gauges the Pushgateway adds to every group it holds.
PUSH_TIME, PUSH_FAILURE_TIME = "push_time_seconds", "push_failure_time_seconds"
#: Every Pushgateway's own ``/metrics`` holds it, whatever it holds of others'.
_SIGNATURE = b"pushgateway_build_info"
#: jobreport's series that carry labels of their own beside the grouping labels.
_OWN_LABELS = {"runs_total": "outcome", "last_outcome": "outcome", "info": "version"}
#: A line longer than this is not one of jobreport's samples: skipped, never buffered whole.
_LONGEST_LINE = 1 << 20

# what each family name of the answer is to the reading (kept per name as it is met)
_SKIP, _GAUGE, _RUNS, _OUTCOME, _INFO, _PUSHED, _FAILED = range(7)

#: One ``name="value"`` of a sample's labels, as the text format writes it.
_PAIR = re.compile(rb'[\s,]*([A-Za-z_:][A-Za-z0-9_:]*)\s*=\s*"((?:[^"\\]+|\\.)*)"')
_ESCAPE = re.compile(r"\\(.)")
_UNESCAPE = {"\\": "\\", "n": "\n", '"': '"'}

#: A group's key: its labels (``instance=""`` left out), sorted.
Key = tuple[tuple[str, str], ...]
_EMPTY: Mapping[str, float] = MappingProxyType({})


class _Group:
    """What is kept of one group while the answer streams in."""

    __slots__ = ("failed", "gauges", "info", "outcome", "pushed", "runs")

    def __init__(self) -> None:
        self.gauges: dict[str, float] | None = None
        self.runs: dict[str, float] | None = None
        self.outcome: str | None = None
        self.info = False
        self.pushed: float | None = None
        self.failed: float | None = None


class _Reading:
    """The reading of one ``/metrics`` answer (``read_groups`` makes and runs it)."""

    def __init__(self, namespace: str, keep: Collection[str] | None,
                 only: Mapping[str, str] | None) -> None:
        self.prefix = f"{namespace}_".encode()
        self.keep = None if keep is None else frozenset(keep)
        self.kinds: dict[bytes, tuple[int, str]] = {
            PUSH_TIME.encode(): (_PUSHED, ""), PUSH_FAILURE_TIME.encode(): (_FAILED, "")}
        self.groups: dict[Key, _Group] = {}
        #: The group of the labels of a line without labels of its own (None: not one to
        #: keep), so that each group's labels are read once, not on each of its lines.
        self.by_labels: dict[bytes, _Group | None] = {}
        self.signed = False  # the Pushgateway's own metric was met
        self.only: Key | None = None
        self.job = b""
        if only is not None:
            self.only = _key({str(k): str(v) for k, v in only.items()})
            # the cheap test of every line: the job's label as the text format writes it
            # (each sample of the group carries it)
            self.job = b'job="' + escape_label_value(str(only.get("job", ""))).encode() + b'"'

    def read(self, chunks: Iterable[bytes]) -> None:
        """Keep what is asked for of each line of the answer. One loop, its lookups bound
        to locals: it runs once per line of the answer (30 lines a group)."""
        checked = False
        kinds, by_labels, prefix, only = self.kinds, self.by_labels, self.prefix, self.only
        for line in _lines(chunks):
            if not line or line[0] == 35:  # "#": HELP and TYPE
                continue
            if not checked:
                if not (line[:1].isalpha() or line[:1] in b"_:"):
                    raise ValueError("not the Prometheus text format")
                checked = True
            brace = line.find(b"{")
            if brace < 0:
                continue  # no labels: none of a group's (the gateway's own metrics)
            name = line[:brace]
            kind = kinds.get(name)
            if kind is None:
                if name == _SIGNATURE:
                    self.signed = True
                if not name.startswith(prefix):
                    continue  # another pusher's family
                kind = kinds[name] = self._kind(name[len(prefix):].decode("utf-8", "replace"))
            what, short = kind
            if what == _SKIP or (only is not None and self.job not in line):
                continue
            close = line.rfind(b"}")
            value = _value(line[close + 1:])
            if value is None or (what == _OUTCOME and value != 1.0):
                continue  # the state set's zeros: only the outcome that is 1 says anything
            raw = line[brace + 1:close]
            own = None
            if what in (_RUNS, _OUTCOME, _INFO):
                labels = _labels(raw)
                own = None if labels is None else labels.pop(_OWN_LABELS[short], None)
                group = None if own is None else self._group(_key(labels or {}))
            elif raw in by_labels:
                group = by_labels[raw]
            else:
                labels = _labels(raw)
                group = by_labels[raw] = None if labels is None else self._group(_key(labels))
            if group is None:
                continue
            if what == _GAUGE:
                if group.gauges is None:
                    group.gauges = {}
                group.gauges[short] = value
            elif what == _PUSHED:
                group.pushed = value
            elif what == _FAILED:
                group.failed = value
            elif what == _INFO:
                group.info = True
            elif what == _OUTCOME:
                group.outcome = own
            elif own is not None:
                if group.runs is None:
                    group.runs = {}
                group.runs[own] = value

    def _group(self, key: Key) -> _Group | None:
        """The group of ``key`` (None: not the one asked for)."""
        if self.only is not None and key != self.only:
            return None
        group = self.groups.get(key)
        if group is None:
            group = self.groups[key] = _Group()
        return group

    def _kind(self, short: str) -> tuple[int, str]:
        """What a family of jobreport's namespace is to this reading."""
        if short == "info":
            return _INFO, short
        if self.keep is not None and short not in self.keep:
            return _SKIP, short
        if short == "runs_total":
            return _RUNS, short
        if short == "last_outcome":
            return _OUTCOME, short
        return (_SKIP if short in _OWN_LABELS else _GAUGE), short

    def held(self, only: Mapping[str, str] | None) -> list[HeldGroup]:
        """The groups read: every group the gateway holds (it keeps their push times), or
        the one asked for when anything of it was read."""
        return [HeldGroup(dict(only) if only is not None else dict(key), g.gauges or _EMPTY,
                          g.runs or _EMPTY, last_outcome=g.outcome, jobreport=g.info,
                          push_time=g.pushed, push_failure_time=g.failed)
                for key, g in self.groups.items()
                if g.pushed is not None or g.failed is not None or only is not None]


def read_groups(chunks: Iterable[bytes], namespace: str, *,
                keep: Collection[str] | None = None,
                only: Mapping[str, str] | None = None) -> list[HeldGroup]:
    """What a Pushgateway's ``/metrics`` answer (its ``chunks``, read as they come) says it
    holds: every group (with ``only``, the group of that grouping alone, job included),
    each with the gauges of jobreport's namespace named in ``keep`` (None: every one;
    ``runs_total`` and ``last_outcome`` are names too), whether it is jobreport's, and the
    gateway's push times. Raises ``ValueError`` when the answer is not a Pushgateway's
    ``/metrics`` in the text format."""
    reading = _Reading(namespace, keep, only)
    reading.read(chunks)
    if not reading.signed:
        raise ValueError("no pushgateway_build_info: not a Pushgateway's /metrics")
    return reading.held(only)


def _lines(chunks: Iterable[bytes]) -> Iterator[bytes]:
    """The lines of a body that arrives in ``chunks`` (a line longer than
    ``_LONGEST_LINE`` is dropped, not held)."""
    rest = b""
    skipping = False  # in the middle of a line too long to hold
    for chunk in chunks:
        lines = (rest + chunk).split(b"\n")
        rest = lines.pop()
        if skipping and lines:
            lines[0], skipping = b"", False
        yield from lines
        if len(rest) > _LONGEST_LINE:
            rest, skipping = b"", True
    if rest and not skipping:
        yield rest


def _value(text: bytes) -> float | None:
    """The value after a sample's labels (a timestamp after it is ignored)."""
    parts = text.split()
    if not parts:
        return None
    try:
        return float(parts[0])
    except ValueError:
        return None


def _labels(raw: bytes) -> dict[str, str] | None:
    """The labels between a sample's braces, unescaped; None when they cannot be read."""
    found: dict[str, str] = {}
    end = 0
    for pair in _PAIR.finditer(raw):
        if pair.start() != end:
            return None
        end = pair.end()
        value = pair.group(2).decode("utf-8", "replace")
        if "\\" in value:
            value = _ESCAPE.sub(lambda m: _UNESCAPE.get(m.group(1), m.group(0)), value)
        found[pair.group(1).decode("ascii")] = value
    if raw[end:].strip(b" ,"):
        return None
    return found


def _key(labels: dict[str, str]) -> Key:
    """A group's key: its labels less an empty ``instance`` (the gateway's mark of a group
    pushed without one), sorted."""
    if labels.get("instance") == "":
        labels = {k: v for k, v in labels.items() if k != "instance"}
    return tuple(sorted(labels.items()))


def parse_version(payload: bytes | str | object) -> str | None:
    """The version in an ``/api/v1/status`` answer (None: it does not say)."""
    data: object = payload
    if isinstance(payload, bytes | str):
        try:
            data = json.loads(payload)
        except ValueError:
            return None
    data = data.get("data") if isinstance(data, dict) else None
    info = data.get("build_information") if isinstance(data, dict) else None
    version = info.get("version") if isinstance(info, dict) else None
    return version if isinstance(version, str) and version else None
