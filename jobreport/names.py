"""Validation of the names a job reports under: job names, label names, metric names."""

from __future__ import annotations

import re
from collections.abc import Mapping

from jobreport.errors import InvalidNameError

__all__ = ["DEFAULT_NAMESPACE", "check_job", "check_labels", "check_metric_name", "check_namespace"]

#: The metric namespace (prefix) unless ``namespace`` is configured otherwise.
DEFAULT_NAMESPACE = "jobreport"

# compiled on first use (re's cache), not at import: a plain run checks no name
_LABEL_NAME = r"[a-zA-Z_][a-zA-Z0-9_]*"
_METRIC_NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
MAX_VALUE_LENGTH = 1024

#: Label names jobreport uses itself or that the Pushgateway sets.
RESERVED_LABELS = frozenset({"job", "instance", "outcome", "version"})
#: Metric names the Pushgateway adds to every group.
RESERVED_METRICS = frozenset({"push_time_seconds", "push_failure_time_seconds"})


def _check_value(kind: str, value: object) -> str:
    if not isinstance(value, str):
        raise InvalidNameError(kind, repr(value), "must be a string")
    if len(value) > MAX_VALUE_LENGTH:
        raise InvalidNameError(
            kind, value[:40] + "...", f"longer than {MAX_VALUE_LENGTH} characters"
        )
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidNameError(kind, value, "is not valid UTF-8") from None
    return value


def check_job(job: object) -> str:
    """Return ``job`` if it can name a job, else raise ``InvalidNameError``."""
    value = _check_value("job name", job)
    if not value.strip():
        raise InvalidNameError("job name", value, "must not be empty")
    return value


def check_labels(labels: Mapping[str, object] | None) -> dict[str, str]:
    """Validate extra grouping labels; return them as a plain ``dict[str, str]``.

    Label values may hold anything (``/``, spaces, unicode, empty strings): they are
    escaped on the way to the Pushgateway.
    """
    out: dict[str, str] = {}
    for name, value in (labels or {}).items():
        if not isinstance(name, str) or not re.fullmatch(_LABEL_NAME, name):
            raise InvalidNameError(
                "label name", str(name), "use letters, digits and underscores, not first a digit"
            )
        if name.startswith("__"):
            raise InvalidNameError("label name", name, "names starting with __ are reserved")
        if name in RESERVED_LABELS:
            hint = " (set the instance with --instance / JOBREPORT_INSTANCE)" if (
                name == "instance") else ""
            raise InvalidNameError("label name", name, f"is reserved by jobreport{hint}")
        out[name] = _check_value(f"value of label {name}", value)
    return out


def check_namespace(namespace: object) -> str:
    """Return ``namespace`` if it can prefix metric names."""
    if not isinstance(namespace, str) or not re.fullmatch(r"[a-zA-Z_][a-zA-Z0-9_]*", namespace):
        raise InvalidNameError(
            "namespace", str(namespace), "use letters, digits and underscores, not first a digit"
        )
    return namespace


def check_metric_name(name: object, namespace: str) -> str:
    """Return a custom metric's ``name`` if it is valid and not one of jobreport's own."""
    if not isinstance(name, str) or not re.fullmatch(_METRIC_NAME, name):
        raise InvalidNameError(
            "metric name", str(name), "use letters, digits, _ and :, not first a digit"
        )
    if name.startswith("__"):
        raise InvalidNameError("metric name", name, "names starting with __ are reserved")
    if name.startswith(namespace + "_") or name in RESERVED_METRICS:
        raise InvalidNameError(
            "metric name", name, f"is reserved (the {namespace}_ namespace is jobreport's own)"
        )
    return name
