"""Delivery from the store to the sinks: complete-state PUTs, the pending queue, retired groups,
the order of runs, failing collectors, a replaced store and older stores (docs/operations.md)."""

from __future__ import annotations

import logging
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from jobreport import job_metrics, load_config
from jobreport.config import Config
from jobreport.delivery import flush
from jobreport.result import RunResult
from jobreport.store.migrations import SCHEMA_VERSION
from jobreport.store.store import RunStart, Store
from tests.conftest import Gateway
from tests.faults import FaultProxy, assert_no_traceback, cli_env, run_cli


def config_for(url: str, tmp_path: Path, **settings: Any) -> Config:
    # every push here must land on the real gateway: budgets for a busy machine (a push
    # that lands returns at once)
    values: dict[str, Any] = {"budget": "60s", "start_budget": "5s", "timeout": "10s",
                              "db": f"sqlite:///{tmp_path / 'store.db'}"}
    values.update(settings)
    return load_config(env={}, gateway=url, instance="h1", **values)


# --- complete-state pushes ------------------------------------------------------------


def test_a_threshold_or_family_no_longer_reported_is_gone_after_the_next_run(
        gateway: Gateway, tmp_path: Path) -> None:
    """With a store the end push replaces the group (PUT): dropping expect_every, max_runtime
    or a custom gauge removes it from the gateway on the next run; counters keep counting."""
    config = config_for(gateway.url, tmp_path)
    with job_metrics("backup", expect_every="1h", max_runtime="10m", config=config) as job:
        job.gauge("backup_tables", 7)
    before = gateway.samples("backup", instance="h1")
    assert before["jobreport_expected_interval_seconds"] == 3960
    assert before["jobreport_max_runtime_seconds"] == 600
    assert before["backup_tables"] == 7
    with job_metrics("backup", config=config):
        pass
    after = gateway.samples("backup", instance="h1")
    assert "jobreport_expected_interval_seconds" not in after
    assert "jobreport_max_runtime_seconds" not in after
    assert "backup_tables" not in after
    assert after['jobreport_runs_total{outcome="success"}'] == 2
    assert after["jobreport_last_success_timestamp_seconds"] >= \
        before["jobreport_last_success_timestamp_seconds"]


def test_pushed_values_live_in_the_store_and_survive_runs(gateway: Gateway,
                                                          tmp_path: Path) -> None:
    """`jobreport push` values are kept in the store, so the next run's PUT carries them;
    `delete` forgets them."""
    env = cli_env(JOBREPORT_GATEWAY=gateway.url, JOBREPORT_DB=f"sqlite:///{tmp_path / 's.db'}",
                  JOBREPORT_INSTANCE="h1")
    pushed = run_cli(["push", "--job", "etl", "rows=12"], env)
    assert pushed.returncode == 0, pushed.stderr
    ran = run_cli(["run", "--job", "etl", "--", "true"], env)
    assert ran.returncode == 0, ran.stderr
    s = gateway.samples("etl", instance="h1")
    assert s["rows"] == 12 and s['jobreport_runs_total{outcome="success"}'] == 1


def test_without_a_store_the_push_never_lowers_the_counters_or_last_success(
        gateway: Gateway, tmp_path: Path) -> None:
    """No usable store: a POST of what the run knows, leaving out counters and (after a
    failure) the last success, so the gateway keeps them."""
    config = config_for(gateway.url, tmp_path)
    with job_metrics("nightly", config=config):
        pass
    first = gateway.samples("nightly", instance="h1")
    (tmp_path / "plain-file").write_text("")  # a store "inside" a file cannot be opened
    broken = config.with_overrides(db=f"sqlite:///{tmp_path / 'plain-file' / 'x.db'}")
    with pytest.raises(RuntimeError), job_metrics("nightly", config=broken):
        raise RuntimeError("boom")
    s = gateway.samples("nightly", instance="h1")
    assert s['jobreport_last_outcome{outcome="failure"}'] == 1
    assert s['jobreport_runs_total{outcome="success"}'] == 1
    assert s["jobreport_last_success_timestamp_seconds"] == \
        first["jobreport_last_success_timestamp_seconds"]


# --- the queue ------------------------------------------------------------------------


