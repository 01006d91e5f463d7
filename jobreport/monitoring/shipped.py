"""The monitoring files that ship inside the package, read with importlib.resources.

The repository keeps one copy of them, where people look: the top-level ``monitoring/``
directory and ``docs/runbook.md``. ``jobreport/monitoring/data`` and
``jobreport/monitoring/runbook.md`` are symlinks to those, and setuptools copies what they
point at into the sdist and the wheel (``[options.package_data]`` in setup.cfg), so an
installed jobreport reads the same files as a checkout.
"""

from __future__ import annotations

import sys
from importlib.resources import files
from typing import TYPE_CHECKING

from jobreport.errors import JobReportError

if TYPE_CHECKING:
    if sys.version_info >= (3, 11):
        from importlib.resources.abc import Traversable
    else:
        from importlib.abc import Traversable

__all__ = ["MissingDataError", "data_root", "read", "runbook", "walk"]

_PACKAGE = "jobreport.monitoring"


class MissingDataError(JobReportError):
    """The installation lacks the monitoring files (a broken or partial install)."""

    exit_code = 1


def data_root() -> Traversable:
    """The shipped copy of ``monitoring/``."""
    root = files(_PACKAGE) / "data"
    if not root.is_dir():
        raise MissingDataError(
            f"the monitoring files are missing from this installation ({root}); "
            "reinstall jobreport")
    return root


def _at(root: Traversable, path: str) -> Traversable:
    node = root
    for part in path.split("/"):
        node = node / part
    return node


def read(path: str) -> str:
    """The text of a shipped file, ``path`` relative to ``monitoring/`` (``rules/x.yml``)."""
    node = _at(data_root(), path)
    if not node.is_file():
        raise MissingDataError(
            f"the monitoring file {path} is missing from this installation; "
            "reinstall jobreport")
    return node.read_text(encoding="utf-8")


def walk(top: str = "") -> list[str]:
    """Every shipped file under ``top`` (relative to ``monitoring/``), sorted, as
    ``/``-separated paths relative to ``monitoring/``."""
    out: list[str] = []

    def visit(node: Traversable, prefix: str) -> None:
        for child in node.iterdir():
            name = f"{prefix}{child.name}"
            if child.is_dir():
                visit(child, f"{name}/")
            elif child.is_file():
                out.append(name)

    start = _at(data_root(), top) if top else data_root()
    if start.is_dir():
        visit(start, f"{top}/" if top else "")
    return sorted(out)


def runbook() -> Traversable:
    """The shipped runbook (docs/runbook.md of the repository)."""
    page = files(_PACKAGE) / "runbook.md"
    if not page.is_file():
        raise MissingDataError(
            f"the runbook is missing from this installation ({page}); reinstall jobreport")
    return page
