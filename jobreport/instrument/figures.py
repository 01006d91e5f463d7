"""What a block reports beside its outcome: numbers checked as they come in, the families
of the prometheus_client collectors it registered, and its figures handed to the
``jobreport run`` that wraps the process for the same job."""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from jobreport.errors import InvalidNameError
from jobreport.names import DEFAULT_NAMESPACE, check_metric_name
from jobreport.result import CustomFamily

if TYPE_CHECKING:
    from prometheus_client.registry import Collector

__all__ = ["collected_families", "hand_to_wrapper", "number", "wrapper_metrics_file"]

log = logging.getLogger("jobreport")


def number(name: str, value: Any) -> float:
    """``value`` of a figure (``size``, ``items``: held to their range, 0 to 2^63) or of a
    gauge (any 64-bit float, NaN and the infinities included); ``InvalidNameError`` says
    why not (a bool, a non-number, a number out of its range)."""
    from jobreport.numbers import figure, shown

    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidNameError("value of", name, f"{value!r} is not a number")
    try:
        result = figure(name, value) if name in ("size", "items") else float(value)
        if name == "items increment" and not math.isfinite(result):
            raise ValueError(f"{shown(value)} is not a finite number")
        return result
    except OverflowError:
        raise InvalidNameError("value of", name, f"{shown(value)} is out of range: a gauge "
                               "is a 64-bit float, at most 1.8e308") from None
    except ValueError as e:
        raise InvalidNameError("value of", name, str(e)) from None


def collected_families(collectors: Iterable[Collector], namespace: str) -> list[CustomFamily]:
    """The families the ``collectors`` give now; a collector that fails costs its own
    families, and a family in jobreport's namespace is left out (each with a warning)."""
    out = []
    for collector in collectors:
        try:
            metrics = list(collector.collect())
        except Exception as e:  # a broken collector costs its own families, not the run
            log.warning("jobreport: a collector given to register() failed (%s: %s); "
                        "its metrics are left out", type(e).__name__, e)
            continue
        for metric in metrics:
            try:
                check_metric_name(metric.name, namespace)
            except InvalidNameError as e:
                log.warning("jobreport: not pushing %s", e)
                continue
            out.append(CustomFamily(
                name=metric.name, help=metric.documentation, type=metric.type,
                samples=tuple(
                    (s.name, tuple(sorted(s.labels.items())), float(s.value))
                    for s in metric.samples
                ),
            ))
    return out


def wrapper_metrics_file(job: str) -> str | None:
    """The metrics file of a ``jobreport run --job <job>`` that started this process, if any.

    A script that reports itself with ``job_metrics`` and is also wrapped by ``jobreport
    run`` for the same job (for ``--timeout``, ``--lock``, resources) must not record two
    runs: its block then adds its figures to the wrapper's run instead.
    """
    if os.environ.get("JOBREPORT_JOB") != job:
        return None
    return os.environ.get("JOBREPORT_METRICS_FILE") or None


def hand_to_wrapper(path: str, families: list[CustomFamily], *, size: float | None,
                    items: float | None) -> None:
    """Append a block's figures to the wrapping ``jobreport run``'s metrics file."""
    from jobreport.exposition import families_text

    if size is not None:
        families.append(CustomFamily.gauge(f"{DEFAULT_NAMESPACE}_last_size_bytes", size))
    if items is not None:
        families.append(CustomFamily.gauge(f"{DEFAULT_NAMESPACE}_last_items", items))
    try:
        with open(path, "ab") as f:
            f.write(families_text(families))
    except OSError as e:
        log.warning("jobreport: cannot add figures to %s: %s", path, e.strerror)
