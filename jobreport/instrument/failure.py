"""The error that failed a Python block, as it is kept with the run: the exception's type
and the first line of its message, secrets masked, bounded in length (``error_text``).

It is shown by ``jobreport history`` and never pushed: no label carries free text.
"""

from __future__ import annotations

import builtins
from collections.abc import Iterable

from jobreport.secrets import mask

#: Exception groups (``asyncio.TaskGroup``'s); Python 3.10 has none of its own.
_GROUP: tuple[type[BaseException], ...] = tuple(
    kind for kind in (getattr(builtins, "BaseExceptionGroup", None),) if kind is not None)

__all__ = ["ERROR_MAX_CHARS", "error_text"]

#: The longest error kept, in characters (a cut one ends with "...").
ERROR_MAX_CHARS = 300


def error_text(exc: BaseException, secrets: Iterable[str | None] = ()) -> str:
    """``ValueError: boom``: the type of ``exc`` as a traceback names it (with its module
    unless builtin) and the first non-empty line of its message; for an exception group
    (``asyncio.TaskGroup``), also the first exception it holds. Every secret is masked
    (``secrets`` and those ``jobreport.secrets.remember`` was given) before the text is cut
    to ``ERROR_MAX_CHARS``, so that a cut never leaves part of a secret behind."""
    text = _one(exc)
    inner = exc
    for _ in range(10):  # groups inside groups: the first leaf, a bounded walk
        found = getattr(inner, "exceptions", None) if isinstance(inner, _GROUP) else None
        if not found:
            break
        inner = found[0]
        text += " -- " + _one(inner)
    text = mask(text, secrets)
    if len(text) > ERROR_MAX_CHARS:
        text = text[:ERROR_MAX_CHARS - 3].rstrip() + "..."
    return text


def _one(exc: BaseException) -> str:
    kind = type(exc)
    name = kind.__qualname__
    if kind.__module__ not in ("builtins", "__main__"):
        name = f"{kind.__module__}.{name}"
    try:
        message = str(exc)
    except Exception:  # a broken __str__ must not cost the run its record
        message = "<the message could not be read>"
    line = next((ln.strip() for ln in message.splitlines() if ln.strip()), "")
    return f"{name}: {line}" if line else name
