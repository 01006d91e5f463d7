"""One run, reported once: ``job_metrics`` alone, or the run of ``jobreport run`` around us.

The example scripts report themselves through ``job_metrics``. The cron and systemd
examples also wrap them in ``jobreport run`` (for ``--timeout``, ``--lock``, CPU and memory,
the output tail). Two reporters for one execution would record two runs and count every
run twice, so a script started by ``jobreport run`` for its own job (``$JOBREPORT_JOB``)
hands its figures to the wrapper's run through ``$JOBREPORT_METRICS_FILE`` instead, and the
wrapper's settings (``--expect-every``...) apply. Run directly, it is plain ``job_metrics``.

The metrics file takes only names outside the ``jobreport_`` namespace, so the size and the
items of a wrapped run arrive as ``<prefix>_size_bytes`` and ``<prefix>_items``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from types import TracebackType
from typing import Protocol

from jobreport import job_metrics


class Figures(Protocol):
    """What the scripts report: the part of ``JobMetrics`` they use."""

    def set_size(self, size_bytes: float) -> None: ...
    def add_items(self, n: float = 1) -> None: ...
    def gauge(self, name: str, value: float, help: str = "") -> None: ...


class _Reporting(Protocol):
    def __enter__(self) -> Figures: ...
    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> bool | None: ...


class WrapperRun:
    """Figures for the run of the surrounding ``jobreport run``, written when the block
    ends, whatever its outcome (a failed backup's table count is still worth seeing)."""

    def __init__(self, path: str, prefix: str) -> None:
        self.path = path
        self.prefix = prefix
        self.size: float | None = None
        self.items: float | None = None
        self.gauges: dict[str, tuple[float, str]] = {}

    def set_size(self, size_bytes: float) -> None:
        self.size = float(size_bytes)

    def add_items(self, n: float = 1) -> None:
        self.items = (self.items or 0.0) + n

    def gauge(self, name: str, value: float, help: str = "") -> None:
        self.gauges[name] = (float(value), help)

    def __enter__(self) -> WrapperRun:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        figures = dict(self.gauges)
        if self.size is not None:
            figures[f"{self.prefix}_size_bytes"] = (self.size, "Bytes the run produced")
        if self.items is not None:
            figures[f"{self.prefix}_items"] = (self.items, "Items the run processed")
        lines = []
        for name, (value, help_text) in figures.items():
            if help_text:
                lines.append(f"# HELP {name} {help_text}")
            lines.append(f"{name} {value!r}")
        with open(self.path, "a", encoding="utf-8") as f:
            f.write("\n".join(lines) + "\n")


def reporting(job: str, prefix: str, *, expect_every: str | None = None,
              max_runtime: str | None = None, grace: str | None = None,
              labels: Mapping[str, str] | None = None) -> _Reporting:
    """``job_metrics(job, ...)``, or the wrapper's run when ``jobreport run --job <job>``
    started this process."""
    metrics_file = os.environ.get("JOBREPORT_METRICS_FILE")
    if metrics_file and os.environ.get("JOBREPORT_JOB") == job:
        return WrapperRun(metrics_file, prefix)
    return job_metrics(job, expect_every=expect_every, max_runtime=max_runtime, grace=grace,
                       labels=labels)
