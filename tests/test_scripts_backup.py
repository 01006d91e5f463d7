"""scripts/backup_db.py end to end: real SQLite databases, a real Pushgateway."""

from __future__ import annotations

import gzip
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import Gateway

pytestmark = pytest.mark.integration  # runs the example scripts as processes

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "backup_db.py"



def run_backup(*args: str, gateway: Gateway | None = None,
               env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, "PYTHONPATH": str(ROOT)}  # the checkout's jobreport
    if gateway is not None:
        full_env["JOBREPORT_GATEWAY"] = gateway.url
    full_env.update(env or {})
    return subprocess.run([sys.executable, str(SCRIPT), *args], env=full_env,
                          capture_output=True, text=True, timeout=120, check=False)


def make_db(path: Path, tables: dict[str, int]) -> None:
    """A WAL-mode database with ``rows`` rows in each table, left open-able by others."""
    con = sqlite3.connect(path)
    con.execute("PRAGMA journal_mode=WAL")
    for name, rows in tables.items():
        con.execute(f'CREATE TABLE "{name}" (id INTEGER PRIMARY KEY, body TEXT)')
        con.executemany(f'INSERT INTO "{name}" (body) VALUES (?)',
                        [(f"{name}-{i}" * 5,) for i in range(rows)])
    con.commit()
    con.close()


def restore(backup: Path, target: Path) -> sqlite3.Connection:
    with gzip.open(backup, "rb") as src, open(target, "wb") as out:
        out.write(src.read())
    return sqlite3.connect(target)


def test_backup_restores_and_reports(tmp_path: Path, gateway: Gateway) -> None:
    """A backup of a live WAL database restores with every row, and the run's size, rows,
    table count and database size reach the gateway."""
    db = tmp_path / "app.db"
    make_db(db, {"users": 120, "orders": 480, "odd name": 3})
    writer = sqlite3.connect(db)  # an application holding the database open meanwhile
    writer.execute("INSERT INTO users (body) VALUES ('uncommitted-but-visible-later')")
    dest = tmp_path / "backups"
    dest.mkdir()

    proc = run_backup(f"sqlite:///{db}", "--dest", str(dest), "--expect-every", "24h",
                      "--max-runtime", "1h", gateway=gateway)
    writer.rollback()
    writer.close()
    assert proc.returncode == 0, proc.stderr
    files = sorted(dest.iterdir())
    assert len(files) == 1, files  # no temporary leftovers
    backup = files[0]
    assert backup.name.startswith("app-") and backup.name.endswith(".sqlite3.gz")

    con = restore(backup, tmp_path / "restored.db")
    assert con.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    counts = {t: con.execute(f'SELECT count(*) FROM "{t}"').fetchone()[0]
              for t in ("users", "orders", "odd name")}
    assert counts == {"users": 120, "orders": 480, "odd name": 3}
    assert con.execute("SELECT body FROM orders WHERE id = 7").fetchone() == ("orders-6" * 5,)
    con.close()

    live = sqlite3.connect(db)
    db_size = live.execute("PRAGMA page_count").fetchone()[0] * live.execute(
        "PRAGMA page_size").fetchone()[0]
    live.close()
    s = gateway.samples("backup")
    assert s["jobreport_last_run_success"] == 1
    assert s['jobreport_last_outcome{outcome="success"}'] == 1
    assert s["jobreport_last_size_bytes"] == backup.stat().st_size
    assert s["jobreport_last_items"] == 603
    assert s["backup_tables"] == 3
    assert s["backup_database_size_bytes"] == db_size
    assert s["jobreport_expected_interval_seconds"] == pytest.approx(24 * 3600 * 1.1)
    assert s["jobreport_max_runtime_seconds"] == 3600
    assert "603 rows" in proc.stdout


