"""A Pushgateway's ``/metrics`` text made from groups written as its ``/api/v1/metrics``
data (no tests here), for the tests that judge what a gateway holds without one: what the
text says goes through jobreport's one reading of a gateway (``read_groups``), as a real
gateway's answer does.

A group is ``{"labels": {...}, "<family>": {"metrics": [{"labels": {...}, "value":
"1"}]}, ...}``. As the gateway does, each sample carries the group's labels (and
``instance=""`` when the group has none), and each group gets ``push_time_seconds`` and
``push_failure_time_seconds`` when it says none; a group holding any of jobreport's
families gets ``jobreport_info`` (every push of jobreport's carries it) unless
``info=False``.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from jobreport.sinks.pushgateway_api import read_groups
from jobreport.held import HeldGroup

__all__ = ["FakeGateway", "family", "gateway_text", "held_of", "text_of_group"]

SIGNATURE = 'pushgateway_build_info{version="1.5.1"} 1\n'


def family(value: float, **labels: str) -> dict[str, Any]:
    """A family of one sample, as ``/api/v1/metrics`` writes it."""
    return {"type": "GAUGE", "metrics": [{"labels": labels, "value": str(value)}]}


def _escaped(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _value(value: object) -> str:
    number = float(str(value))
    if math.isnan(number):
        return "NaN"
    if number in (float("inf"), float("-inf")):
        return "+Inf" if number > 0 else "-Inf"
    return repr(number)


def text_of_group(group: Mapping[str, Any], *, info: bool = True) -> str:
    """The lines of one group, as the gateway writes them."""
    labels = dict(group["labels"])
    labels.setdefault("instance", "")
    families = {k: v for k, v in group.items() if k != "labels"}
    if info and any(k.startswith("jobreport_") for k in families):
        families.setdefault("jobreport_info", family(1, version="0.0.0"))
    families.setdefault("push_time_seconds", family(1.0))
    families.setdefault("push_failure_time_seconds", family(0.0))
    lines = []
    for name, found in families.items():
        for metric in found["metrics"]:
            pairs = {**labels, **metric.get("labels", {})}
            text = ",".join(f'{k}="{_escaped(v)}"' for k, v in sorted(pairs.items()))
            lines.append(f"{name}{{{text}}} {_value(metric['value'])}\n")
    return "".join(lines)


def gateway_text(groups: Sequence[Mapping[str, Any]], *, info: bool = True) -> bytes:
    """The whole ``/metrics`` answer of a gateway holding ``groups``."""
    body = "# HELP go_goroutines Number of goroutines.\ngo_goroutines 8\n"
    body += "".join(text_of_group(g, info=info) for g in groups)
    return (body + SIGNATURE).encode()


def held_of(chunks: Iterable[bytes], grouping: Mapping[str, str],
            namespace: str = "jobreport") -> HeldGroup | None:
    """What a new store reads back of ``grouping`` from a gateway whose ``/metrics`` answer
    is ``chunks`` (the gateway's own metric added at its end), as ``PushgatewaySink.held``
    reads it."""
    found = read_groups(itertools.chain(chunks, [b"\n" + SIGNATURE.encode()]), namespace,
                        only=grouping)
    return next((g for g in found if not g.empty), None)


class FakeGateway:
    """A sink that lists the groups of a Pushgateway holding ``data`` (groups as
    ``/api/v1/metrics`` writes them), read from the ``/metrics`` text it would answer."""

    name = "fake"

    def __init__(self, data: list[dict[str, Any]], *, info: bool = True) -> None:
        self.data = data
        self.info = info

    def groups(self, *, deadline: float,
               keep: Any = None) -> list[HeldGroup]:
        return read_groups([gateway_text(self.data, info=self.info)], "jobreport",
                           keep=keep)
