"""Where jobreport keeps files, and how it makes their directories: cheap to import (the
wrapper uses it before the command starts)."""

from __future__ import annotations

import os

TYPE_CHECKING = False  # not typing's: importing typing costs every `jobreport run`
if TYPE_CHECKING:
    from collections.abc import Mapping

__all__ = ["private_dir", "sqlite_path", "state_dir"]


def state_dir(env: Mapping[str, str] | None = None) -> str:
    """``$XDG_STATE_HOME/jobreport``, by default ``~/.local/state/jobreport``: the store, the
    locks and the run markers live here. (A string, not a ``Path``: pathlib costs the run
    path a few milliseconds before the command starts.)"""
    env = os.environ if env is None else env
    base = env.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
    return os.path.join(base, "jobreport")


def sqlite_path(url: str) -> str | None:
    """The file of a plain SQLite store URL (``sqlite:///PATH``), else None (another
    database, an in-memory store, or a URL with options, which SQLAlchemy must read)."""
    for prefix in ("sqlite:///", "sqlite+pysqlite:///"):
        if url.startswith(prefix):
            path = url[len(prefix):]
            if path and path != ":memory:" and "?" not in path and not path.startswith("file:"):
                return path
    return None


def private_dir(path: str | os.PathLike[str]) -> None:
    """Create ``path`` and its missing parents owner-only (as the XDG base directory spec
    asks: ``<state dir>/locks`` must not leave the state directory 0755); an existing
    directory is left as it is. Raises ``OSError``."""
    missing = []
    directory = os.path.abspath(path)
    while not os.path.isdir(directory):
        missing.append(directory)
        parent = os.path.dirname(directory)
        if parent == directory:
            break
        directory = parent
    for directory in reversed(missing):
        try:
            os.mkdir(directory, mode=0o700)
        except FileExistsError:
            continue
        os.chmod(directory, 0o700)  # mkdir's mode is filtered by the umask
