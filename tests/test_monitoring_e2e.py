"""The proof: real jobs run with ``jobreport run`` push to a real Pushgateway, a real
Prometheus evaluates the shipped rules every second, and the alerts reach a webhook through a
real Alertmanager with the shipped routing — and a fresh, healthy job raises none.

Prints the measured time from each alert's deadline to the webhook (``pytest -s``)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests import servers
from tests.monitoring_helpers import (
    Notification,
    WebhookReceiver,
    alertmanager_test_config,
    prom_get,
    prom_query,
    prometheus_test_config,
    wait_for,
)

JOBREPORT = [sys.executable, "-m", "jobreport"]
# Ceilings for a busy machine, reached only when an alert never comes: on a quiet one the
# alerts arrive within seconds (the delays are printed with -s).
DEADLINE = 120.0  # seconds for all the alerts to reach the webhook


@dataclass
class Alerting:
    alertmanager: servers.Server
    webhook: WebhookReceiver


@dataclass
class Stack(Alerting):
    gateway: servers.Server
    prometheus: servers.Server


@pytest.fixture
def alerting(tmp_path: Path) -> Iterator[Alerting]:
    """Alertmanager with the shipped routing, its webhooks pointed at a receiver in this
    test and 1 s group waits, on loopback."""
    webhook = WebhookReceiver().start()
    try:
        config = alertmanager_test_config(tmp_path / "alertmanager.yml", webhook_url=webhook.url)
        alertmanager = servers.alertmanager(tmp_path / "alertmanager", config).start()
        try:
            yield Alerting(alertmanager, webhook)
        finally:
            alertmanager.stop()
    finally:
        webhook.stop()


@pytest.fixture
def stack(alerting: Alerting, tmp_path: Path) -> Iterator[Stack]:
    """Plus a Pushgateway and a Prometheus (shipped config and rules; 1 s scrape and
    evaluation) sending to that Alertmanager."""
    gateway = servers.pushgateway(tmp_path / "pushgateway").start()
    prometheus: servers.Server | None = None
    try:
        config = prometheus_test_config(tmp_path / "prometheus.yml", gateway_port=gateway.port,
                                        alertmanager_port=alerting.alertmanager.port)
        prometheus = servers.prometheus(tmp_path / "prometheus", config).start()
        prom_url = prometheus.url
        # Prometheus applies its targets a few seconds after start: wait until it scrapes
        # the gateway and knows the Alertmanager, so that every run below is seen
        wait_for("Prometheus scraping the Pushgateway",
                 lambda: prom_query(prom_url, 'up{job="pushgateway"} == 1')["data"]["result"],
                 timeout=DEADLINE)
        wait_for("Prometheus knowing the Alertmanager",
                 lambda: prom_get(prom_url, "/api/v1/alertmanagers")
                 ["data"]["activeAlertmanagers"], timeout=DEADLINE)
        yield Stack(alerting.alertmanager, alerting.webhook, gateway, prometheus)
    finally:
        if prometheus is not None:
            prometheus.stop()
        gateway.stop()


def jobreport_run(gateway: str, *args: str) -> subprocess.Popen[str]:
    env = {**os.environ, "JOBREPORT_GATEWAY": gateway}
    return subprocess.Popen([*JOBREPORT, "run", *args], env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def finished(proc: subprocess.Popen[str], timeout: float = DEADLINE) -> int:
    """Wait for a ``jobreport run``; its output goes to the test's captured output."""
    out, err = proc.communicate(timeout=timeout)
    print(f"$ {proc.args!r}\n{out}{err}-> {proc.returncode}")
    return int(proc.returncode)


def gateway_value(stack: Stack, job: str, metric: str) -> float:
    """The value the Pushgateway holds for ``metric`` in ``job``'s group."""
    with urllib.request.urlopen(stack.gateway.url + "/api/v1/metrics", timeout=5) as r:
        groups = json.load(r)["data"]
    [group] = [g for g in groups if g["labels"]["job"] == job]
    return float(group[metric]["metrics"][0]["value"])


def summary(stack: Stack) -> list[tuple[str, str, dict[str, str]]]:
    """What the webhook received: (receiver, status, labels) per alert."""
    return [(n.receiver, a["status"], a["labels"]) for n, a in stack.webhook.received()]


