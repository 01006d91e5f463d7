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
    """Create ``path`` (and its parents) owner-only; an existing directory is left as it is.
    Raises ``OSError``."""
    if path.is_dir():
        return
    try:
        path.mkdir(parents=True, mode=0o700)
    except FileExistsError:
        return
    os.chmod(path, 0o700)  # mkdir's mode is filtered by the umask