@pytest.mark.parametrize("status", [400, 404, 301])
def test_a_rejected_push_stays_pending_with_its_error_and_is_delivered_later(
        gateway: Gateway, tmp_path: Path, status: int) -> None:
    """400, 404 or a 301 never drops the run: the group stays pending with the gateway's
    answer recorded (shown by check, status and history); a later flush delivers it."""
    body = f"loopback stub says {status}"
    with FaultProxy(gateway.url, [status] * 4, body=body) as proxy:
        env = cli_env(JOBREPORT_GATEWAY=proxy.url,
                      JOBREPORT_DB=f"sqlite:///{tmp_path / 's.db'}", JOBREPORT_INSTANCE="h1",
                      JOBREPORT_BUDGET="60s", JOBREPORT_START_BUDGET="0.2s")  # not retried
        ran = run_cli(["run", "--job", "kept", "--", "sh", "-c", "exit 3"], env)
        assert ran.returncode == 3
        shown = body if status != 301 else "301 Moved Permanently"  # 3xx: where it points
        assert shown in ran.stderr and "stays pending" in ran.stderr
        assert_no_traceback(ran.stderr)
        [pending] = Store(env["JOBREPORT_DB"]).pending()
        assert pending.job == "kept" and shown in (pending.last_error or "")
        history = run_cli(["history"], env)
        assert "delivery of group job=kept instance=h1 to pushgateway: pending since" \
            in history.stdout
        assert f"last error: the Pushgateway at {proxy.url}" in history.stdout
        assert shown in history.stdout
        check = run_cli(["check"], env)
        assert shown in check.stdout
        proxy.script = []
        flushed = run_cli(["flush"], env)
        assert flushed.returncode == 0, flushed.stderr
        status_out = run_cli(["status"], env)
        assert "delivery of group" not in status_out.stdout
    assert Store(env["JOBREPORT_DB"]).pending() == []
    s = gateway.samples("kept", instance="h1")
    assert s['jobreport_last_outcome{outcome="failure"}'] == 1
    assert s["jobreport_last_exit_code"] == 3


class _BadSummary(Collector):
    """A summary whose quantile label is not a number: the Pushgateway answers 400."""

    def collect(self) -> Iterator[Metric]:
        metric = Metric("bad_latency", "latency", "summary")
        metric.add_sample("bad_latency", {"quantile": "abc"}, 1.0)
        metric.add_sample("bad_latency_count", {}, 1.0)
        metric.add_sample("bad_latency_sum", {}, 1.0)
        yield metric
        yield GaugeMetricFamily("good_gauge", "fine", value=5.0)