def test_rotation_keeps_newest_and_ignores_other_files(tmp_path: Path, gateway: Gateway) -> None:
    """With --keep 2, three runs leave the two newest backups; files the script did not
    name (another database's backups, notes) are never deleted."""
    db = tmp_path / "main.db"
    make_db(db, {"t": 5})
    dest = tmp_path / "backups"
    dest.mkdir()
    (dest / "README.txt").write_text("not a backup\n")
    (dest / "other-20000101T000000Z.sqlite3.gz").write_bytes(b"another database")
    made = []
    for round_ in range(3):
        con = sqlite3.connect(db)
        con.execute("INSERT INTO t (body) VALUES (?)", (f"round {round_}",))
        con.commit()
        con.close()
        proc = run_backup(f"sqlite:///{db}", "--dest", str(dest), "--keep", "2",
                          gateway=gateway)
        assert proc.returncode == 0, proc.stderr
        made.append(Path(proc.stdout.split(" (")[0]))
    mine = sorted(p for p in dest.iterdir() if p.name.startswith("main-"))
    assert mine == sorted(made[1:])
    assert (dest / "README.txt").exists()
    assert (dest / "other-20000101T000000Z.sqlite3.gz").exists()
    con = restore(made[-1], tmp_path / "newest.db")
    assert con.execute("SELECT count(*) FROM t").fetchone() == (8,)
    con.close()
    assert gateway.samples("backup")['jobreport_runs_total{outcome="success"}'] == 3


def test_corrupt_database_fails_cleanly(tmp_path: Path, gateway: Gateway) -> None:
    """A file that is not a database: exit 1, one line on stderr, nothing left in the
    destination, and the run reported as a failure."""
    db = tmp_path / "broken.db"
    db.write_bytes(b"this is not an SQLite database" * 200)
    dest = tmp_path / "backups"
    dest.mkdir()
    proc = run_backup(f"sqlite:///{db}", "--dest", str(dest), gateway=gateway)
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith("backup_db: error: ")
    assert list(dest.iterdir()) == []
    s = gateway.samples("backup")
    assert s["jobreport_last_run_success"] == 0
    assert s['jobreport_last_outcome{outcome="failure"}'] == 1
    assert s["jobreport_last_exit_code"] == 1
    assert "jobreport_last_size_bytes" not in s


def test_missing_database_is_not_created(tmp_path: Path, gateway: Gateway) -> None:
    """A wrong path fails with a clear message and does not create an empty database."""
    db = tmp_path / "typo.db"
    dest = tmp_path / "backups"
    dest.mkdir()
    proc = run_backup(f"sqlite:///{db}", "--dest", str(dest), gateway=gateway)
    assert proc.returncode == 1
    assert "does not exist" in proc.stderr
    assert not db.exists()
    assert gateway.samples("backup")["jobreport_last_run_success"] == 0


