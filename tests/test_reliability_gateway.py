"""Gateway faults with the library (``job_metrics``): the job's outcome is intact, every run
is in the store, and once the gateway is back it holds the group's whole state.

Faults: refused connections, a gateway that accepts and never answers, 500/502/503 then
recovery, 400 (not retried, the gateway's text shown, not queued forever), a gateway that
drops the connection mid-push, and a real Pushgateway restarted without persistence.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.core import Metric

from jobreport import flush, job_metrics, load_config
from jobreport.config import Config
from jobreport.store.store import Store
from tests import servers
from tests.conftest import Gateway
from tests.faults import FaultProxy, SilentServer, assert_no_traceback

# Pushes that must land (on the real gateway, or through the proxy to it) get budgets for
# a busy machine; the short defaults of config_for are only for pushes meant to fail, where
# they keep the test short and decide nothing.
LIVE: dict[str, Any] = {"budget": "60s", "timeout": "10s"}


def live(config: Config, **changes: Any) -> Config:
    """``config`` with the budgets of LIVE, for a push that must land."""
    return config.with_overrides(budget=60.0, timeout=10.0, **changes)


def config_for(url: str, tmp_path: Path, **settings: Any) -> Config:
    values: dict[str, Any] = {"budget": "1s", "start_budget": "0.2s", "timeout": "1s"}
    values.update(settings)
    return load_config(env={}, gateway=url, db=f"sqlite:///{tmp_path / 'store.db'}",
                       instance="h1", **values)


def three_runs(config: Config) -> list[str]:
    """Two successes (the second with a size) and one failure; returns the outcomes seen."""
    outcomes = []
    with job_metrics("nightly", config=config) as job:
        pass
    outcomes.append(job.outcome)
    with job_metrics("nightly", config=config) as job:
        job.set_size(1234)
        job.gauge("nightly_rows", 7)
    outcomes.append(job.outcome)
    error = RuntimeError("disk full")
    with pytest.raises(RuntimeError) as raised, job_metrics("nightly", config=config) as job:
        raise error
    assert raised.value is error  # re-raised unchanged
    outcomes.append(job.outcome)
    return [str(o) for o in outcomes]


def assert_whole_state(gateway: Gateway, store: Store) -> None:
    """The gateway holds what the store knows about group nightly/h1."""
    runs = store.history("nightly", limit=None)
    s = gateway.samples("nightly", instance="h1")
    for outcome in ("success", "failure"):
        assert s[f'jobreport_runs_total{{outcome="{outcome}"}}'] == sum(
            r.outcome == outcome for r in runs)
    successes = [r.ended for r in runs if r.outcome == "success" and r.ended is not None]
    failures = [r.ended for r in runs if r.outcome == "failure" and r.ended is not None]
    assert s["jobreport_last_success_timestamp_seconds"] == pytest.approx(max(successes))
    if failures:
        assert s["jobreport_last_failure_timestamp_seconds"] == pytest.approx(max(failures))
    newest = max(runs, key=lambda r: (r.ended or 0, r.id))
    assert s["jobreport_last_exit_code"] == newest.exit_code
    assert s["jobreport_last_run_success"] == (1 if newest.outcome == "success" else 0)
    assert s[f'jobreport_last_outcome{{outcome="{newest.outcome}"}}'] == 1
    assert s["jobreport_last_size_bytes"] == 1234
    assert s["jobreport_running"] == 0
    assert not store.pending()


@pytest.fixture
def later_gateway(tmp_path: Path) -> Iterator[servers.Server]:
    """A Pushgateway address with nothing listening yet (connections are refused)."""
    server = servers.pushgateway(tmp_path / "pg")
    yield server
    server.stop()


def test_refused_connections_keep_every_run_for_flush(
        later_gateway: servers.Server, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Refused connections: outcomes intact, runs kept, one clear warning; flush delivers."""
    config = config_for(later_gateway.url, tmp_path)
    with caplog.at_level(logging.WARNING, logger="jobreport"):
        assert three_runs(config) == ["success", "success", "failure"]
    store = Store(config.db)
    assert [r.outcome for r in store.history("nightly", limit=None)] == [
        "failure", "success", "success"]
    [pending] = store.pending()
    assert pending.pending_runs == 3
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert any("connection refused" in w and "kept in the store" in w for w in warnings), warnings
    assert_no_traceback(caplog.text)

    later_gateway.start()
    result = flush(live(config))
    assert (result.groups, result.runs, result.failed) == (1, 3, [])
    assert_whole_state(Gateway(later_gateway), store)


