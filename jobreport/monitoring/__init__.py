"""The monitoring side that ships with jobreport: the files of the repository's monitoring/
as package data (``shipped``), the ``absent()`` guards for the configured jobs (``rules``),
the rule variants per sink (``variants``), the Alertmanager pieces (``alertmanager``), and
``jobreport monitoring export`` (``export``, with its text rewrites in ``rewrite``). Every
value a user types reaches these files through ``quoting``."""
