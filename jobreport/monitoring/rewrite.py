"""Text rewrites of the shipped monitoring files for an export: another metric namespace,
absolute runbook links, and the pieces of a config meant to be pasted into an existing one.

The rewrites work on the text, not on parsed YAML, so that the comments that explain each
rule survive the export. They change only what jobreport wrote itself (metric names, the
relative runbook links); the one value a user types, the runbook URL, goes in as a whole
YAML scalar quoted by PyYAML (``quoting.yaml_scalar``), and as template text that expands to
itself where Prometheus expands it.
"""

from __future__ import annotations

import re
import urllib.parse

from jobreport.monitoring.quoting import template_text, unsafe_character, yaml_scalar

__all__ = [
    "RUNBOOK_PATH", "absolute_runbook", "check_runbook_url", "rename_namespace",
    "replace_section", "top_level_sections",
]

#: How the shipped files link to the runbook: relative to the jobreport repository.
RUNBOOK_PATH = "docs/runbook.md"

# A metric name of the jobreport namespace (jobreport_last_...), or a recorded series:
# jobreport:seconds_... and job:jobreport_failure_ratio:1d. Not jobreport-alerts (a group),
# docs/runbook.md#jobreportjob... (an anchor) or "jobreport: ..." (prose).
_METRIC_PREFIX = re.compile(r"(?<![A-Za-z0-9_])jobreport(?=_[A-Za-z]|:[A-Za-z])")
# a runbook_url: line whose whole value is a relative link (quoted or plain)
_RUNBOOK_LINE = re.compile(r'^(?P<key>[ \t]*runbook_url:[ \t]*)(?P<q>"?)'
                           + re.escape(RUNBOOK_PATH)
                           + r"#(?P<anchor>[A-Za-z0-9_-]+)(?P=q)[ \t]*$", flags=re.M)
_TOP_KEY = re.compile(r"([A-Za-z_][A-Za-z0-9_]*):")


def rename_namespace(text: str, namespace: str) -> str:
    """``text`` with every metric and recorded series of the ``jobreport`` namespace moved
    to ``namespace`` (what ``JOBREPORT_NAMESPACE`` makes the jobs push)."""
    if namespace == "jobreport":
        return text
    return _METRIC_PREFIX.sub(namespace, text)


def check_runbook_url(url: str) -> str:
    """``url`` without a fragment, if it is absolute (``https://wiki.example.org/runbook``)
    and holds no control character (a newline, a tab: a URL cannot, and Python's URL parser
    would drop it in silence); else ValueError saying which."""
    bad = unsafe_character(url)
    if bad:
        raise ValueError(f"{url!r} holds {bad}, which no URL can hold")
    parts = urllib.parse.urlsplit(url)
    if not parts.scheme or not (parts.netloc or parts.scheme == "file"):
        raise ValueError(f"{url!r} is not an absolute URL (e.g. https://wiki.example.org/"
                         "jobreport-runbook)")
    return urllib.parse.urlunsplit(parts._replace(fragment=""))


def absolute_runbook(text: str, url: str, *, template: bool = True) -> str:
    """``text`` (YAML) with each ``runbook_url: docs/runbook.md#anchor`` pointing at
    ``url#anchor``. In a rule file (``template``) the value is template text that
    Prometheus expands to the URL; in a promtool test file it is the URL itself, what the
    alert's annotation holds once expanded."""

    def link(m: re.Match[str]) -> str:
        value = f"{url}#{m.group('anchor')}"
        return m.group("key") + yaml_scalar(template_text(value) if template else value)

    return _RUNBOOK_LINE.sub(link, text)


def top_level_sections(text: str, keys: tuple[str, ...]) -> str:
    """The top-level YAML sections ``keys`` of ``text`` (each from its ``key:`` line to the
    next top-level key), in the order of ``text``, with their comments."""
    lines = text.splitlines(keepends=True)
    out: list[str] = []
    keep = False
    for line in lines:
        top = _TOP_KEY.match(line)
        if top:
            keep = top.group(1) in keys
            if keep and out and out[-1].strip():
                out.append("\n")
        if keep:
            out.append(line)
    while out and not out[-1].strip():
        out.pop()
    return "".join(out)


def replace_section(text: str, key: str, new: str) -> str:
    """``text`` with its top-level YAML section ``key`` (from its ``key:`` line to the next
    top-level key, comments included) replaced by ``new``."""
    out: list[str] = []
    inside = found = False
    for line in text.splitlines(keepends=True):
        top = _TOP_KEY.match(line)
        if top:
            inside = top.group(1) == key
            if inside:
                found = True
                out.append(new)
                continue
        if not inside:
            out.append(line)
    if not found:
        raise ValueError(f"no top-level section {key}: in the text")
    return "".join(out)
