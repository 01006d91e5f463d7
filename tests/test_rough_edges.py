"""Smaller things a newcomer met (issue 24 item 5), each as it happens for real: the next
deadline of an --expect-every job, deleting a group twice, a timeout message that names
the limit, a daemon holding the command's output, a last line of 64 KiB or more."""

from __future__ import annotations

import json
import re
import shlex
import time
from pathlib import Path

import pytest

from jobreport import DeliveryError, load_config
from jobreport.sinks.base import deadline_after
from jobreport.sinks.pushgateway import PushgatewaySink
from jobreport.spec import TAIL_MAX_BYTES
from jobreport.wrapper.child import DRAIN_TIMEOUT, run
from tests.conftest import Gateway
from tests.faults import SilentServer, assert_no_traceback, cli_env, run_cli

pytestmark = pytest.mark.integration  # jobreport end to end, gateways, Prometheus


def test_status_shows_when_an_expect_every_job_is_overdue(gateway: Gateway,
                                                           tmp_path: Path) -> None:
    """NEXT DEADLINE of an --expect-every job is its last success plus the interval (in the
    future when fresh, passed when overdue), also in --json."""
    env = cli_env(JOBREPORT_GATEWAY=gateway.url, JOBREPORT_DB=str(tmp_path / "s.db"))
    before = time.time()
    run_cli(["run", "--job", "hourly", "--expect-every", "1h", "--", "true"], env)
    run_cli(["run", "--job", "late", "--expect-every", "1s", "--grace", "0s", "--", "true"],
            env)
    deadline = time.monotonic() + 30
    while True:
        shown = json.loads(run_cli(["status", "--json"], env).stdout)
        groups = {g["job"]: g for g in shown}
        if groups["late"]["deadline_passed"] or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    hourly = groups["hourly"]
    assert before + 3960 - 5 <= hourly["next_deadline"] <= time.time() + 3960 + 5
    assert hourly["overdue_at"] == hourly["next_deadline"] and not hourly["deadline_passed"]
    assert groups["late"]["deadline_passed"]
    table = run_cli(["status"], env).stdout
    rows = {line.split()[0]: line for line in table.splitlines()[1:]}
    assert re.search(r"\(in 1h\d", rows["hourly"]), table
    assert "(passed " in rows["late"] and "overdue" in rows["late"], table


def test_deleting_a_group_twice_says_it_was_deleted_already(gateway: Gateway,
                                                             tmp_path: Path) -> None:
    """The first delete removes the group; the second says it was deleted already (exit
    1: nothing left to delete), not "deleted" again; a new run revives it."""
    env = cli_env(JOBREPORT_GATEWAY=gateway.url, JOBREPORT_DB=str(tmp_path / "s.db"))
    run_cli(["run", "--job", "retired", "--", "true"], env)
    first = run_cli(["delete", "--job", "retired"], env)
    assert first.returncode == 0 and first.stdout.startswith("deleted group job=retired")
    gateway.groups_once(lambda groups: not any(g["labels"]["job"] == "retired"
                                               for g in groups))
    second = run_cli(["delete", "--job", "retired"], env)
    assert_no_traceback(second.stderr)
    assert second.returncode == 1, second.stdout
    assert "deleted" not in second.stdout
    assert "was deleted already" in second.stderr
    run_cli(["run", "--job", "retired", "--", "true"], env)
    assert run_cli(["delete", "--job", "retired"], env).returncode == 0


@pytest.mark.parametrize(("timeout", "budget"), [("2", "3"), ("5", "1.5")])
def test_a_timeout_names_the_limit_not_what_was_left(timeout: str, budget: str,
                                                     tmp_path: Path) -> None:
    """A gateway that never answers: the error names the per-attempt timeout or the budget
    that cut it, never the fraction of a second the last attempt had left."""
    with SilentServer() as silent:
        config = load_config(env={}, gateway=silent.url, timeout=timeout,
                             db=str(tmp_path / "s.db"))
        sink = PushgatewaySink(config)
        with pytest.raises(DeliveryError) as raised:
            sink.push_text("j", {"instance": "h"}, b"x 1\n",
                           deadline=deadline_after(float(budget)))
    said = re.search(r"did not answer within (\S+)s", str(raised.value))
    assert said is not None, str(raised.value)
    assert float(said.group(1)) in (float(timeout), float(budget)), str(raised.value)


