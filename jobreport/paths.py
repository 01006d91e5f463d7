"""Where jobreport keeps files, and how it makes their directories: cheap to import (the
wrapper uses it before the command starts)."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["private_dir", "sqlite_path"]


def sqlite_path(url: str) -> str | None:
    """The file of a plain SQLite store URL (``sqlite:///PATH``), else None (another
    database, an in-memory store, or a URL with options, which SQLAlchemy must read)."""
    for prefix in ("sqlite:///", "sqlite+pysqlite:///"):
        if url.startswith(prefix):
            path = url[len(prefix):]
            if path and path != ":memory:" and "?" not in path and not path.startswith("file:"):
                return path
    return None


def private_dir(path: Path) -> None:
    """Create ``path`` and its missing parents owner-only (as the XDG base directory spec
    asks: ``<state dir>/locks`` must not leave the state directory 0755); an existing
    directory is left as it is. Raises ``OSError``."""
    missing = []
    while not path.is_dir():
        missing.append(path)
        if path.parent == path:
            break
        path = path.parent
    for directory in reversed(missing):
        try:
            directory.mkdir(mode=0o700)
        except FileExistsError:
            continue
        os.chmod(directory, 0o700)  # mkdir's mode is filtered by the umask
