"""Schedules end to end: real ``jobreport run`` processes with --schedule push deadlines to a
real Pushgateway, a real Prometheus evaluates the shipped rules every second, and the alerts
reach a webhook through a real Alertmanager.

Time is compressed, honestly and only here: cron has minute resolution, so the runs start
through tests/fast_calendar.py, which puts a calendar 30 times faster than the clock into
the ``jobreport run`` process (``jobreport.schedule.fire_times``, the one seam for time: a
cron minute lasts 2 s; ``*/5 * * * *`` fires every 10 s). cronsim still computes every
fire time; the deadlines pushed are real Unix times, and Prometheus, Alertmanager and the
webhook run on the real clock. The virtual calendar starts a second
after midnight, so that an ``@hourly`` job is next due two real minutes later.

Prints the measured time from each deadline to the webhook (``pytest -s``)."""

from __future__ import annotations

import os
import re
import subprocess
import time
from datetime import datetime
from pathlib import Path

import pytest

from tests.fast_calendar import launcher
from tests.monitoring_helpers import prom_get, prom_query, wait_for
from tests.test_monitoring_e2e import Stack, alerting, arrival, gateway_value, stack, summary

__all__ = ["alerting", "stack"]  # the fixtures, shared with test_monitoring_e2e

REPO = Path(__file__).resolve().parent.parent
SCALE = 30.0
#: The calendar's time when the test starts: 2026-11-30 00:00:01 UTC (a Monday)
VIRTUAL = 1795996801.0
WAIT = 90.0  # seconds for any one alert to reach the webhook (a ceiling for a busy machine)
# The jobs that must stay silent run @daily: their next deadline is 48 real minutes away,
# whatever the machine's speed (@hourly's, 2 real minutes, a slow run of this test reaches).


def run(stack: Stack, env: dict[str, str], real: float, *args: str) -> int:
    """``jobreport run ARGS`` on the calendar that was at VIRTUAL when the clock read
    ``real``, and SCALE times as fast."""
    proc = subprocess.run([*launcher(real, VIRTUAL, SCALE), "run", "--timezone", "UTC", *args],
                          env={**env, "PYTHONPATH": str(REPO)}, capture_output=True,
                          text=True, timeout=60, check=False)
    print(f"$ jobreport run {' '.join(args)}\n{proc.stdout}{proc.stderr}-> {proc.returncode}")
    return proc.returncode


def firing_in_prometheus(stack: Stack, job: str) -> list[str]:
    alerts = prom_get(stack.prometheus.url, "/api/v1/alerts")["data"]["alerts"]
    return [a["labels"]["alertname"] for a in alerts if a["labels"].get("job") == job]


def evaluated_since(stack: Stack, when: float) -> bool:
    """Prometheus evaluated the alert rules after ``when`` (its rules API says when)."""
    for group in prom_get(stack.prometheus.url, "/api/v1/rules")["data"]["groups"]:
        if group["name"] == "jobreport-alerts":
            stamp = re.sub(r"(\.\d{6})\d*", r"\1", group["lastEvaluation"])
            return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp() > when
    return False