def test_a_daemon_holding_the_output_does_not_hold_the_wrapper(tmp_path: Path) -> None:
    """A command that leaves a process holding its stdout: the wrapper returns at once
    (not after waiting for output that may never end), with everything the command wrote
    in the tail; the daemon's later output still reaches the file."""
    gate, out = tmp_path / "gate", tmp_path / "out"
    daemon = (f"i=0; while [ ! -e {shlex.quote(str(gate))} ] && [ $i -lt 1200 ]; "
              "do sleep 0.05; i=$((i+1)); done; echo daemon-late")
    script = f"echo first; ({daemon}) & printf 'last words'"
    with open(out, "wb") as f:
        import os
        import sys

        saved = os.dup(1)
        os.dup2(f.fileno(), 1)
        try:
            started = time.monotonic()
            result = run(["sh", "-c", script])
            took = time.monotonic() - started
        finally:
            sys.stdout.flush()
            os.dup2(saved, 1)
            os.close(saved)
    gate.touch()
    assert result.exit_code == 0
    assert result.tail == "first\nlast words", result.tail
    # the wait for the command's last output is no longer the whole drain time
    assert took - result.duration < DRAIN_TIMEOUT * 0.8, took - result.duration
    stop = time.monotonic() + 60
    while "daemon-late" not in out.read_text() and time.monotonic() < stop:
        time.sleep(0.05)
    assert out.read_text() == "first\nlast wordsdaemon-late\n"


def test_a_last_line_longer_than_the_tail_keeps_its_end(tmp_path: Path) -> None:
    """A job that prints one 100 KB line (and one of exactly 64 KiB) keeps the end of it in
    its stored tail, bounded, instead of nothing."""
    env = cli_env(JOBREPORT_DB=str(tmp_path / "s.db"))
    for job, size in (("long", 100_000), ("exact", TAIL_MAX_BYTES)):
        script = f"import sys; sys.stdout.write('x' * {size - 3} + 'END\\n')"
        with open(tmp_path / "out", "wb") as f:
            import subprocess

            from tests.faults import JOBREPORT

            done = subprocess.run([JOBREPORT, "run", "--job", job, "--", "python3", "-c", script],
                                  env=env, stdout=f, stderr=subprocess.PIPE, timeout=60,
                                  check=False)
        assert done.returncode == 0, done.stderr
        runs = json.loads(run_cli(["history", job, "--json"], env).stdout)
        tail = runs[0]["tail"]
        assert tail.endswith("xxEND"), (job, tail[-20:] if tail else tail)
        assert len(tail.encode()) <= TAIL_MAX_BYTES