def arrival(stack: Stack, status: str, **labels: str) -> tuple[Notification, dict[str, Any]]:
    found = stack.webhook.first(status, **labels)
    assert found, f"no {status} alert {labels}; received: {stack.webhook.received()}"
    return found


def test_alerts_reach_the_webhook_and_a_healthy_job_raises_none(stack: Stack) -> None:
    """An overdue job, a failed job, a job killed by --timeout and a stuck job killed by a
    signal mid-run each raise their alerts through Prometheus and Alertmanager to the
    webhook, routed by severity, with job, instance and runbook in the labels and
    annotations; the stuck job's alert resolves when it ends; a fresh job raises none."""
    gw = stack.gateway.url
    assert finished(jobreport_run(gw, "--job", "e2e_fresh", "--expect-every", "1h",
                                  "--", "true")) == 0
    # generous --timeout (beyond DEADLINE): it is only a backstop, the test kills the run
    # once it is stuck
    stuck = jobreport_run(gw, "--job", "e2e_stuck", "--max-runtime", "1s", "--timeout", "180s",
                          "--", "sleep", "300")
    killed = jobreport_run(gw, "--job", "e2e_killed", "--timeout", "2s", "--", "sleep", "60")
    # without an instance label and with an extra grouping label
    assert finished(jobreport_run(gw, "--job", "e2e_failed", "--no-instance",
                                  "--label", "team=data", "--", "false")) == 1
    assert finished(jobreport_run(gw, "--job", "e2e_overdue", "--expect-every", "2s",
                                  "--", "true")) == 0
    assert finished(killed) == 124
    try:
        wait_for("the stuck run's alert at the webhook",
                 lambda: stack.webhook.first("firing", alertname="JobreportJobRunningTooLong",
                                             job="e2e_stuck"), timeout=DEADLINE)
    finally:
        stuck.send_signal(signal.SIGTERM)  # forwarded to the child: outcome "signal"
    assert finished(stuck) == 128 + signal.SIGTERM

    expected = [
        ("firing", {"alertname": "JobreportJobOverdue", "job": "e2e_overdue"}),
        ("firing", {"alertname": "JobreportJobFailed", "job": "e2e_failed",
                    "outcome": "failure"}),
        ("firing", {"alertname": "JobreportJobFailed", "job": "e2e_killed",
                    "outcome": "timeout"}),
        ("firing", {"alertname": "JobreportJobRunningTooLong", "job": "e2e_stuck"}),
        ("firing", {"alertname": "JobreportJobFailed", "job": "e2e_stuck",
                    "outcome": "signal"}),
        ("resolved", {"alertname": "JobreportJobRunningTooLong", "job": "e2e_stuck"}),
    ]

    def missing() -> list[str]:
        return [f"{s} {labels}" for s, labels in expected
                if not stack.webhook.first(s, **labels)]

    try:
        wait_for("every expected alert at the webhook", lambda: not missing(),
                 timeout=DEADLINE)
    except AssertionError as e:
        raise AssertionError(
            f"{e}: missing {missing()}\nreceived: {summary(stack)}\nPrometheus alerts: "
            f"{prom_get(stack.prometheus.url, '/api/v1/alerts')['data']['alerts']}") from None

    instance = prom_query(stack.prometheus.url,
                          'jobreport_last_run_success{job="e2e_overdue"}'
                          )["data"]["result"][0]["metric"]["instance"]
    # overdue: critical, routed to the on-call receiver, annotations name job and instance
    note, alert = arrival(stack, "firing", alertname="JobreportJobOverdue", job="e2e_overdue")
    assert note.receiver == "jobreport-critical"
    assert alert["labels"]["severity"] == "critical"
    assert alert["labels"]["instance"] == instance
    assert alert["annotations"]["summary"] == f"Job e2e_overdue on {instance} is overdue"
    assert f"Job e2e_overdue on {instance} last succeeded " in alert["annotations"]["description"]
    assert alert["annotations"]["runbook_url"] == "docs/runbook.md#jobreportjoboverdue"
    deadline = (gateway_value(stack, "e2e_overdue", "jobreport_last_success_timestamp_seconds")
                + gateway_value(stack, "e2e_overdue", "jobreport_expected_interval_seconds"))
    overdue_delay = note.received - deadline

    # failed: warning, routed to the chat receiver; the group's labels kept as pushed
    note, alert = arrival(stack, "firing", alertname="JobreportJobFailed", job="e2e_failed")
    assert note.receiver == "jobreport-warning"
    assert alert["labels"] == {"alertname": "JobreportJobFailed", "job": "e2e_failed",
                               "team": "data", "outcome": "failure", "severity": "warning"}
    assert alert["annotations"]["summary"] == "Last run of job e2e_failed failed (failure)"
    failed_delay = note.received - gateway_value(stack, "e2e_failed",
                                                 "jobreport_last_end_timestamp_seconds")

    note, _ = arrival(stack, "firing", alertname="JobreportJobRunningTooLong", job="e2e_stuck")
    stuck_delay = note.received - (
        gateway_value(stack, "e2e_stuck", "jobreport_last_start_timestamp_seconds")
        + gateway_value(stack, "e2e_stuck", "jobreport_max_runtime_seconds"))

    # nothing for the healthy job, whose data Prometheus has evaluated all along
    assert prom_query(stack.prometheus.url,
                      'jobreport_expected_interval_seconds{job="e2e_fresh"}')["data"]["result"]
    assert [a for _, a in stack.webhook.received() if a["labels"].get("job") == "e2e_fresh"] == []
    alerts = prom_get(stack.prometheus.url, "/api/v1/alerts")["data"]["alerts"]
    assert [a for a in alerts if a["labels"].get("job") == "e2e_fresh"] == []
    # and nothing unexpected for the others (no threshold pushed, so never overdue)
    names = {(a["labels"]["alertname"], a["labels"]["job"]) for _, a in stack.webhook.received()}
    assert names == {("JobreportJobOverdue", "e2e_overdue"), ("JobreportJobFailed", "e2e_failed"),
                     ("JobreportJobFailed", "e2e_killed"),
                     ("JobreportJobRunningTooLong", "e2e_stuck"),
                     ("JobreportJobFailed", "e2e_stuck")}

    print(f"\ndeadline -> webhook: overdue {overdue_delay:.2f} s, "
          f"failed (from end of run) {failed_delay:.2f} s, "
          f"running too long {stuck_delay:.2f} s")