def test_gateway_that_never_answers(
        gateway: Gateway, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A gateway that accepts and never answers: the body's outcome stands, the run is kept,
    the warning says the gateway did not answer, and a flush to a live gateway delivers."""
    with SilentServer() as silent, caplog.at_level(logging.WARNING, logger="jobreport"):
        config = config_for(silent.url, tmp_path)
        assert three_runs(config) == ["success", "success", "failure"]
        assert silent.accepted  # the pushes really went there
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert any("did not answer" in w for w in warnings), warnings
    assert_no_traceback(caplog.text)
    store = Store(config.db)
    assert store.pending()[0].pending_runs == 3

    result = flush(live(config, gateway=gateway.url))
    assert result.ok and result.runs == 3
    assert_whole_state(gateway, store)


def test_5xx_then_recovery_is_retried_within_the_budget(
        gateway: Gateway, tmp_path: Path) -> None:
    """503, 502, 500, then the real gateway: the end push is retried until it lands."""
    with FaultProxy(gateway.url) as proxy:
        config = config_for(proxy.url, tmp_path, **LIVE)
        three_runs(config)
        proxy.script = [503, 502, 500]
        with job_metrics("nightly", config=config) as job:
            pass
        assert job.outcome == "success"
    entries = [entry for _, _, entry in proxy.requests]
    assert [e for e in entries if e != "forward"] == [503, 502, 500]
    assert entries[-1] == "forward"
    assert_whole_state(gateway, Store(config.db))


def test_dropped_connection_mid_push_is_retried(gateway: Gateway, tmp_path: Path) -> None:
    """A gateway that dies while a push is in flight (connection closed, no answer)."""
    with FaultProxy(gateway.url) as proxy:
        config = config_for(proxy.url, tmp_path, **LIVE)
        three_runs(config)
        proxy.script = ["drop", "drop"]
        with job_metrics("nightly", config=config):
            pass
    assert [e for _, _, e in proxy.requests].count("drop") == 2
    assert_whole_state(gateway, Store(config.db))


def test_400_is_shown_not_retried_and_kept_pending(
        gateway: Gateway, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A 400 is not retried within a push: one attempt, the gateway's own text in the
    warning; the group stays pending with the error recorded (a later flush tries again),
    and the next accepted push carries every run."""
    text = "pushed metrics are invalid or inconsistent with existing metrics: test says no"
    with FaultProxy(gateway.url, body=text) as proxy:
        config = config_for(proxy.url, tmp_path, **LIVE)
        proxy.script = [400] * 10
        with caplog.at_level(logging.WARNING, logger="jobreport"), \
                job_metrics("nightly", config=config) as job:
            job.set_size(1234)
        assert job.outcome == "success"
        rejected = [e for _, _, e in proxy.requests if e == 400]
        assert 1 <= len(rejected) <= 2  # the end push (and maybe the start push), no retries
        warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
        assert any("test says no" in w and "400" in w for w in warnings), warnings
        assert_no_traceback(caplog.text)
        store = Store(config.db)
        [pending] = store.pending()  # kept, with the error recorded
        assert pending.last_error is not None and "test says no" in pending.last_error
        assert flush(config).groups == 0  # rejected again
        proxy.script = []
        with job_metrics("nightly", config=config):
            pass
    s = gateway.samples("nightly", instance="h1")
    assert s['jobreport_runs_total{outcome="success"}'] == 2  # the rejected run is counted
    assert s["jobreport_last_size_bytes"] == 1234


class _CounterNamedLikeAGauge:
    def collect(self) -> Iterator[Metric]:
        metric = Metric("shared_metric", "a counter", "counter")
        metric.add_sample("shared_metric", {}, 1.0)
        yield metric


def test_real_400_from_inconsistent_metrics(
        gateway: Gateway, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """The real Pushgateway rejects a push whose metric type clashes with another group's:
    the job still succeeds, the gateway's text is shown, the group is pushed again without
    the offending family (last success and outcome land), and stays pending, flagged."""
    config = config_for(gateway.url, tmp_path, **LIVE)
    with job_metrics("first", config=config) as job:
        job.gauge("shared_metric", 1)
    with caplog.at_level(logging.WARNING, logger="jobreport"), \
            job_metrics("second", config=config) as job:
        job.register(_CounterNamedLikeAGauge())
    assert job.outcome == "success"
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert any("inconsistent with existing metrics" in w for w in warnings), warnings
    assert_no_traceback(caplog.text)
    store = Store(config.db)
    assert [r.outcome for r in store.history("second")] == ["success"]
    [pending] = store.pending()
    assert pending.job == "second" and "shared_metric" in (pending.last_error or "")
    assert any("rejected the families shared_metric" in w for w in warnings), warnings
    second = gateway.samples("second", instance="h1")
    assert second['jobreport_last_outcome{outcome="success"}'] == 1
    assert second["jobreport_last_success_timestamp_seconds"] > 0
    assert "shared_metric" not in second
    # and JobreportPushFailing still fires: the failure is recorded after the last success
    assert second["push_failure_time_seconds"] > second["push_time_seconds"]
    assert gateway.samples("first")["shared_metric"] == 1  # the other group is untouched


def test_restart_without_persistence_next_run_restores_whole_state(
        gateway: Gateway, tmp_path: Path) -> None:
    """A Pushgateway restarted without persistence forgets every group; the next run pushes
    the group's whole history-derived state, not just its own."""
    config = config_for(gateway.url, tmp_path, **LIVE)
    three_runs(config)
    store = Store(config.db)
    assert_whole_state(gateway, store)
    gateway.restart()
    assert gateway.groups() == []
    error = ValueError("again")
    with pytest.raises(ValueError), job_metrics("nightly", config=config):
        raise error
    assert_whole_state(gateway, store)  # last success, size, counters all back


def test_gateway_restarting_during_a_stream_of_runs(gateway: Gateway, tmp_path: Path) -> None:
    """The gateway restarts (no persistence) while runs go on: pushes during the outage are
    retried, and in the end the gateway holds every run."""
    # the budget covers a restart of the gateway on a busy machine (pushes are refused
    # meanwhile and retried)
    config = config_for(gateway.url, tmp_path, budget="90s", timeout="10s")
    third_done = threading.Event()
    restarted = threading.Event()

    def restart() -> None:
        if third_done.wait(60):
            gateway.restart()
            restarted.set()

    thread = threading.Thread(target=restart, daemon=True)
    thread.start()
    with job_metrics("nightly", config=config) as job:
        job.set_size(1234)
    for i in range(7):
        if i == 2:
            third_done.set()
        with job_metrics("nightly", config=config):
            pass
    thread.join(60)
    assert restarted.is_set()
    with job_metrics("nightly", config=config):
        pass
    store = Store(config.db)
    assert len(store.history("nightly", limit=None)) == 9
    assert_whole_state(gateway, store)
