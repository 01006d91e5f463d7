"""What a delivery that did not land tells the user: one warning line each."""

from __future__ import annotations

from jobreport.logger import log, notice_once
from jobreport.sinks.base import Delivered, DeliveryResult, Rejected

__all__ = ["notice_no_sink", "warn_undelivered"]


def warn_undelivered(what: str, job: str, sink: str, result: DeliveryResult, *,
                     stored: bool) -> None:
    """One warning line for a delivery (``what``: start, heartbeat, end) that did not
    land, saying what happens next."""
    assert not isinstance(result, Delivered)
    if not stored:
        kept = "the run is not kept: the store is unavailable"
    elif isinstance(result, Rejected):
        kept = ("the group stays pending with the error recorded; once the cause is fixed, "
                "the next run or `jobreport flush` delivers it")
    else:
        kept = "the run is kept in the store for the next run or `jobreport flush`"
    log.warning("jobreport: %s push of job %s failed: %s; %s", what, job, result.reason, kept)


def notice_no_sink(stored: bool) -> None:
    """Once per process: no sink is configured, and where the runs are kept."""
    if not notice_once(f"no sink, stored={stored}"):
        return
    if stored:
        log.warning("jobreport: no Pushgateway configured (set JOBREPORT_GATEWAY); runs are "
                    "kept in the store until `jobreport flush`")
    else:
        log.warning("jobreport: no Pushgateway configured and the store is unavailable: "
                    "this run is not recorded anywhere")