def test_schedule_alerts_reach_the_webhook(stack: Stack, tmp_path: Path) -> None:
    """A missed run raises MissedStart at its start deadline, then Overdue at its success
    deadline; a too-short success raises TooShort; with --alert-after-failures 3 two
    failures stay silent and the third raises Failed; a fresh scheduled job raises
    nothing. No alert arrives before its deadline."""
    real = time.time()  # the calendar's VIRTUAL
    env = {**os.environ, "JOBREPORT_GATEWAY": stack.gateway.url,
           "JOBREPORT_DB": f"sqlite:///{tmp_path / 'store.db'}"}

    assert run(stack, env, real, "--job", "e2e_fresh", "--schedule", "@daily", "--",
               "true") == 0
    assert run(stack, env, real, "--job", "e2e_missed", "--schedule", "*/5 * * * *",
               "--max-runtime", "4s", "--", "true") == 0
    assert run(stack, env, real, "--job", "e2e_short", "--schedule", "@daily",
               "--min-runtime", "30s", "--", "true") == 0
    for _ in range(2):
        assert run(stack, env, real, "--job", "e2e_flaky", "--schedule", "@daily",
                   "--alert-after-failures", "3", "--", "false") == 1

    # two failures in a row, threshold 3: Prometheus sees the count and stays silent
    wait_for("Prometheus seeing two failures",
             lambda: prom_query(stack.prometheus.url,
                                'jobreport_consecutive_failures{job="e2e_flaky"} == 2'
                                )["data"]["result"], timeout=WAIT)
    seen = time.time()
    wait_for("a rule evaluation after that", lambda: evaluated_since(stack, seen + 1),
             timeout=WAIT)
    assert "JobreportJobFailed" not in firing_in_prometheus(stack, "e2e_flaky")
    assert run(stack, env, real, "--job", "e2e_flaky", "--schedule", "@daily",
               "--alert-after-failures", "3", "--", "false") == 1

    expected = [("JobreportJobMissedStart", "e2e_missed"), ("JobreportJobOverdue", "e2e_missed"),
                ("JobreportJobTooShort", "e2e_short"), ("JobreportJobFailed", "e2e_flaky")]

    def missing() -> list[tuple[str, str]]:
        return [(name, job) for name, job in expected
                if not stack.webhook.first("firing", alertname=name, job=job)]

    try:
        wait_for("every expected alert at the webhook", lambda: not missing(), timeout=WAIT)
    except AssertionError as e:
        raise AssertionError(f"{e}: missing {missing()}\nreceived: {summary(stack)}") from None

    start_deadline = gateway_value(stack, "e2e_missed",
                                   "jobreport_start_deadline_timestamp_seconds")
    success_deadline = gateway_value(stack, "e2e_missed",
                                     "jobreport_success_deadline_timestamp_seconds")
    ended = gateway_value(stack, "e2e_missed", "jobreport_last_end_timestamp_seconds")
    # the deadlines are the calendar's: the next */5 fire (within 10 s) + 1 s grace (+ 4 s)
    assert ended < start_deadline - 1.0 <= ended + 10.0
    assert success_deadline == pytest.approx(start_deadline + 4.0)
    missed, missed_alert = arrival(stack, "firing", alertname="JobreportJobMissedStart",
                                   job="e2e_missed")
    overdue, overdue_alert = arrival(stack, "firing", alertname="JobreportJobOverdue",
                                     job="e2e_missed")
    assert missed.receiver == "jobreport-warning" and overdue.receiver == "jobreport-critical"
    assert missed.received > start_deadline and overdue.received > success_deadline
    assert missed.received < overdue.received
    assert missed_alert["annotations"]["runbook_url"] == "docs/runbook.md#jobreportjobmissedstart"
    assert overdue_alert["labels"]["severity"] == "critical"

    short, _ = arrival(stack, "firing", alertname="JobreportJobTooShort", job="e2e_short")
    short_end = gateway_value(stack, "e2e_short", "jobreport_last_end_timestamp_seconds")
    failed, failed_alert = arrival(stack, "firing", alertname="JobreportJobFailed",
                                   job="e2e_flaky")
    assert failed_alert["labels"]["outcome"] == "failure"
    assert gateway_value(stack, "e2e_flaky", "jobreport_consecutive_failures") == 3
    assert gateway_value(stack, "e2e_flaky", "jobreport_alert_after_failures") == 3
    failed_end = gateway_value(stack, "e2e_flaky", "jobreport_last_end_timestamp_seconds")

    # nothing for the fresh job, nor anything else than expected
    assert gateway_value(stack, "e2e_fresh", "jobreport_start_deadline_timestamp_seconds") > (
        time.time())
    assert firing_in_prometheus(stack, "e2e_fresh") == []
    names = {(a["labels"]["alertname"], a["labels"]["job"]) for _, a in stack.webhook.received()}
    assert names == set(expected)

    print(f"\ndeadline -> webhook: missed start {missed.received - start_deadline:.2f} s, "
          f"overdue {overdue.received - success_deadline:.2f} s, "
          f"too short (from end of run) {short.received - short_end:.2f} s, "
          f"failed x3 (from end of run) {failed.received - failed_end:.2f} s; "
          f"test {time.time() - real:.1f} s")
