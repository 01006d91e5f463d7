"""What the Pushgateway's own API says, parsed once: ``/api/v1/metrics`` into
``GatewayGroup`` records (each group's labels and samples), ``/api/v1/status`` into the
gateway's version, and what one group holds that a new store adopts (``read_held``, from
the gateway's ``/metrics`` text as it streams in).

A gateway is read by ``status``, ``prune``, ``delete``, ``check`` and a new store, and can
hold anything another pusher put there, so the reading is tolerant of odd samples (a family
that is not a gauge, a value that is not a number: left out). An answer that is not the
Pushgateway's at all (a proxy's page, another server, ``{"data": [1, "x", null]}``) is
nonsense and raises ``ValueError``: it is never read as "no groups".

Cheap to import: standard library only.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from jobreport.state import HeldGroup

__all__ = ["GatewayGroup", "Sample", "parse_groups", "parse_version", "read_held"]


@dataclass(frozen=True)
class Sample:
    """One sample of a family: its own labels and its value (NaN and ±Inf included)."""

    labels: Mapping[str, str]
    value: float


@dataclass(frozen=True)
class GatewayGroup:
    """One group the Pushgateway holds: its grouping labels (``job`` included) and, per
    family name, the samples that have a plain value."""

    labels: Mapping[str, str]
    families: Mapping[str, tuple[Sample, ...]] = field(default_factory=dict)

    @property
    def job(self) -> str:
        return self.labels.get("job", "")

    def samples(self, name: str) -> tuple[Sample, ...]:
        """The samples of family ``name`` (none when the group does not hold it)."""
        return self.families.get(name, ())

    def first(self, name: str) -> float | None:
        """The value of the first sample of family ``name``, if any."""
        found = self.families.get(name, ())
        return found[0].value if found else None

    def is_grouping(self, grouping: Mapping[str, str]) -> bool:
        """Whether this is the group of ``grouping`` (job included)."""
        return dict(self.labels) == dict(grouping)


def _nonsense(what: str) -> ValueError:
    return ValueError(f"{what}: not the Pushgateway's answer")


def _data(payload: bytes | str | object) -> object:
    if isinstance(payload, bytes | str):
        try:
            payload = json.loads(payload)
        except ValueError:
            raise _nonsense("not JSON") from None
    if not isinstance(payload, dict) or "data" not in payload:
        raise _nonsense("no data")
    return payload["data"]


def parse_groups(payload: bytes | str | object,
                 only: Mapping[str, str] | None = None) -> list[GatewayGroup]:
    """The groups of an ``/api/v1/metrics`` answer (its body, or the JSON already read),
    or with ``only`` just the group of that grouping (every group's labels are still
    checked; only that one's samples are read); raises ``ValueError`` when it is not the
    Pushgateway's answer."""
    data = _data(payload)
    if not isinstance(data, list):
        raise _nonsense("data is not a list of groups")
    wanted = None if only is None else dict(only)
    groups = []
    for item in data:
        labels = item.get("labels") if isinstance(item, dict) else None
        if not isinstance(labels, dict) or not all(
                isinstance(k, str) and isinstance(v, str) for k, v in labels.items()):
            raise _nonsense("a group without its labels")
        if wanted is not None and labels != wanted:
            continue
        families = {}
        for name, family in item.items():
            if name != "labels" and isinstance(family, dict):
                found = _samples(family.get("metrics"))
                if found:
                    families[str(name)] = found
        groups.append(GatewayGroup(dict(labels), families))
    return groups


def _samples(metrics: object) -> tuple[Sample, ...]:
    out = []
    for metric in metrics if isinstance(metrics, list) else []:
        if not isinstance(metric, dict) or "value" not in metric:
            continue  # a histogram's or summary's buckets: nothing jobreport reads
        labels = metric.get("labels") or {}
        try:
            value = float(metric["value"])
        except (TypeError, ValueError):
            continue
        if isinstance(labels, dict):
            out.append(Sample({str(k): str(v) for k, v in labels.items()}, value))
    return tuple(out)


def parse_version(payload: bytes | str | object) -> str | None:
    """The version in an ``/api/v1/status`` answer (None: it does not say)."""
    try:
        data = _data(payload)
    except ValueError:
        return None
    info = data.get("build_information") if isinstance(data, dict) else None
    version = info.get("version") if isinstance(info, dict) else None
    return version if isinstance(version, str) and version else None


#: jobreport's series that carry labels of their own beside the grouping labels.
_OWN_LABELS = {"runs_total": ("outcome",), "last_outcome": ("outcome",),
               "info": ("version",)}
#: A line longer than this is not one of jobreport's samples: skipped, never buffered whole.
_LONGEST_LINE = 1 << 20


def read_held(chunks: Iterable[bytes], grouping: Mapping[str, str],
              namespace: str) -> HeldGroup | None:
    """What the Pushgateway holds for the group ``grouping`` (job included), from its
    ``/metrics`` text as it streams in (``chunks``), or None when it holds nothing of
    jobreport's there. Only that group's samples are kept: the gateway's answer grows with
    every group it holds (some 3 KB each), and the Pushgateway has no reading of one group.

    A sample is the group's when its labels, less the labels of jobreport's own that the
    series carries (``outcome``, ``version``), are exactly the grouping labels; the gateway
    adds ``instance=""`` to a group pushed without one. Raises ``ValueError`` when the
    answer is not the text format (an HTML page, JSON)."""
    expected = {str(k): str(v) for k, v in grouping.items()}
    expected.setdefault("instance", "")
    prefix = f"{namespace}_".encode()
    # the cheap test of every line: jobreport's namespace, and the job's label as the text
    # format writes it (each sample of the group carries it)
    job = b'job="' + _escaped(expected.get("job", "")).encode("utf-8") + b'"'
    gauges: dict[str, float] = {}
    runs: dict[str, float] = {}
    checked = False
    for line in _lines(chunks):
        if not checked and line.strip():
            if not (line.startswith(b"#") or line[:1].isalpha() or line[:1] in b"_:"):
                raise ValueError("not the Prometheus text format")
            checked = True
        if not line.startswith(prefix) or job not in line:
            continue
        sample = _sample(line.decode("utf-8", "replace"))
        if sample is None:
            continue
        name, labels, value = sample
        short = name[len(prefix):]
        own = _OWN_LABELS.get(short, ())
        if {k: v for k, v in labels.items() if k not in own} != expected:
            continue
        if short == "runs_total" and "outcome" in labels:
            runs[labels["outcome"]] = value
        elif not own:
            gauges[short] = value
    held = HeldGroup(dict(grouping), gauges, runs)
    return None if held.empty else held


def _lines(chunks: Iterable[bytes]) -> Iterable[bytes]:
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


def _escaped(value: str) -> str:
    """A label value as the text format writes it."""
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


_UNESCAPE = {"\\": "\\", "n": "\n", '"': '"'}


def _sample(line: str) -> tuple[str, dict[str, str], float] | None:
    """(name, labels, value) of a sample line of the text format, or None when it is not
    one (a timestamp after the value is ignored)."""
    brace = line.find("{")
    space = line.find(" ")
    labels: dict[str, str] = {}
    if 0 <= brace < (space if space >= 0 else len(line)):
        name, i = line[:brace], brace + 1
        while True:
            while i < len(line) and line[i] in " ,":
                i += 1
            if i >= len(line):
                return None
            if line[i] == "}":
                i += 1
                break
            eq = line.find("=", i)
            if eq < 0 or eq + 1 >= len(line) or line[eq + 1] != '"':
                return None
            key, i = line[i:eq].strip(), eq + 2
            value: list[str] = []
            while i < len(line) and line[i] != '"':
                if line[i] == "\\" and i + 1 < len(line):
                    value.append(_UNESCAPE.get(line[i + 1], "\\" + line[i + 1]))
                    i += 2
                else:
                    value.append(line[i])
                    i += 1
            if i >= len(line):
                return None
            labels[key] = "".join(value)
            i += 1
        rest = line[i:].split()
    else:
        parts = line.split()
        if len(parts) < 2:
            return None
        name, rest = parts[0], parts[1:]
    if not rest:
        return None
    try:
        return name, labels, float(rest[0])
    except ValueError:
        return None
