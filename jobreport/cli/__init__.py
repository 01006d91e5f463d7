"""The ``jobreport`` command line: the commands (``commands``), their options (``options``)
and how they print (``formatting``). The entry point is ``jobreport.cli:main``."""

from jobreport.cli.commands import main

__all__ = ["main"]
