"""Leaving the ``jobreport`` process once a command is done (the fast way into ``jobreport
run`` and the click group alike).

Standard library only: on the path of every ``jobreport run`` before its command starts.
"""

from __future__ import annotations

import os
import sys

# not typing's: this module is on the path of `jobreport run` before its command starts
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import NoReturn

__all__ = ["exit_now"]


def exit_now(code: object) -> NoReturn:
    """Flush the output and leave the process at once with ``code``: tearing down SQLAlchemy
    and requests at interpreter exit would add a tenth of a second to every run of a cron
    job, for nothing (every write is committed, every push answered)."""
    if code is None:
        status = 0
    elif isinstance(code, int):
        status = code
    else:
        print(code, file=sys.stderr)
        status = 1
    try:
        if "logging" in sys.modules:  # not loaded when nothing was logged
            sys.modules["logging"].shutdown()
        for stream in (sys.stdout, sys.stderr):
            if stream is not None:  # None: started with it closed (`>&-`), nothing to flush
                stream.flush()
    except Exception:  # a closed stdout must not change the exit code
        status = status or 1
    os._exit(status)
