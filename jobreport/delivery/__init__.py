"""Delivery of a group's state from the store to its sinks: ``deliver_group`` (one group,
one sink: what every run does at its end), ``deliver_state`` (a state as it is, without a
store), ``deliver_each`` (every sink at once) and ``flush`` (every pending group, every
sink); ``warn_undelivered`` and ``notice_no_sink`` say what did not land and why.

A group leaves a sink's pending set only when the sink accepted its newest state. What the
sink's answer means (delivered, retry later, rejected) is the sink's to say
(``jobreport.sinks.base``). Each of these is the entry of a delivery: it turns the
configured budget into one deadline, which everything below it keeps.

The rooms: ``group`` (one group to one sink, the families a sink refuses, every sink at
once), ``pending`` (``flush``: every pending group), ``notices``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from jobreport.delivery.group import deliver_each, deliver_group, deliver_state
from jobreport.delivery.notices import notice_no_sink, warn_undelivered

if TYPE_CHECKING:
    from jobreport.delivery.pending import FlushResult, flush

__all__ = ["FlushResult", "deliver_each", "deliver_group", "deliver_state", "flush",
           "notice_no_sink", "warn_undelivered"]


def __getattr__(name: str) -> Any:
    # flush loads when used: the end of a run, which imports this package, never flushes
    if name in ("FlushResult", "flush"):
        from jobreport.delivery import pending

        return getattr(pending, name)
    raise AttributeError(f"module 'jobreport.delivery' has no attribute {name!r}")
