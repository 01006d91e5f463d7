"""Values users type, made safe for the three languages of an exported file: YAML, PromQL
string literals and Go templates (Prometheus expands every alert label and annotation as a
template).

A job name, a label value or a runbook URL is always data: it is quoted for YAML by
PyYAML's safe dumper, written into PromQL as an escaped string literal, and reaches a
template as text that expands to itself (``{{`` becomes ``{{ "{{" }}``), never as template
code.
"""

from __future__ import annotations

import unicodedata
from typing import Any

import yaml

__all__ = ["Literal", "dump_yaml", "promql_string", "template_text", "unsafe_character",
           "yaml_scalar"]


class Literal(str):
    """A string ``dump_yaml`` writes as a ``|`` block when it spans lines (multi-line PromQL
    stays readable)."""


class _Dumper(yaml.SafeDumper):
    """The safe dumper plus ``Literal`` (a subclass: yaml.SafeDumper itself stays as is)."""


def _escaped(value: str) -> bool:
    """Whether ``value`` holds a character a plain or single-quoted scalar would carry raw
    and a YAML reader may not read back as it is: controls (NEL, U+0085, among them, which
    Go's YAML folds into a space), line and paragraph separators, format characters."""
    return any(unicodedata.category(ch) in ("Cc", "Cf", "Zl", "Zp") for ch in value)


def _string(dumper: yaml.SafeDumper, value: str) -> yaml.Node:
    # double quotes, where every such character is written as an escape (\N, \L, \x..)
    style = '"' if _escaped(value) else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


def _literal(dumper: yaml.SafeDumper, value: Literal) -> yaml.Node:
    if _escaped(value.replace("\n", "")):
        return _string(dumper, str(value))
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", str(value), style=style)


_Dumper.add_representer(str, _string)
_Dumper.add_representer(Literal, _literal)


def dump_yaml(data: Any) -> str:
    """``data`` as YAML, by the safe dumper: every string quoted and escaped as it needs,
    keys in their order."""
    return yaml.dump(data, Dumper=_Dumper, sort_keys=False, width=100, allow_unicode=True)


def yaml_scalar(value: str) -> str:
    """``value`` as a one-line double-quoted YAML scalar, to put after ``key: `` in a YAML
    text (PyYAML escapes what YAML would read otherwise: quotes, backslashes, control
    characters, line separators)."""
    text = yaml.dump(value, Dumper=yaml.SafeDumper, default_style='"', allow_unicode=True,
                     width=2**31 - 1).rstrip("\n")
    if "\n" in text or yaml.safe_load(text) != value:  # never expected: refuse, not corrupt
        raise ValueError(f"cannot quote {value!r} for YAML")
    return text


def promql_string(value: str) -> str:
    """``value`` as a PromQL double-quoted string literal. Letters, digits, punctuation and
    symbols of any script stay as they are; quotes and backslashes are escaped, and every
    other character (spaces other than the ASCII one, controls, line separators) is written
    as a ``\\u``/``\\U`` escape, so the literal fits on one line of any YAML scalar."""
    out = ['"']
    for ch in value:
        code = ord(ch)
        if ch in '"\\':
            out.append("\\" + ch)
        elif ch == " " or (code > 0x20 and code != 0x7F and
                           unicodedata.category(ch)[0] in "LMNPS"):
            out.append(ch)
        elif 0xD800 <= code <= 0xDFFF:
            raise ValueError(f"{value!r} is not valid UTF-8")
        elif code <= 0xFFFF:
            out.append(f"\\u{code:04x}")
        else:
            out.append(f"\\U{code:08x}")
    out.append('"')
    return "".join(out)


def template_text(value: str) -> str:
    """Go template text that expands to ``value`` itself: each ``{{`` is written as the
    action ``{{ "{{" }}`` (only ``{{`` opens an action; ``}}`` outside one is plain
    text)."""
    return value.replace("{{", '{{ "{{" }}')


def unsafe_character(value: str) -> str | None:
    """The name of the first control character in ``value`` (a newline, a tab, ...), or
    None. A URL cannot hold one: Python's URL parser drops newlines and tabs in silence."""
    for ch in value:
        if unicodedata.category(ch) == "Cc":
            names = {"\n": "a newline", "\r": "a carriage return", "\t": "a tab"}
            return names.get(ch, f"the control character U+{ord(ch):04X}")
    return None