def test_gateway_down_inhibits_the_per_job_alerts(alerting: Alerting) -> None:
    """With the shipped inhibition, a firing JobreportPushgatewayDown keeps the per-job
    alerts (overdue, absent guards) from the webhook while it is itself delivered."""
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    alerts = [
        {"labels": {"alertname": "JobreportPushgatewayDown", "job": "pushgateway",
                    "instance": "127.0.0.1:9091", "severity": "critical"}, "startsAt": now},
        {"labels": {"alertname": "JobreportJobOverdue", "job": "backup", "instance": "db1",
                    "severity": "critical"}, "startsAt": now},
        {"labels": {"alertname": "JobreportJobAbsent", "job": "nightly",
                    "severity": "critical"}, "startsAt": now},
    ]

    def post(batch: list[dict[str, Any]]) -> None:
        request = urllib.request.Request(
            alerting.alertmanager.url + "/api/v2/alerts", data=json.dumps(batch).encode(),
            headers={"Content-Type": "application/json"}, method="POST")
        with urllib.request.urlopen(request, timeout=5) as r:
            assert r.status == 200

    def states() -> dict[str, dict[str, Any]]:
        with urllib.request.urlopen(alerting.alertmanager.url + "/api/v2/alerts", timeout=5) as r:
            return {a["labels"]["alertname"]: a["status"] for a in json.load(r)}

    # as it happens: the gateway is down first (its alert firing), then the jobs' alerts
    # come; Alertmanager's inhibitor learns of a source alert asynchronously, so alerts
    # posted in one batch with it could be sent before it knows (a flaky test under load)
    post(alerts[:1])
    wait_for("the gateway alert active",
             lambda: states().get("JobreportPushgatewayDown", {}).get("state") == "active",
             timeout=DEADLINE)
    post(alerts[1:])
    wait_for("the per-job alerts inhibited",
             lambda: all(states().get(name, {}).get("inhibitedBy")
                         for name in ("JobreportJobOverdue", "JobreportJobAbsent")),
             timeout=DEADLINE)
    assert states()["JobreportPushgatewayDown"]["state"] == "active"
    wait_for("the gateway alert at the webhook",
             lambda: alerting.webhook.first("firing", alertname="JobreportPushgatewayDown"),
             timeout=DEADLINE)
    assert {a["labels"]["alertname"] for _, a in alerting.webhook.received()} == {
        "JobreportPushgatewayDown"}