def test_a_family_the_gateway_rejects_does_not_hold_back_the_rest(
        gateway: Gateway, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A family the gateway would reject (a quantile that is not a number) is left out of
    the push before the gateway sees it (one warning naming it), so the outcome and last
    success land; the group stays flagged pending and JobreportPushFailing fires."""
    config = config_for(gateway.url, tmp_path)
    with caplog.at_level(logging.WARNING, logger="jobreport"), \
            job_metrics("summaries", config=config) as job:
        job.register(_BadSummary())
    warnings = [r.getMessage() for r in caplog.records if "bad_latency" in r.getMessage()]
    assert len(warnings) == 1 and "left out the families" in warnings[0]
    assert "quantile label 'abc' is not a number" in warnings[0]
    s = gateway.samples("summaries", instance="h1")
    assert s['jobreport_last_outcome{outcome="success"}'] == 1
    assert s["good_gauge"] == 5
    assert not any(k.startswith("bad_latency") for k in s)
    assert s["push_failure_time_seconds"] > s["push_time_seconds"]  # JobreportPushFailing
    [pending] = Store(config.db).pending()
    assert "bad_latency" in (pending.last_error or "")


# --- retire ---------------------------------------------------------------------------


def test_delete_retires_the_group_until_the_next_run(gateway: Gateway, tmp_path: Path) -> None:
    """After `delete`, neither `flush` nor `flush --all` brings the group back; a new run of
    the job revives it. Deleting a group nobody has says so (exit 1)."""
    env = cli_env(JOBREPORT_GATEWAY=gateway.url, JOBREPORT_DB=f"sqlite:///{tmp_path / 's.db'}",
                  JOBREPORT_INSTANCE="h1")
    assert run_cli(["run", "--job", "old", "--", "true"], env).returncode == 0
    # a failed delivery left pending must not resurrect it either
    Store(env["JOBREPORT_DB"]).mark_failed('{"instance":"h1","job":"old"}', "x")
    deleted = run_cli(["delete", "--job", "old"], env)
    assert deleted.returncode == 0, deleted.stderr
    for args in (["flush"], ["flush", "--all"]):
        assert run_cli(args, env).returncode == 0
        # (the Pushgateway applies the DELETE after answering it)
        left = gateway.groups_once(lambda gs: all(g["labels"].get("job") != "old" for g in gs))
        assert [g for g in left if g["labels"].get("job") == "old"] == []
    assert run_cli(["run", "--job", "old", "--", "true"], env).returncode == 0
    assert gateway.samples("old", instance="h1")['jobreport_runs_total{outcome="success"}'] == 2
    missing = run_cli(["delete", "--job", "never-was"], env)
    assert missing.returncode == 1
    assert "no group job=never-was, instance=h1 in the store or the Pushgateway" \
        in missing.stderr


# --- order and loss -------------------------------------------------------------------


def test_the_newest_run_is_the_newest_recorded_whatever_the_clock(tmp_path: Path) -> None:
    """A failed run recorded after a success is the last run even when the clock was stepped
    back an hour in between (the injected timestamps)."""
    store = Store(f"sqlite:///{tmp_path / 's.db'}")
    now = 1_800_000_000.0
    grouping = {"job": "clock", "instance": "h1"}
    store.record_run(RunStart("clock", grouping, now - 10, "h1"),
                     RunResult(ended=now, duration=10.0, outcome="success", exit_code=0))
    _, state, _ = store.record_run(
        RunStart("clock", grouping, now - 3600 - 5, "h1"),
        RunResult(ended=now - 3600, duration=5.0, outcome="failure", exit_code=2))
    assert state.last is not None
    assert (state.last.outcome, state.last.exit_code) == ("failure", 2)
    assert state.last_start == now - 3600 - 5
    assert state.last_success == now  # never moves back
    assert [r.outcome for r in store.history("clock")] == ["failure", "success"]


class _Broken(Collector):
    def collect(self) -> Iterator[Metric]:
        raise OSError("sensor unplugged")


def test_a_failing_collector_costs_its_families_not_the_run(
        gateway: Gateway, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A collector that raises in collect(): one warning, the run is recorded and pushed
    with everything else."""
    config = config_for(gateway.url, tmp_path)
    with caplog.at_level(logging.WARNING, logger="jobreport"), \
            job_metrics("collect", config=config) as job:
        job.register(_Broken())
        job.gauge("collect_ok", 1)
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1 and "sensor unplugged" in warnings[0], warnings
    assert [r.outcome for r in Store(config.db).history("collect")] == ["success"]
    s = gateway.samples("collect", instance="h1")
    assert s["collect_ok"] == 1 and s['jobreport_last_outcome{outcome="success"}'] == 1


@pytest.mark.parametrize("how", ["removed", "replaced"])
def test_a_store_replaced_mid_run_is_a_warning_and_counters_never_go_down(
        gateway: Gateway, tmp_path: Path, caplog: pytest.LogCaptureFixture, how: str) -> None:
    """The store file removed or replaced while a run is open: a warning, and the end push
    goes out without history (no lower runs_total), the outcome still lands."""
    config = config_for(gateway.url, tmp_path)
    for _ in range(3):
        with job_metrics("swap", config=config):
            pass
    path = tmp_path / "store.db"
    with caplog.at_level(logging.WARNING, logger="jobreport"), \
            pytest.raises(RuntimeError), job_metrics("swap", config=config):
        deadline = time.monotonic() + 60
        while len(Store(config.db).history("swap")) < 4 and time.monotonic() < deadline:
            time.sleep(0.05)  # wait for the start worker to open the run
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
        if how == "replaced":
            sqlite3.connect(path).close()
        raise RuntimeError("body failed")
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert any("was removed or replaced" in w for w in warnings), warnings
    s = gateway.samples("swap", instance="h1")
    assert s['jobreport_runs_total{outcome="success"}'] == 3
    assert s['jobreport_last_outcome{outcome="failure"}'] == 1
    # the next run starts a new store, which takes over the gateway's counters first
    with job_metrics("swap", config=config):
        pass
    after = gateway.samples("swap", instance="h1")
    assert after['jobreport_runs_total{outcome="success"}'] == 4
    assert after["jobreport_last_success_timestamp_seconds"] > \
        s["jobreport_last_success_timestamp_seconds"]


def test_a_store_removed_between_runs_does_not_lower_the_counters(
        gateway: Gateway, tmp_path: Path) -> None:
    """The store file removed between two runs: the next run creates a new store, which
    adopts the counters and last success the gateway holds before its first PUT."""
    db = tmp_path / "s.db"
    env = cli_env(JOBREPORT_GATEWAY=gateway.url, JOBREPORT_DB=f"sqlite:///{db}",
                  JOBREPORT_INSTANCE="h1")
    for command in (["true"], ["true"], ["false"]):
        run_cli(["run", "--job", "gone", "--", *command], env)
    before = gateway.samples("gone", instance="h1")
    for suffix in ("", "-wal", "-shm"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)
    assert run_cli(["run", "--job", "gone", "--", "false"], env).returncode == 1
    s = gateway.samples("gone", instance="h1")
    assert s['jobreport_runs_total{outcome="success"}'] == 2
    assert s['jobreport_runs_total{outcome="failure"}'] == 2
    assert s["jobreport_last_success_timestamp_seconds"] == \
        before["jobreport_last_success_timestamp_seconds"]
    assert run_cli(["run", "--job", "gone", "--", "true"], env).returncode == 0
    assert gateway.samples("gone", instance="h1")['jobreport_runs_total{outcome="success"}'] == 3


# --- older stores ---------------------------------------------------------------------

_V1 = [
    "CREATE TABLE jobreport_counts ( group_key VARCHAR(2048) NOT NULL, outcome VARCHAR(32) "
    "NOT NULL, n INTEGER NOT NULL, PRIMARY KEY (group_key, outcome) )",
    "CREATE TABLE jobreport_groups ( group_key VARCHAR(2048) NOT NULL, job VARCHAR(1024) NOT "
    "NULL, seq INTEGER NOT NULL, delivered_seq INTEGER NOT NULL, last_heartbeat DOUBLE, "
    "last_success DOUBLE, last_failure DOUBLE, last_size DOUBLE, last_size_at DOUBLE, "
    "last_items DOUBLE, last_items_at DOUBLE, last_error TEXT, last_attempt DOUBLE, "
    "PRIMARY KEY (group_key) )",
    'CREATE TABLE jobreport_meta ( "key" VARCHAR(64) NOT NULL, value TEXT, PRIMARY KEY ("key") )',
    "CREATE TABLE jobreport_runs ( id INTEGER NOT NULL, group_key VARCHAR(2048) NOT NULL, job "
    "VARCHAR(1024) NOT NULL, host VARCHAR(255) NOT NULL, pid INTEGER, pid_start DOUBLE, "
    "started DOUBLE NOT NULL, ended DOUBLE, duration DOUBLE, outcome VARCHAR(32), exit_code "
    "INTEGER, size DOUBLE, items DOUBLE, cpu_seconds DOUBLE, max_rss_bytes DOUBLE, "
    "expected_interval DOUBLE, max_runtime DOUBLE, command TEXT, tail TEXT, custom TEXT, "
    "closed_seq INTEGER, uid VARCHAR(32), PRIMARY KEY (id) )",
    "INSERT INTO jobreport_meta VALUES ('schema_version', '1')",
    "INSERT INTO jobreport_groups (group_key, job, seq, delivered_seq, last_success) "
    """VALUES ('{"instance":"h1","job":"a"}', 'a', 2, 2, 100.0), """
    """('{"instance":"h1","job":"b"}', 'b', 2, 1, 100.0)""",
    "INSERT INTO jobreport_counts VALUES ('{\"instance\":\"h1\",\"job\":\"b\"}', 'success', 1)",
    "INSERT INTO jobreport_runs (group_key, job, host, started, ended, duration, outcome, "
    """exit_code, closed_seq) VALUES ('{"instance":"h1","job":"b"}', 'b', 'h1', 99.0, 100.0, """
    "1.0, 'success', 0, 2)",
]


def test_a_schema_1_store_is_migrated_in_place(gateway: Gateway, tmp_path: Path) -> None:
    """A store written by the previous jobreport keeps its history and its pending groups:
    the delivered marks become the Pushgateway sink's marks."""
    path = tmp_path / "old.db"
    with sqlite3.connect(path) as conn:
        for statement in _V1:
            conn.execute(statement)
    store = Store(f"sqlite:///{path}")
    assert store.schema_version() == SCHEMA_VERSION
    assert [p.job for p in store.pending()] == ["b"]
    [run] = store.history("b")
    assert run.outcome == "success" and run.ended == 100.0
    config = config_for(gateway.url, tmp_path, db=f"sqlite:///{path}")
    assert flush(config).groups == 1
    s = gateway.samples("b", instance="h1")
    assert s['jobreport_runs_total{outcome="success"}'] == 1
    assert store.pending() == []


# --- seen by a real Prometheus ----------------------------------------------------------


@pytest.mark.integration
def test_prometheus_never_sees_the_group_vanish_or_go_back(tmp_path: Path) -> None:
    """A real Prometheus scrapes the gateway every second while runs (with start pushes and
    heartbeats) come and go: in every successful scrape the group is there, its last
    success never moves back and runs_total never decreases."""
    from tests import servers
    from tests.monitoring_helpers import prom_query, prometheus_test_config, wait_for

    gateway = servers.pushgateway(tmp_path / "pg").start()
    prom = None
    try:
        config_path = prometheus_test_config(tmp_path / "prometheus.yml",
                                             gateway_port=gateway.port, rule_files=())
        prom = servers.prometheus(tmp_path / "prometheus", config_path).start()
        wait_for("Prometheus scraping the Pushgateway",
                 lambda: prom_query(prom.url, 'up{job="pushgateway"} == 1')["data"]["result"],
                 timeout=120)
        config = config_for(gateway.url, tmp_path)
        with job_metrics("flap", config=config):
            pass
        first = time.time()

        def scrapes_since_first() -> float:
            window = f"[{max(1, int(time.time() - first))}s]"
            result = prom_query(prom.url, f'sum_over_time(up{{job="pushgateway"}}{window})')
            return sum(float(r["value"][1]) for r in result["data"]["result"])

        held = Gateway(gateway)

        def started_and_beating(since: float) -> bool:
            """The run's start push and one of its heartbeats have landed."""
            s = held.samples("flap", instance="h1")
            return (s["jobreport_running"] == 1
                    and s.get("jobreport_last_heartbeat_timestamp_seconds", 0.0) >= since)

        deadline = time.monotonic() + 120
        n = 0
        # runs come and go until Prometheus has scraped them a dozen times (about 12 s on a
        # quiet machine; a busy one takes longer), bounded
        while scrapes_since_first() < 12 and time.monotonic() < deadline:
            n += 1
            try:
                with job_metrics("flap", config=config, heartbeat="0.2s",
                                 expect_every="1h" if n % 2 else None) as job:
                    began = time.time()
                    if n % 3:
                        job.gauge("flap_n", n)  # a family that comes and goes
                    wait_for("the run's start push and a heartbeat",
                             lambda: started_and_beating(began), timeout=60, interval=0.05)
                    if n % 4 == 0:
                        raise RuntimeError("a failing run")
            except RuntimeError:
                pass
        last = time.time()
        wait_for("two more scrapes", lambda: time.time() > last + 2.5, timeout=10)
        window = f"[{int(time.time() - first) + 2}s]"

        def samples(expr: str) -> dict[float, float]:
            result = prom_query(prom.url, expr + window)["data"]["result"]
            assert len(result) == 1, (expr, result)
            return {float(t): float(v) for t, v in result[0]["values"]}

        up = {t for t, v in samples('up{job="pushgateway"}').items() if v == 1 and t >= first}
        success = samples('jobreport_last_success_timestamp_seconds{job="flap"}')
        runs = samples('jobreport_runs_total{job="flap",outcome="success"}')
        assert len(up) >= 8  # the machine may be slow, but Prometheus did scrape
        assert up <= set(success) and up <= set(runs), "the group vanished from a scrape"
        for series in (success, runs):
            values = [series[t] for t in sorted(series)]
            assert values == sorted(values), "a value went back"
        assert max(runs.values()) > min(runs.values())
    finally:
        if prom is not None:
            prom.stop()
        gateway.stop()
