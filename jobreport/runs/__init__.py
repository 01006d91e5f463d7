"""A run's life, the same both ways in (``jobreport run`` and ``job_metrics``): open it in
the store, push its start, its heartbeats, close it with its ``RunResult`` and deliver its
group; never change or block the job beyond a small budget.

``recorder`` holds the ``Recorder``, ``run`` the ``Run`` it and its threads share;
``shared`` what one process shares between its runs (``SHARED``); ``background`` the ends
of runs handed off an event loop's thread (``ENDS``).
"""

from __future__ import annotations

from jobreport.runs.recorder import Recorder
from jobreport.runs.run import Run
from jobreport.runs.shared import SHARED

__all__ = ["SHARED", "Recorder", "Run"]
