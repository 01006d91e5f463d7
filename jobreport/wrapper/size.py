"""``--size-path``: the bytes a run produced, in files or whole directory trees. Measured
once the command is over."""

from __future__ import annotations

import os

from jobreport.logger import log

__all__ = ["path_size"]


def path_size(paths: tuple[str, ...] | list[str]) -> float | None:
    """Bytes in ``paths`` (files, or directory trees; symlinks are not followed). A path
    that does not exist is warned about and left out; None when none exists."""
    total = 0
    found = False
    for path in paths:
        try:
            total += _tree_size(path)
            found = True
        except FileNotFoundError:
            log.warning("jobreport: --size-path %s does not exist; not counted", path)
        except OSError as e:
            log.warning("jobreport: --size-path %s: %s; not counted", path, e.strerror)
    return float(total) if found else None


def _tree_size(path: str) -> int:
    st = os.lstat(path)
    if not os.path.isdir(path) or os.path.islink(path):
        return st.st_size
    total = 0
    for root, _dirs, files in os.walk(path, onerror=None):
        for name in files:
            try:
                total += os.lstat(os.path.join(root, name)).st_size
            except OSError:
                continue  # removed while we walk
    return total
