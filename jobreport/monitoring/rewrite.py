"""Text rewrites of the shipped monitoring files for an export: another metric namespace,
absolute runbook links, and the pieces of a config meant to be pasted into an existing one.

The rewrites work on the text, not on parsed YAML, so that the comments that explain each
rule survive the export (and no YAML library is needed at run time).
"""

from __future__ import annotations

import re
import urllib.parse

__all__ = [
    "RUNBOOK_PATH", "absolute_runbook", "check_runbook_url", "rename_namespace",
    "top_level_sections",
]

#: How the shipped files link to the runbook: relative to the jobreport repository.
RUNBOOK_PATH = "docs/runbook.md"

# A metric name of the jobreport namespace (jobreport_last_...), or a recorded series:
# jobreport:seconds_... and job:jobreport_failure_ratio:1d. Not jobreport-alerts (a group),
# docs/runbook.md#jobreportjob... (an anchor) or "jobreport: ..." (prose).
_METRIC_PREFIX = re.compile(r"(?<![A-Za-z0-9_])jobreport(?=_[A-Za-z]|:[A-Za-z])")
_RUNBOOK_LINK = re.compile(re.escape(RUNBOOK_PATH) + r"(?=#)")


def rename_namespace(text: str, namespace: str) -> str:
    """``text`` with every metric and recorded series of the ``jobreport`` namespace moved
    to ``namespace`` (what ``JOBREPORT_NAMESPACE`` makes the jobs push)."""
    if namespace == "jobreport":
        return text
    return _METRIC_PREFIX.sub(namespace, text)


def check_runbook_url(url: str) -> str:
    """``url`` without a fragment, if it is absolute (``https://wiki.example.org/runbook``)."""
    parts = urllib.parse.urlsplit(url)
    if not parts.scheme or not (parts.netloc or parts.scheme == "file"):
        raise ValueError(f"{url!r} is not an absolute URL (e.g. https://wiki.example.org/"
                         "jobreport-runbook)")
    return urllib.parse.urlunsplit(parts._replace(fragment=""))


def absolute_runbook(text: str, url: str) -> str:
    """``text`` with each ``docs/runbook.md#anchor`` link pointing at ``url#anchor``."""
    return _RUNBOOK_LINK.sub(lambda _m: url, text)


def top_level_sections(text: str, keys: tuple[str, ...]) -> str:
    """The top-level YAML sections ``keys`` of ``text`` (each from its ``key:`` line to the
    next top-level key), in the order of ``text``, with their comments."""
    lines = text.splitlines(keepends=True)
    out: list[str] = []
    keep = False
    for line in lines:
        top = re.match(r"([A-Za-z_][A-Za-z0-9_]*):", line)
        if top:
            keep = top.group(1) in keys
            if keep and out and out[-1].strip():
                out.append("\n")
        if keep:
            out.append(line)
    while out and not out[-1].strip():
        out.pop()
    return "".join(out)