def test_failed_verification_leaves_no_partial_file(
    tmp_path: Path, gateway: Gateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    """When the copy fails verification after it was written and compressed, neither the
    backup nor the work directory remains, and the failure is reported."""
    sys.path.insert(0, str(SCRIPT.parent))
    try:
        import backup_db
    finally:
        sys.path.remove(str(SCRIPT.parent))

    def broken(packed: Path, scratch: Path) -> tuple[int, int]:
        assert packed.stat().st_size > 0  # the compressed copy really was written
        raise backup_db.BackupError("backup copy failed its integrity check: page 3")

    monkeypatch.setattr(backup_db, "verify_sqlite", broken)
    monkeypatch.setattr(backup_db.signal, "signal", lambda *a: None)  # keep pytest's SIGTERM
    monkeypatch.setenv("JOBREPORT_GATEWAY", gateway.url)
    db = tmp_path / "app.db"
    make_db(db, {"t": 10})
    dest = tmp_path / "backups"
    dest.mkdir()
    assert backup_db.main([f"sqlite:///{db}", "--dest", str(dest)]) == 1
    assert list(dest.iterdir()) == []
    assert gateway.samples("backup")['jobreport_last_outcome{outcome="failure"}'] == 1


def test_stale_work_directory_of_a_killed_run_is_removed(tmp_path: Path,
                                                         gateway: Gateway) -> None:
    """Work directories left by a killed run (dead pid) are cleaned up; a live one stays."""
    db = tmp_path / "app.db"
    make_db(db, {"t": 1})
    dest = tmp_path / "backups"
    dest.mkdir()
    dead = subprocess.Popen(["true"])
    dead.wait()
    stale = dest / f".app-x1.{dead.pid}.tmp"
    stale.mkdir()
    (stale / "snapshot.sqlite3").write_bytes(b"half")
    alive = dest / f".app-x2.{os.getpid()}.tmp"
    alive.mkdir()
    proc = run_backup(f"sqlite:///{db}", "--dest", str(dest), gateway=gateway)
    assert proc.returncode == 0, proc.stderr
    assert not stale.exists()
    assert alive.exists()


def test_usage_errors(tmp_path: Path) -> None:
    """Bad arguments are refused by argparse with exit 2, before any backup starts."""
    proc = run_backup("--dest", str(tmp_path))
    assert proc.returncode == 2
    assert "BACKUP_DB_URL" in proc.stderr
    proc = run_backup("mysql://x/y", "--dest", str(tmp_path))
    assert proc.returncode == 1
    assert "unsupported database 'mysql'" in proc.stderr


FAKE_TOOL = """#!/bin/sh
# stands in for a PostgreSQL client program; records how it was called
{{ echo "$0 $*"; echo "PGHOST=$PGHOST PGPORT=$PGPORT PGUSER=$PGUSER"\
 "PGPASSWORD=$PGPASSWORD PGDATABASE=$PGDATABASE PGSSLMODE=$PGSSLMODE"; }} >> "{log}"
{body}
"""


def fake_pg_tools(bindir: Path, log: Path, dump_fails: bool = False) -> None:
    bindir.mkdir()
    bodies = {
        "psql": 'echo "73400320"',
        "pg_dump": (
            'echo "pg_dump: error: connection to server failed: FATAL: no such database" >&2;'
            ' for a; do case $a in --file=*) echo partial > "${a#--file=}";; esac; done;'
            " exit 1"
            if dump_fails
            else 'for a; do case $a in --file=*) printf "PGDMP%0200d" 0 > "${a#--file=}";;'
            " esac; done"
        ),
        # --data-only --file=-: the archive's data as COPY blocks, one row per line
        "pg_restore": (
            "printf 'SET x = 1;\\nCOPY public.users (id, name) FROM stdin;\\n1\\tada\\n2\\tbob\\n"
            "\\\\.\\nCOPY public.empty (id) FROM stdin;\\n\\\\.\\n'"
        ),
    }
    for name, body in bodies.items():
        tool = bindir / name
        tool.write_text(FAKE_TOOL.format(log=log, body=body))
        tool.chmod(0o755)


def test_postgres_goes_through_pg_dump(tmp_path: Path, gateway: Gateway) -> None:
    """A PostgreSQL URL runs psql (database size), pg_dump (custom format) and pg_restore
    (reads the archive back, counts tables and rows); the password reaches libpq through
    PGPASSWORD, never argv."""
    log = tmp_path / "calls.log"
    fake_pg_tools(tmp_path / "bin", log)
    dest = tmp_path / "backups"
    dest.mkdir()
    env = {"PATH": f"{tmp_path / 'bin'}:{os.environ['PATH']}",
           "BACKUP_DB_URL": "postgresql+psycopg://app:s3cret%21@db.internal:5433/shop"
                            "?sslmode=verify-full"}
    proc = run_backup("--dest", str(dest), "--keep", "3", gateway=gateway, env=env)
    assert proc.returncode == 0, proc.stderr
    [backup] = dest.iterdir()
    assert backup.name.startswith("shop-") and backup.name.endswith(".dump")
    assert backup.read_bytes().startswith(b"PGDMP")
    calls = log.read_text()
    assert "--format=custom" in calls
    assert "pg_restore --data-only --file=-" in calls
    assert ("PGHOST=db.internal PGPORT=5433 PGUSER=app PGPASSWORD=s3cret! PGDATABASE=shop "
            "PGSSLMODE=verify-full") in calls
    argv_lines = [line for line in calls.splitlines() if not line.startswith("PGHOST=")]
    assert not any("s3cret" in line for line in argv_lines)
    s = gateway.samples("backup")
    assert s["jobreport_last_run_success"] == 1
    assert s["jobreport_last_size_bytes"] == backup.stat().st_size
    assert s["jobreport_last_items"] == 2
    assert s["backup_tables"] == 2
    assert s["backup_database_size_bytes"] == 73400320


def test_postgres_dump_failure_leaves_nothing(tmp_path: Path, gateway: Gateway) -> None:
    """pg_dump's own error line is shown; its partial output is removed; failure reported."""
    fake_pg_tools(tmp_path / "bin", tmp_path / "calls.log", dump_fails=True)
    dest = tmp_path / "backups"
    dest.mkdir()
    env = {"PATH": f"{tmp_path / 'bin'}:{os.environ['PATH']}"}
    proc = run_backup("postgresql://app@db.internal/shop", "--dest", str(dest),
                      gateway=gateway, env=env)
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines()[-1] == (
        "backup_db: error: pg_dump failed: pg_dump: error: connection to server failed: "
        "FATAL: no such database"
    )
    assert list(dest.iterdir()) == []
    assert gateway.samples("backup")["jobreport_last_run_success"] == 0


def psql(url: str, sql: str) -> str:
    """Run ``sql`` with psql against the SQLAlchemy ``url``; return the unaligned output."""
    from sqlalchemy.engine import make_url

    u = make_url(url)
    env = {**os.environ, "PGHOST": u.host or "", "PGPORT": str(u.port), "PGUSER": u.username or "",
           "PGDATABASE": u.database or ""}
    return subprocess.run(["psql", "--no-psqlrc", "-v", "ON_ERROR_STOP=1", "-At", "-c", sql],
                          env=env, capture_output=True, text=True, check=True, timeout=60).stdout


def test_postgres_backup_restores(postgres_url: str, tmp_path: Path,  # noqa: F811
                                  gateway: Gateway) -> None:
    """A real PostgreSQL database: the dump restores into a new database with every row, and
    the rows and tables counted from the dump are what was pushed."""
    from sqlalchemy.engine import make_url

    psql(postgres_url, "DROP TABLE IF EXISTS customers, orders;"
         "CREATE TABLE customers (id serial PRIMARY KEY, name text);"
         "CREATE TABLE orders (id serial PRIMARY KEY, customer int, note text);"
         "INSERT INTO customers (name) SELECT 'c' || g FROM generate_series(1, 150) g;"
         "INSERT INTO orders (customer, note) SELECT g % 150, E'multi\\nline' "
         "FROM generate_series(1, 700) g;")
    dest = tmp_path / "backups"
    dest.mkdir()
    proc = run_backup(postgres_url, "--dest", str(dest), gateway=gateway)
    assert proc.returncode == 0, proc.stderr
    [backup] = dest.iterdir()
    assert backup.name.startswith("jobreport-") and backup.name.endswith(".dump")

    u = make_url(postgres_url)
    psql(postgres_url, "DROP DATABASE IF EXISTS restored")
    psql(postgres_url, "CREATE DATABASE restored")
    subprocess.run(["pg_restore", "--no-owner", "-h", u.host or "", "-p", str(u.port), "-U",
                    u.username or "", "-d", "restored", str(backup)], check=True, timeout=120,
                   capture_output=True)
    restored = u.set(database="restored").render_as_string(hide_password=False)
    assert psql(restored, "SELECT count(*) FROM customers").strip() == "150"
    assert psql(restored, "SELECT count(*), min(note) FROM orders").strip() == "700|multi\nline"
    s = gateway.samples("backup")
    assert s["jobreport_last_run_success"] == 1
    assert s["jobreport_last_items"] == 850
    assert s["backup_tables"] == 2
    assert s["jobreport_last_size_bytes"] == backup.stat().st_size
    size = int(psql(postgres_url, "SELECT pg_database_size(current_database())"))
    assert abs(s["backup_database_size_bytes"] - size) < size * 0.5


def test_labels_and_thresholds_pass_through(tmp_path: Path, gateway: Gateway) -> None:
    """--label, --grace and --job reach job_metrics: the run lands in its own group with the
    thresholds it was given."""
    db = tmp_path / "orders.db"
    make_db(db, {"t": 2})
    dest = tmp_path / "backups"
    dest.mkdir()
    proc = run_backup(f"sqlite:///{db}", "--dest", str(dest), "--job", "orders-backup",
                      "--label", "db=orders", "--expect-every", "12h", "--grace", "3h",
                      gateway=gateway)
    assert proc.returncode == 0, proc.stderr
    s = gateway.samples("orders-backup", db="orders")
    assert s["jobreport_expected_interval_seconds"] == 15 * 3600
    assert s["jobreport_last_items"] == 2
    proc = run_backup(f"sqlite:///{db}", "--dest", str(dest), "--label", "oops")
    assert proc.returncode != 0
    assert "--label wants KEY=VALUE, got 'oops'" in proc.stderr


def test_output_thresholds_judge_the_backup(tmp_path: Path, gateway: Gateway) -> None:
    """--min-size, --max-shrink and --min-rows reach job_metrics and are pushed with the
    backup's size and its typical size; a backup a tenth of its usual size is below the
    shrink limit the rule compares; a bad value is a usage error that backs nothing up."""
    db = tmp_path / "app.db"
    make_db(db, {"orders": 4000})
    dest = tmp_path / "backups"
    dest.mkdir()
    store = {"JOBREPORT_DB": f"sqlite:///{tmp_path / 'store.db'}"}
    args = ["--dest", str(dest), "--min-size", "1kB", "--max-shrink", "50%", "--min-rows", "10"]
    for _ in range(3):
        proc = run_backup(f"sqlite:///{db}", *args, gateway=gateway, env=store)
        assert proc.returncode == 0, proc.stderr
    s = gateway.samples("backup")
    usual = s["jobreport_last_size_bytes"]
    assert s["jobreport_min_size_bytes"] == 1000 and s["jobreport_min_items"] == 10
    assert s["jobreport_max_shrink_ratio"] == 0.5
    assert s["jobreport_typical_size_bytes"] == usual
    con = sqlite3.connect(db)
    con.execute("DELETE FROM orders WHERE id > 300")
    con.commit()
    con.execute("VACUUM")
    con.close()
    proc = run_backup(f"sqlite:///{db}", *args, gateway=gateway, env=store)
    assert proc.returncode == 0, proc.stderr
    s = gateway.samples("backup")
    assert s["jobreport_last_size_bytes"] < 0.5 * s["jobreport_typical_size_bytes"]
    assert s["jobreport_typical_size_bytes"] == usual  # one small run: the median holds
    before = sorted(dest.iterdir())
    for bad, said in ((["--max-shrink", "150%"], "--max-shrink"),
                      (["--min-size", "10M"], "--min-size"), (["--min-rows", "0"], "--min-rows")):
        proc = run_backup(f"sqlite:///{db}", "--dest", str(dest), *bad, gateway=gateway,
                          env=store)
        assert proc.returncode == 2 and said in proc.stderr, proc.stderr
        assert "Traceback" not in proc.stderr
    assert sorted(dest.iterdir()) == before
