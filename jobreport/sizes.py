"""Sizes in bytes (``10MB``, ``1GiB``, ``1e6``) and shares (``50%``, ``0.5``), as a job's
output thresholds are written.

Units: ``B``; ``kB``/``KB``, ``MB``, ``GB``, ``TB``, ``PB``, ``EB`` are powers of 1000 (as
``df -H``, disk vendors and the SI write them); ``KiB``, ``MiB``, ``GiB``, ``TiB``, ``PiB``,
``EiB`` are powers of 1024 (as ``ls -lh`` and ``du -h`` show them). Letters are not case
sensitive. A unit without its ``B`` (``10M``) is refused: it is not clear which of the two
it means. Standard library only: on the path of ``jobreport run`` before its command starts.
"""

from __future__ import annotations

import math
import re

__all__ = ["format_ratio", "format_size", "share", "size_bytes"]

_DECIMAL = {"": 1, "k": 1000, "m": 1000**2, "g": 1000**3, "t": 1000**4, "p": 1000**5,
            "e": 1000**6}
# compiled on first use (re's cache), not at import: most runs parse no size
_SIZE = r"(?i)([+-]?(?:\d+(?:\.\d*)?|\.\d+))(?:[eE]([+-]?\d+))?\s*([kmgtpe]?)(i?)(b?)"
_HINT = "write bytes or a unit, e.g. 500000, 10MB (10^6 bytes) or 1GiB (2^30 bytes)"


def size_bytes(value: object) -> float:
    """``value`` in bytes: a number, or text such as ``10MB``, ``1.5 GiB``, ``1e6``;
    ``ValueError`` saying how to write it otherwise (not held to any range here)."""
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise ValueError(f"{value!r} is not a size ({_HINT})")
    if not isinstance(value, str):
        return float(value)
    match = re.fullmatch(_SIZE, value.strip())
    if match is None:
        raise ValueError(f"{value!r} is not a size ({_HINT})")
    number, exponent, prefix, binary, byte = match.groups()
    text = value.strip()
    if binary and prefix and not byte:
        raise ValueError(f"{value!r} is not a size: write {text}B")
    if prefix and not byte:
        raise ValueError(f"{value!r} is not a size: write {text}B (powers of 1000) or "
                         f"{text}iB (powers of 1024)")
    if binary and not prefix:
        raise ValueError(f"{value!r} is not a size ({_HINT})")
    base = 1024 ** "kmgtpe".index(prefix.lower()) * 1024 if binary else _DECIMAL[
        prefix.lower()]
    # (through float's own parsing: 1e400 is infinite, which no range holds, not an error)
    return float(f"{number}e{exponent or 0}") * base


def format_size(size: float) -> str:
    """``size`` bytes as the ranges and messages write it: ``1B``, ``10MB``, ``1.5GB``."""
    for unit, factor in (("EB", 1000**6), ("PB", 1000**5), ("TB", 1000**4),
                         ("GB", 1000**3), ("MB", 1000**2), ("kB", 1000)):
        if size >= factor:
            return f"{size / factor:.4g}{unit}"
    return f"{size:.4g}B"


def share(value: object) -> float:
    """``value`` as a share of 1: ``50%`` is 0.5, and so is ``0.5`` (a number is a share
    of 1 already); ``ValueError`` when it is neither (not held to any range here)."""
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise ValueError(f"{value!r} is not a percentage (write e.g. 50%)")
    if not isinstance(value, str):
        return float(value)
    text = value.strip()
    percent = text.endswith("%")
    try:
        number = float(text.removesuffix("%").strip())
    except ValueError:
        raise ValueError(f"{value!r} is not a percentage (write e.g. 50%)") from None
    if not math.isfinite(number):
        raise ValueError(f"{value!r} is not a percentage (write e.g. 50%)")
    return number / 100 if percent else number


def format_ratio(ratio: float) -> str:
    """A share of 1 as a percentage: ``50%``, ``12.5%``."""
    return f"{ratio * 100:.6g}%"
