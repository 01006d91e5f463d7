"""End to end through real programs, one test per path of issue 13:

(a) jobreport -> Prometheus (``--web.enable-remote-write-receiver``, the remote-write rules)
    -> Alertmanager -> a webhook;
(b) jobreport -> VictoriaMetrics -> vmalert (the same rules) -> Alertmanager;
(c) jobreport -> vmagent (disk buffer) -> VictoriaMetrics, stopped for a while: no run lost;
(d) jobreport -> textfile -> node_exporter -> Prometheus (the textfile rules) -> Alertmanager.

In each, a failed job alerts, an overdue job alerts and a fresh job raises nothing; after one
sink's outage, ``jobreport flush`` delivers to that sink alone (the Pushgateway, configured
beside it, receives nothing more). Evaluation every second; every wait is bounded.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests import servers
from tests.monitoring_helpers import WebhookReceiver, prom_get, prom_query, wait_for, write_yaml

pytestmark = pytest.mark.integration  # starts servers itself

JOBREPORT = [sys.executable, "-m", "jobreport"]
#: Ceiling of a wait for data to arrive in a receiver (seconds when quiet).
WAIT = 120.0
ALERT_WAIT = 90.0  # a ceiling for a busy machine; alerts come within seconds when quiet
LOOKBACK = "10m"


@dataclass
class Alerting:
    alertmanager: servers.Server
    webhook: WebhookReceiver

    def firing(self, alert: str, job: str) -> bool:
        return self.webhook.first("firing", alertname=alert, job=job) is not None

    def jobs_alerted(self) -> set[str]:
        return {a["labels"].get("job", "") for _n, a in self.webhook.received()}


@pytest.fixture
def alerting(tmp_path: Path) -> Iterator[Alerting]:
    """An Alertmanager that sends every alert to a webhook in this test, 1 s group waits."""
    webhook = WebhookReceiver().start()
    config = write_yaml(tmp_path / "alertmanager.yml", {
        "route": {"receiver": "hook", "group_by": ["alertname", "job"], "group_wait": "1s",
                  "group_interval": "1s", "repeat_interval": "1h"},
        "receivers": [{"name": "hook", "webhook_configs": [
            {"url": f"{webhook.url}/hook", "send_resolved": True}]}],
    })
    am = servers.alertmanager(tmp_path / "alertmanager", config).start()
    try:
        yield Alerting(am, webhook)
    finally:
        am.stop()
        webhook.stop()


@pytest.fixture
def gateway_server(tmp_path: Path) -> Iterator[servers.Server]:
    server = servers.pushgateway(tmp_path / "pushgateway").start()
    try:
        yield server
    finally:
        server.stop()


def jobreport(*args: str, env: dict[str, str] | None = None,
              timeout: float = 60) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([*JOBREPORT, *args], env={**os.environ, **(env or {})}, text=True,
                          capture_output=True, timeout=timeout, check=False)
    print(f"$ jobreport {' '.join(args)}\n{proc.stdout}{proc.stderr}-> {proc.returncode}")
    return proc


def rules_file(path: Path, sink: str) -> Path:
    proc = jobreport("rules", "--sink", sink, "--lookback", LOOKBACK)
    assert proc.returncode == 0, proc.stderr
    path.write_text(proc.stdout)
    return path


def run_three_jobs(sink_args: list[str], env: dict[str, str]) -> None:
    """A failing job, a job that will be overdue in about a second, a fresh job, and one
    that succeeds with an empty output."""
    assert jobreport("run", "--job", "empty", "--expect-every", "1h", "--min-size", "1kB",
                     *sink_args, "--", "sh", "-c",
                     'echo "jobreport_last_size_bytes 0" >> "$JOBREPORT_METRICS_FILE"',
                     env=env).returncode == 0
    assert jobreport("run", "--job", "failing", "--expect-every", "1h", *sink_args,
                     "--", "sh", "-c", "exit 3", env=env).returncode == 3
    assert jobreport("run", "--job", "late", "--expect-every", "1s", *sink_args,
                     "--", "true", env=env).returncode == 0
    assert jobreport("run", "--job", "fresh", "--expect-every", "1h", *sink_args,
                     "--", "true", env=env).returncode == 0


def assert_alerts(alerting: Alerting) -> None:
    """Failed for the failing job, Overdue for the late one, OutputTooSmall for the empty
    one, nothing about the fresh one."""
    wait_for("JobreportJobFailed for job failing",
             lambda: alerting.firing("JobreportJobFailed", "failing"), timeout=ALERT_WAIT)
    wait_for("JobreportJobOutputTooSmall for job empty",
             lambda: alerting.firing("JobreportJobOutputTooSmall", "empty"),
             timeout=ALERT_WAIT)
    wait_for("JobreportJobOverdue for job late",
             lambda: alerting.firing("JobreportJobOverdue", "late"), timeout=ALERT_WAIT)
    assert "fresh" not in alerting.jobs_alerted(), alerting.webhook.received()


def gateway_pushes(gateway: servers.Server) -> float:
    """How many pushes (any method) the Pushgateway has accepted."""
    with urllib.request.urlopen(gateway.url + "/metrics", timeout=5) as r:
        text = r.read().decode()
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith("pushgateway_http_push_size_bytes_count"))


def prom_value(url: str, expr: str) -> float | None:
    result = prom_query(url, expr)["data"]["result"]
    return float(result[0]["value"][1]) if result else None


def base_env(tmp_path: Path, gateway: servers.Server | None = None) -> dict[str, str]:
    """The store in tmp_path, short budgets, and the Pushgateway as a second sink."""
    env = {"JOBREPORT_DB": str(tmp_path / "store.db"), "JOBREPORT_BUDGET": "3",
           "JOBREPORT_START_BUDGET": "0.5"}
    if gateway is not None:
        env["JOBREPORT_GATEWAY"] = gateway.url
    return env


def outage_then_flush(*, sink_args: list[str], env: dict[str, str], gateway: servers.Server,
                      stop: Any, start: Any, count: Any) -> None:
    """Run a job while one sink is down: the Pushgateway gets it at once; after the sink is
    back, `jobreport flush` delivers to that sink alone."""
    assert env["JOBREPORT_GATEWAY"] == gateway.url
    assert "nothing to deliver" in jobreport("flush", *sink_args, env=env).stdout
    before = count()
    pushed = gateway_pushes(gateway)
    stop()
    proc = jobreport("run", "--job", "outage", "--expect-every", "1h", *sink_args, "--",
                     "true", env=env)
    assert proc.returncode == 0
    assert gateway_pushes(gateway) > pushed  # the gateway was not held back by the other sink
    pushed = gateway_pushes(gateway)
    start()
    flushed = jobreport("flush", *sink_args, env=env)
    assert flushed.returncode == 0, flushed.stderr
    assert "pushgateway: 0 group(s)" in flushed.stdout
    wait_for("the flushed run in the sink", lambda: count() > before, timeout=WAIT)
    assert gateway_pushes(gateway) == pushed  # flush delivered to the missing sink only


# --- (a) Prometheus as remote-write receiver -----------------------------------------


def test_remote_write_to_prometheus_alerts_and_flush_after_outage(
        tmp_path: Path, alerting: Alerting, gateway_server: servers.Server) -> None:
    """(a) Samples written into Prometheus raise Failed and Overdue through the
    remote-write rules; a fresh job raises nothing; flush fills an outage."""
    rules = rules_file(tmp_path / "rules.yml", "remote-write")
    config = write_yaml(tmp_path / "prometheus.yml", {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(rules)],
        "alerting": {"alertmanagers": [{"static_configs": [
            {"targets": [f"127.0.0.1:{alerting.alertmanager.port}"]}]}]},
    })
    prometheus = servers.prometheus(tmp_path / "prometheus", config,
                                    extra=["--web.enable-remote-write-receiver"]).start()
    try:
        url = prometheus.url
        wait_for("Prometheus knowing the Alertmanager",
                 lambda: prom_get(url, "/api/v1/alertmanagers")["data"]["activeAlertmanagers"],
                 timeout=WAIT)
        env = base_env(tmp_path, gateway_server)
        sink = ["--remote-write", f"{url}/api/v1/write"]
        run_three_jobs(sink, env)
        got = prom_value(url, 'jobreport_runs_total{job="failing",outcome="failure"}')
        assert got == 1.0
        assert prom_value(url, 'jobreport_last_exit_code{job="failing"}') == 3.0
        assert_alerts(alerting)

        outage_then_flush(
            sink_args=sink, env=env, gateway=gateway_server, stop=prometheus.stop,
            start=prometheus.start,
            count=lambda: prom_value(url, 'jobreport_runs_total{job="outage",'
                                          'outcome="success"}') or 0.0)
    finally:
        prometheus.stop()


# --- (b) VictoriaMetrics and vmalert -------------------------------------------------


def vm_value(url: str, expr: str) -> float | None:
    result = prom_query(url, expr).get("data", {}).get("result", [])
    return float(result[0]["value"][1]) if result else None


def test_remote_write_to_victoria_metrics_with_vmalert(
        tmp_path: Path, alerting: Alerting, gateway_server: servers.Server) -> None:
    """(b) VictoriaMetrics stores the samples, vmalert evaluates the same remote-write rules
    and Alertmanager gets Failed and Overdue, nothing for the fresh job."""
    vm = servers.victoria_metrics(tmp_path / "vm").start()
    vmalert: servers.Server | None = None
    try:
        rules = rules_file(tmp_path / "rules.yml", "remote-write")
        vmalert = servers.vmalert(tmp_path / "vmalert", [rules], datasource=vm.url,
                                  notifier=alerting.alertmanager.url).start()
        env = base_env(tmp_path, gateway_server)
        sink = ["--remote-write", f"{vm.url}/api/v1/write"]
        run_three_jobs(sink, env)
        wait_for("the failing job in VictoriaMetrics",
                 lambda: vm_value(vm.url, 'jobreport_last_exit_code{job="failing"}') == 3.0,
                 timeout=WAIT)
        assert_alerts(alerting)

        outage_then_flush(
            sink_args=sink, env=env, gateway=gateway_server, stop=vm.stop, start=vm.start,
            count=lambda: vm_value(vm.url, 'jobreport_runs_total{job="outage",'
                                           'outcome="success"}') or 0.0)
    finally:
        if vmalert is not None:
            vmalert.stop()
        vm.stop()


# --- (c) vmagent's disk buffer -------------------------------------------------------


def vm_export(url: str, match: str) -> list[dict[str, Any]]:
    query = urllib.parse.urlencode({"match[]": match})
    with urllib.request.urlopen(f"{url}/api/v1/export?{query}", timeout=10) as r:
        return [json.loads(line) for line in r.read().decode().splitlines() if line.strip()]


def test_vmagent_buffers_while_victoria_metrics_is_down_and_no_run_is_lost(
        tmp_path: Path) -> None:
    """(c) With VictoriaMetrics stopped, runs go to vmagent, which keeps them on disk; once
    VictoriaMetrics is back every run's end is there and the counter counts all of them."""
    vm = servers.victoria_metrics(tmp_path / "vm").start()
    agent = servers.vmagent(tmp_path / "vmagent", f"{vm.url}/api/v1/write").start()
    try:
        env = base_env(tmp_path)
        sink = ["--remote-write", f"{agent.url}/api/v1/write"]
        assert jobreport("run", "--job", "buffered", *sink, "--", "true",
                         env=env).returncode == 0
        wait_for("the first run in VictoriaMetrics",
                 lambda: vm_value(vm.url, 'jobreport_runs_total{job="buffered",'
                                          'outcome="success"}') == 1.0, timeout=WAIT)
        vm.stop()
        for _ in range(3):
            assert jobreport("run", "--job", "buffered", *sink, "--", "true",
                             env=env).returncode == 0
        # vmagent took every run: nothing is pending for jobreport to flush
        assert jobreport("flush", *sink, env=env).returncode == 0
        vm.start()
        wait_for("all four runs in VictoriaMetrics",
                 lambda: vm_value(vm.url, 'jobreport_runs_total{job="buffered",'
                                          'outcome="success"}') == 4.0, timeout=WAIT)

        def ends() -> set[float]:
            return {v for s in vm_export(vm.url, 'jobreport_last_end_timestamp_seconds'
                                                 '{job="buffered"}') for v in s["values"]}

        # each run's own end time, none lost (VictoriaMetrics makes fresh data searchable
        # within about a second, not all at once)
        wait_for("every run's end in VictoriaMetrics", lambda: len(ends()) == 4, timeout=WAIT)
        assert len(ends()) == 4
    finally:
        agent.stop()
        vm.stop()


