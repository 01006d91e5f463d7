"""Delivery later: runs recorded while the gateway was down reach it with `flush`."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from jobreport import flush, job_metrics, load_config
from jobreport.errors import DeliveryError
from jobreport.store.store import Store
from tests import servers
from tests.conftest import Gateway


def push_count(gateway: Gateway) -> int:
    """Pushes the gateway took, PUT (complete state, with a store) and POST alike."""
    found = re.findall(r'pushgateway_http_push_size_bytes_count\{method="(?:post|put)"\} (\d+)',
                       gateway.metrics_text())
    return sum(int(n) for n in found)


@pytest.fixture
def down_then_up(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    """A gateway address with nothing listening yet; call .start() to bring it up.

    While it is down the budgets are short (refused pushes: they only keep the test
    short); once it is up, pushes must land, so they get budgets for a busy machine."""
    server = servers.pushgateway(tmp_path / "pg")
    monkeypatch.setenv("JOBREPORT_GATEWAY", server.url)
    monkeypatch.setenv("JOBREPORT_DB", f"sqlite:///{tmp_path / 's.db'}")
    monkeypatch.setenv("JOBREPORT_INSTANCE", "h1")
    monkeypatch.setenv("JOBREPORT_BUDGET", "0.5s")
    monkeypatch.setenv("JOBREPORT_START_BUDGET", "0.2s")
    start = server.start

    def start_with_live_budgets() -> servers.Server:
        monkeypatch.setenv("JOBREPORT_BUDGET", "60s")
        monkeypatch.setenv("JOBREPORT_TIMEOUT", "10s")
        monkeypatch.setenv("JOBREPORT_START_BUDGET", "5s")
        return start()

    monkeypatch.setattr(server, "start", start_with_live_budgets)
    yield server
    server.stop()


def test_gateway_down_then_flush_delivers(down_then_up: servers.Server) -> None:
    """Runs made while the gateway was down arrive with one push per group."""
    for _ in range(3):
        with job_metrics("a"):
            pass
    with pytest.raises(ValueError), job_metrics("a"):
        raise ValueError
    with job_metrics("b") as job:
        job.set_size(42)
    store = Store(load_config().db)
    pending = {g.job: g.pending_runs for g in store.pending()}
    assert pending == {"a": 4, "b": 1}

    down_then_up.start()
    gateway = Gateway(down_then_up)
    result = flush()
    assert (result.groups, result.runs, result.failed) == (2, 5, [])
    assert push_count(gateway) == 2  # one push per group, however many runs
    a = gateway.samples("a", instance="h1")
    assert a['jobreport_runs_total{outcome="success"}'] == 3
    assert a['jobreport_runs_total{outcome="failure"}'] == 1
    assert a["jobreport_last_run_success"] == 0
    assert a["jobreport_last_success_timestamp_seconds"] < a[
        "jobreport_last_failure_timestamp_seconds"]
    assert gateway.samples("b")["jobreport_last_size_bytes"] == 42
    assert store.pending() == []
    assert flush().groups == 0  # nothing left to deliver


def test_flush_after_newer_run_never_moves_state_back(down_then_up: servers.Server) -> None:
    """A flush after a newer run pushes the newest state, never the older pending one."""
    with pytest.raises(OSError), job_metrics("c"):
        raise OSError("first run fails while the gateway is down")
    down_then_up.start()
    gateway = Gateway(down_then_up)
    with job_metrics("c"):  # newer run, delivered directly with the whole state
        pass
    newest = gateway.samples("c")
    assert newest['jobreport_runs_total{outcome="failure"}'] == 1
    assert newest["jobreport_last_run_success"] == 1
    result = flush()
    assert result.groups == 0
    assert gateway.samples("c") == newest


def test_restarted_gateway_without_persistence_is_restored(gateway: Gateway,
                                                           monkeypatch: pytest.MonkeyPatch,
                                                           tmp_path: Path) -> None:
    """A gateway that lost its data gets the group's full state back with the next run."""
    monkeypatch.setenv("JOBREPORT_GATEWAY", gateway.url)
    monkeypatch.setenv("JOBREPORT_DB", f"sqlite:///{tmp_path / 's.db'}")
    with job_metrics("d"):
        pass
    success = gateway.samples("d")["jobreport_last_success_timestamp_seconds"]
    gateway.restart()
    assert [g for g in gateway.groups() if g["labels"]["job"] == "d"] == []
    with pytest.raises(KeyError), job_metrics("d"):
        raise KeyError
    s = gateway.samples("d")
    assert s["jobreport_last_success_timestamp_seconds"] == success
    assert s['jobreport_runs_total{outcome="success"}'] == 1
    assert s['jobreport_runs_total{outcome="failure"}'] == 1


def test_no_gateway_configured_records_and_says_so(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, caplog: pytest.LogCaptureFixture,
    gateway: Gateway,
) -> None:
    """The out-of-the-box default: no gateway, runs kept, a notice, delivered by flush."""
    monkeypatch.setenv("JOBREPORT_DB", f"sqlite:///{tmp_path / 's.db'}")
    with job_metrics("later"):
        pass
    assert any("no Pushgateway configured" in r.getMessage() for r in caplog.records)
    with pytest.raises(DeliveryError, match="JOBREPORT_GATEWAY"):
        flush()
    result = flush(load_config(gateway=gateway.url))
    assert result.groups == 1
    assert gateway.samples("later")["jobreport_last_run_success"] == 1


def test_flush_reports_failures(down_then_up: servers.Server) -> None:
    """A flush while the gateway is still down names the failed groups and keeps them."""
    with job_metrics("e"):
        pass
    result = flush()
    assert result.groups == 0 and len(result.failed) == 1
    assert "cannot reach the Pushgateway" in result.failed[0][1]
    assert len(Store(load_config().db).pending()) == 1


def test_flush_all_restores_a_gateway_that_lost_its_data(gateway: Gateway,
                                                          monkeypatch: pytest.MonkeyPatch,
                                                          tmp_path: Path) -> None:
    """flush(all_groups=True) re-pushes every group, pending or not."""
    monkeypatch.setenv("JOBREPORT_GATEWAY", gateway.url)
    monkeypatch.setenv("JOBREPORT_DB", f"sqlite:///{tmp_path / 's.db'}")
    for job in ("x", "y"):
        with job_metrics(job):
            pass
    before = gateway.samples("x")
    gateway.restart()
    assert flush().groups == 0  # nothing pending: a plain flush cannot know
    result = flush(all_groups=True)
    assert result.groups == 2 and result.failed == []
    after = gateway.samples("x")
    assert {k: v for k, v in after.items() if not k.startswith("push_")} == {
        k: v for k, v in before.items() if not k.startswith("push_")}
    assert gateway.samples("y")["jobreport_last_run_success"] == 1
