"""jobreport: make batch jobs report to Prometheus through a Pushgateway.

``with job_metrics("backup", expect_every="24h") as job: ...`` in Python, or
``jobreport run --job backup -- CMD`` for anything else.
"""

from __future__ import annotations

from jobreport._version import __version__
from jobreport.errors import (
    ConfigError,
    DeliveryError,
    GroupNotFoundError,
    InvalidNameError,
    JobReportError,
    NotConfiguredError,
    StoreError,
)

# not `from typing import TYPE_CHECKING`: typing costs a few ms of every `jobreport run`
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from jobreport.config import Config, load_config
    from jobreport.delivery import FlushResult, flush
    from jobreport.instrument import JobMetrics, current_job, job_metrics

__all__ = [
    "Config",
    "ConfigError",
    "DeliveryError",
    "FlushResult",
    "GroupNotFoundError",
    "InvalidNameError",
    "JobMetrics",
    "JobReportError",
    "NotConfiguredError",
    "StoreError",
    "__version__",
    "current_job",
    "flush",
    "job_metrics",
    "load_config",
]

_LAZY = {
    "Config": "jobreport.config",
    "load_config": "jobreport.config",
    "JobMetrics": "jobreport.instrument",
    "job_metrics": "jobreport.instrument",
    "current_job": "jobreport.instrument",
    "FlushResult": "jobreport.delivery",
    "flush": "jobreport.delivery",
}


def __getattr__(name: str) -> Any:
    if name == "PushError":  # the name DeliveryError had before there were other sinks
        import warnings

        warnings.warn("jobreport.PushError is deprecated: use jobreport.DeliveryError",
                      DeprecationWarning, stacklevel=2)
        return DeliveryError
    # keep `import jobreport` cheap: the store and HTTP stack load only when used
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'jobreport' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)
