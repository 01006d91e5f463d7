"""The monitoring side that ships with jobreport: the files of the repository's monitoring/
as package data (``shipped``), the ``absent()`` guards for the configured jobs (``rules``),
and ``jobreport monitoring export`` (``export``, with its text rewrites in ``rewrite``)."""
