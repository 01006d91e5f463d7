"""The ``jobreport`` command line: the entry point and the fast way into ``jobreport run``
(``entry``), the options declared once (``option_table``), the click group and the boundary
(``app``), one module per command (``run``, ``push``, ...), the click options (``options``)
and how they print (``formatting``). The entry point is ``jobreport.cli:main``."""

from jobreport.cli.entry import Entry

#: The ``jobreport`` command; click loads on first use, not for a plain ``jobreport run``.
main = Entry()

__all__ = ["main"]
