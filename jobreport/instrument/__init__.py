"""``job_metrics``: report a block of Python code, or each call of a function, as one run of
a job -- in plain code, in async code, and over a generator's iteration.

``handle`` holds ``JobMetrics`` (the context manager, the decorator and the handle inside
the block) and ``current_job``; ``decorate`` the decorator for each kind of function;
``failure`` the error text kept with a failed run.
"""

from __future__ import annotations

from jobreport.instrument.handle import JobMetrics, current_job, job_metrics

__all__ = ["JobMetrics", "current_job", "job_metrics"]