def test_history_by_outcome_reads_an_index_and_keeps_the_order(tmp_path: Path) -> None:
    """`history --outcome timeout` without a job reads the runs of that outcome from an
    index (not the whole table), in a new store and in one migrated from schema 5; several
    outcomes come back newest first, within the limit."""
    import sqlite3

    from jobreport.result import RunResult
    from jobreport.store.rows import RunStart
    from jobreport.store.store import Store

    path = tmp_path / "s.db"
    store = Store(f"sqlite:///{path}")
    outcomes = ["success", "timeout", "failure", "success", "timeout", "failure", "success"]
    for i, outcome in enumerate(outcomes):
        grouping = {"job": f"j{i % 3}", "instance": "h"}
        store.record_run(RunStart(grouping["job"], grouping, 1000.0 + i, "h"),
                         RunResult(ended=1001.0 + i, duration=1.0, outcome=outcome,
                                   exit_code=0 if outcome == "success" else 1))
    found = store.history(outcomes=["failure", "timeout"], limit=3)
    assert [r.outcome for r in found] == ["failure", "timeout", "failure"]
    assert [r.id for r in found] == sorted((r.id for r in found), reverse=True)
    assert [(r.job, r.outcome) for r in store.history("j1", outcomes=["success", "timeout"])] \
        == [("j1", "timeout"), ("j1", "timeout")]
    store.close()

    def plan(db: Path) -> str:
        with sqlite3.connect(db) as conn:
            rows = conn.execute("EXPLAIN QUERY PLAN SELECT * FROM jobreport_runs "
                                "WHERE outcome = 'timeout' ORDER BY id DESC LIMIT 20")
            return " ".join(str(r[-1]) for r in rows)

    assert "USING INDEX ix_jobreport_runs_outcome" in plan(path), plan(path)
    with sqlite3.connect(path) as conn:  # as a schema 5 store was
        conn.execute("DROP INDEX ix_jobreport_runs_outcome")
        conn.execute("DROP INDEX ix_jobreport_runs_job_outcome")
        conn.execute("UPDATE jobreport_meta SET value = '5' WHERE key = 'schema_version'")
    assert "SCAN" in plan(path)
    Store(f"sqlite:///{path}").ensure_schema()
    assert "USING INDEX ix_jobreport_runs_outcome" in plan(path), plan(path)


def test_a_gateway_url_pointed_at_prometheus(tmp_path: Path) -> None:
    """JOBREPORT_GATEWAY naming a real Prometheus (docs/troubleshooting.md): the job keeps
    its exit code, every command says the URL is not a Pushgateway's, and `status --check`
    is UNKNOWN."""
    from tests import servers

    config = tmp_path / "prometheus.yml"
    config.write_text("global:\n  scrape_interval: 15s\n")
    prometheus = servers.prometheus(tmp_path / "prometheus", config).start()
    try:
        env = cli_env(JOBREPORT_GATEWAY=prometheus.url, JOBREPORT_DB=str(tmp_path / "s.db"))
        run = run_cli(["run", "--job", "misdirected", "--", "sh", "-c", "exit 4"], env)
        status = run_cli(["status"], env)
        check = run_cli(["status", "--check"], env)
    finally:
        prometheus.stop()
    assert run.returncode == 4
    assert "404 Not Found" in run.stderr, run.stderr
    for said in (run.stderr, status.stderr, check.stdout):  # Prometheus' own /metrics: 200
        assert "is this a Pushgateway?" in said and "fix JOBREPORT_GATEWAY" in said, said
    assert "running and reachable" not in status.stderr, status.stderr
    assert status.returncode == 3 and check.returncode == 3


def test_counters_after_a_corrupt_store(gateway: Gateway, tmp_path: Path) -> None:
    """A damaged store stays damaged (each run warns and is pushed without being counted);
    moved aside, the new store takes over the gateway's counters: they go on, they do not
    start again (docs/troubleshooting.md)."""
    db = tmp_path / "s.db"
    env = cli_env(JOBREPORT_GATEWAY=gateway.url, JOBREPORT_DB=str(db), JOBREPORT_INSTANCE="h")
    for _ in range(3):
        run_cli(["run", "--job", "counted", "--", "true"], env)
    for path in tmp_path.glob("s.db*"):
        path.unlink()
    db.write_bytes(b"not a database " * 100)
    damaged = run_cli(["run", "--job", "counted", "--", "true"], env)
    assert damaged.returncode == 0 and "store unavailable" in damaged.stderr
    assert gateway.samples("counted", instance="h")[
        'jobreport_runs_total{outcome="success"}'] == 3
    db.rename(tmp_path / "s.db.bad")
    run_cli(["run", "--job", "counted", "--", "true"], env)
    assert gateway.samples("counted", instance="h")[
        'jobreport_runs_total{outcome="success"}'] == 4
    assert len(json.loads(run_cli(["history", "--json"], env).stdout)) == 1