def test_outputs_that_are_wrong_page_and_a_normal_backup_does_not(stack: Stack,
                                                                  tmp_path: Path) -> None:
    """Real backups through `jobreport run --size-path`: one that writes 0 bytes
    (--min-size) and one that writes a tenth of its usual size (--max-shrink) each page
    JobreportJobOutputTooSmall, one that leaves yesterday's dump in place pages
    JobreportJobOutputNotUpdated, all routed as critical; a normal backup pages nothing;
    the stale one resolves when a run writes its dump again."""
    gw = stack.gateway.url

    def backup(job: str, size: int, *flags: str) -> None:
        dump = tmp_path / f"{job}.dump"
        write = f"head -c {size} /dev/zero > {dump}"
        assert finished(jobreport_run(gw, "--job", job, "--size-path", str(dump), *flags,
                                      "--", "sh", "-c", write)) == 0

    backup("e2e_empty", 0, "--min-size", "1kB")
    for size in (100_000, 100_000, 100_000, 10_000):  # then a tenth of the usual size
        backup("e2e_shrunk", size, "--max-shrink", "50%")
    for size in (100_000, 100_000, 100_000, 90_000):
        backup("e2e_normal", size, "--max-shrink", "50%", "--min-size", "10kB")
    stale = tmp_path / "e2e_stale.dump"
    stale.write_bytes(b"x" * 5000)
    yesterday = time.time() - 86400
    os.utime(stale, (yesterday, yesterday))
    assert finished(jobreport_run(gw, "--job", "e2e_stale", "--size-path", str(stale),
                                  "--min-size", "1kB", "--", "true")) == 0

    expected = [("JobreportJobOutputTooSmall", "e2e_empty", "min_size"),
                ("JobreportJobOutputTooSmall", "e2e_shrunk", "max_shrink"),
                ("JobreportJobOutputNotUpdated", "e2e_stale", None)]

    def missing() -> list[tuple[str, str, str | None]]:
        return [(name, job, threshold) for name, job, threshold in expected
                if not stack.webhook.first("firing", alertname=name, job=job,
                                           **({"threshold": threshold} if threshold else {}))]

    try:
        wait_for("every output alert at the webhook", lambda: not missing(), timeout=DEADLINE)
    except AssertionError as e:
        raise AssertionError(f"{e}: missing {missing()}\nreceived: {summary(stack)}") from None
    for name, job, _ in expected:
        note, alert = arrival(stack, "firing", alertname=name, job=job)
        assert note.receiver == "jobreport-critical"
        assert alert["annotations"]["runbook_url"] == f"docs/runbook.md#{name.lower()}"
    _, shrunk = arrival(stack, "firing", alertname="JobreportJobOutputTooSmall",
                        job="e2e_shrunk")
    assert "produced 10kB, less than (1 - jobreport_max_shrink_ratio) times its typical " \
           "size" in shrunk["annotations"]["description"]
    assert gateway_value(stack, "e2e_shrunk", "jobreport_typical_size_bytes") == 100_000

    # the stale dump written again: resolved
    assert finished(jobreport_run(gw, "--job", "e2e_stale", "--size-path", str(stale),
                                  "--min-size", "1kB", "--", "sh", "-c",
                                  f"head -c 5000 /dev/zero > {stale}")) == 0
    wait_for("the stale dump's alert resolved",
             lambda: stack.webhook.first("resolved", alertname="JobreportJobOutputNotUpdated",
                                         job="e2e_stale"), timeout=DEADLINE)
    # nothing for the normal backup, whose data Prometheus has evaluated all along
    assert prom_query(stack.prometheus.url,
                      'jobreport_typical_size_bytes{job="e2e_normal"}')["data"]["result"]
    assert [a for _, a in stack.webhook.received()
            if a["labels"].get("job") == "e2e_normal"] == []
    alerts = prom_get(stack.prometheus.url, "/api/v1/alerts")["data"]["alerts"]
    assert [a for a in alerts if a["labels"].get("job") == "e2e_normal"] == []
    names = {(a["labels"]["alertname"], a["labels"]["job"]) for _, a in stack.webhook.received()}
    assert names == {(name, job) for name, job, _ in expected}
