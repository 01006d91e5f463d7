"""``python -m jobreport``: the same as the ``jobreport`` command."""

from jobreport.cli import main

main(prog_name="jobreport")
