"""The local store: every run and, per group, what has reached each sink (``store``), the two
ways it talks to a database (``backends``: sqlite3 for SQLite, SQLAlchemy for the rest), and
the tables (``schema``)."""
