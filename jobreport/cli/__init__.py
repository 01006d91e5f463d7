"""The ``jobreport`` command line: the group and the boundary (``app``), one module per
command (``run``, ``push``, ...), the options they share (``options``) and how they print
(``formatting``). The entry point is ``jobreport.cli:main``."""

from jobreport.cli.app import load_commands

main = load_commands()

__all__ = ["main"]