# --- (d) textfile and node_exporter --------------------------------------------------


def test_textfile_through_node_exporter_alerts_and_flush_after_outage(
        tmp_path: Path, alerting: Alerting, gateway_server: servers.Server) -> None:
    """(d) Files in the textfile directory reach Prometheus through node_exporter (no
    instance of their own: the target's), the textfile rules alert; a directory that was
    gone is filled by flush."""
    textfiles = tmp_path / "textfile"
    textfiles.mkdir()
    node = servers.node_exporter(tmp_path / "node", textfiles).start()
    rules = rules_file(tmp_path / "rules.yml", "textfile")
    config = write_yaml(tmp_path / "prometheus.yml", {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(rules)],
        "alerting": {"alertmanagers": [{"static_configs": [
            {"targets": [f"127.0.0.1:{alerting.alertmanager.port}"]}]}]},
        "scrape_configs": [{"job_name": "node", "honor_labels": True,
                            "static_configs": [{"targets": [f"127.0.0.1:{node.port}"]}]}],
    })
    prometheus = servers.prometheus(tmp_path / "prometheus", config).start()
    try:
        url = prometheus.url
        env = base_env(tmp_path, gateway_server)
        sink = ["--textfile-dir", str(textfiles)]
        run_three_jobs(sink, env)
        wait_for("the failing job scraped from node_exporter",
                 lambda: prom_value(url, 'jobreport_last_exit_code{job="failing"}') == 3.0,
                 timeout=WAIT)
        [series] = prom_query(url, 'jobreport_last_exit_code{job="failing"}')["data"]["result"]
        assert series["metric"]["instance"] == f"127.0.0.1:{node.port}"
        assert prom_value(url, 'up{job="node"}') == 1.0
        assert_alerts(alerting)

        def gone() -> None:
            shutil.rmtree(textfiles)

        def back() -> None:
            textfiles.mkdir()

        outage_then_flush(
            sink_args=sink, env=env, gateway=gateway_server, stop=gone, start=back,
            count=lambda: prom_value(url, 'jobreport_runs_total{job="outage",'
                                          'outcome="success"}') or 0.0)
    finally:
        prometheus.stop()
        node.stop()
