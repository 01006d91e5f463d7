"""What a run is held to (its thresholds and schedule) reaches the push, is kept in the store
with the run (a flush in another process, from the store alone, pushes the same), and leaves
the group when a later run drops it. Written against the behaviour, not the record that
carries it, so it holds whatever that record is called."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.request
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from jobreport import job_metrics, load_config
from tests.conftest import Gateway
from tests.faults import cli_env

JOBREPORT = [sys.executable, "-m", "jobreport"]
GAUGES = ("jobreport_expected_interval_seconds", "jobreport_max_runtime_seconds",
          "jobreport_min_runtime_seconds", "jobreport_alert_after_failures",
          "jobreport_success_deadline_timestamp_seconds",
          "jobreport_start_deadline_timestamp_seconds")

#: name: (`jobreport run` options, job_metrics keywords)
PLANS: dict[str, tuple[list[str], dict[str, Any]]] = {
    "interval": (["--expect-every", "100s", "--grace", "20s", "--max-runtime", "30s",
                  "--min-runtime", "2s", "--alert-after-failures", "3"],
                 {"expect_every": "100s", "grace": "20s", "max_runtime": "30s",
                  "min_runtime": "2s", "alert_after_failures": 3}),
    "schedule": (["--schedule", "0 3 * * 1-5", "--timezone", "Europe/Berlin", "--grace", "2m",
                  "--max-runtime", "10m", "--min-runtime", "5s",
                  "--alert-after-failures", "2"],
                 {"schedule": "0 3 * * 1-5", "timezone": "Europe/Berlin", "grace": "2m",
                  "max_runtime": "10m", "min_runtime": "5s", "alert_after_failures": 2}),
}


def next_weekday_3am_berlin(after: float) -> float:
    """The first fire time of ``0 3 * * 1-5`` in Europe/Berlin after ``after`` (worked out
    here by hand, not by the product's schedule code)."""
    berlin = ZoneInfo("Europe/Berlin")
    day = datetime.fromtimestamp(after, berlin).date()
    for i in range(8):
        d = day + timedelta(days=i)
        fire = datetime(d.year, d.month, d.day, 3, tzinfo=berlin).timestamp()
        if d.weekday() < 5 and fire > after:
            return fire
    raise AssertionError("no fire time within a week")


def expected(plan: str, run: dict[str, Any]) -> dict[str, Any]:
    if plan == "interval":
        return {"jobreport_expected_interval_seconds": 120.0,
                "jobreport_max_runtime_seconds": 30.0, "jobreport_min_runtime_seconds": 2.0,
                "jobreport_alert_after_failures": 3.0}
    last = max(run["started"], run["ended"])
    return {"jobreport_max_runtime_seconds": 600.0, "jobreport_min_runtime_seconds": 5.0,
            "jobreport_alert_after_failures": 2.0,
            "jobreport_success_deadline_timestamp_seconds": pytest.approx(
                next_weekday_3am_berlin(run["ended"]) + 600 + 120, abs=0.01),
            "jobreport_start_deadline_timestamp_seconds": pytest.approx(
                next_weekday_3am_berlin(last) + 120, abs=0.01)}


def held(gateway: Gateway) -> dict[str, float]:
    """The threshold gauges the gateway holds for job t."""
    return {k: v for k, v in gateway.samples("t", instance="h1").items() if k in GAUGES}


def cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([*JOBREPORT, *args], env=env, capture_output=True, text=True,
                          timeout=120, check=False, stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, proc.stderr
    return proc


@pytest.mark.parametrize("way", ["cli", "library"])
@pytest.mark.parametrize("plan", sorted(PLANS))
def test_a_runs_thresholds_are_pushed_kept_in_the_store_and_dropped_with_it(
        gateway: Gateway, tmp_path: Path, plan: str, way: str) -> None:
    """Each threshold and deadline of the run is in the end push with its value; deleted on
    the gateway and flushed again from the store by another process, the group holds the
    same; a later run without them leaves none behind."""
    db = f"sqlite:///{tmp_path / 's.db'}"
    env = cli_env(JOBREPORT_GATEWAY=gateway.url, JOBREPORT_DB=db, JOBREPORT_INSTANCE="h1",
                  JOBREPORT_BUDGET="60s", JOBREPORT_TIMEOUT="10s")
    options, keywords = PLANS[plan]
    if way == "cli":
        cli(env, "run", "--job", "t", *options, "--", "true")
    else:
        config = load_config(env={}, gateway=gateway.url, db=db, instance="h1",
                             budget="60s", timeout="10s")
        with job_metrics("t", config=config, **keywords):
            pass
    [run] = json.loads(cli(env, "history", "--json", "t").stdout)
    pushed = held(gateway)
    assert pushed == expected(plan, run)
    assert run["min_runtime"] == expected(plan, run)["jobreport_min_runtime_seconds"]

    request = urllib.request.Request(gateway.url + "/metrics/job/t/instance/h1",
                                     method="DELETE")
    urllib.request.urlopen(request, timeout=10).close()  # noqa: S310 - loopback
    assert gateway.groups_once(lambda groups: not groups) == []
    cli(env, "flush", "--all")
    assert held(gateway) == pushed

    cli(env, "run", "--job", "t", "--", "true")
    assert held(gateway) == {}
