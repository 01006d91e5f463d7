"""`jobreport status --check` as a monitoring plugin (issue 24 item 4): 0 OK, 1 WARNING,
2 CRITICAL (the severity of the gravest alert the shipped rules would fire), 3 UNKNOWN (a
gateway that cannot be read, or holds nonsense); the judgement is the rules' own (one
table of problem -> rule -> severity, held to the rules file, and the judgement held to what
promtool says the rules fire); undelivered runs are a WARNING; one status line first; within
Nagios' 10 s even when the gateway hangs."""

from __future__ import annotations

import random
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from jobreport.commands.alerts import (
    CRITICAL,
    KINDS,
    NOT_JUDGED,
    OK,
    SEVERITIES,
    UNKNOWN,
    WARNING,
    worst,
)
from jobreport.commands.status import statuses
from jobreport.sinks.pushgateway_api import read_groups
from tests.conftest import Gateway
from tests.faults import SilentServer, assert_no_traceback, cli_env, run_cli
from tests.gateway_text import family, gateway_text
from tests.monitoring_helpers import PROMTOOL, RULES, load_yaml, write_yaml
from tests.scripted import Answer, ScriptedServer

ALERTS = RULES / "jobreport-alerts.yml"


def _rules() -> dict[str, dict[str, Any]]:
    return {r["alert"]: r for g in load_yaml(ALERTS)["groups"] for r in g["rules"]
            if "alert" in r}


def test_each_problem_has_the_severity_of_its_rule() -> None:
    """The table of problems names real rules with their severity, and every rule of the
    shipped file is judged by `status` or said not to be (the gateway's own rules)."""
    rules = _rules()
    for kind in KINDS.values():
        if kind.rule is not None:
            assert kind.rule in rules, f"{kind.label}: no rule {kind.rule} in {ALERTS}"
            severity = rules[kind.rule]["labels"]["severity"]
            assert SEVERITIES[severity] == kind.state, (kind.label, severity)
    judged = {k.rule for k in KINDS.values() if k.rule}
    missing = set(rules) - judged - NOT_JUDGED
    assert not missing, (f"rules that `jobreport status` does not judge: {sorted(missing)}; "
                         "add each to jobreport.commands.alerts.KINDS and findings()")


def test_the_worst_state_wins_as_monitoring_plugins_order_it() -> None:
    """CRITICAL over WARNING over UNKNOWN over OK (Monitoring::Plugin's max_state_alt)."""
    assert worst([OK, WARNING, CRITICAL, UNKNOWN]) == CRITICAL
    assert worst([OK, UNKNOWN, WARNING]) == WARNING
    assert worst([OK, UNKNOWN]) == UNKNOWN
    assert worst([]) == OK


# --- the judgement against promtool --------------------------------------------------------

NOW = 86400.0  # promtool's time() at eval_time 1d

#: The gauges a scenario may hold, and the values each takes (None: not pushed).
CHOICES: dict[str, tuple[float | None, ...]] = {
    "last_success_timestamp_seconds": (None, 0.0, NOW - 10, NOW - 5000, NOW - 80000),
    "last_start_timestamp_seconds": (None, NOW - 20, NOW - 7200),
    "expected_interval_seconds": (None, 3600.0),
    "success_deadline_timestamp_seconds": (None, NOW - 100, NOW + 100),
    "start_deadline_timestamp_seconds": (None, NOW - 100, NOW + 100),
    "running": (None, 0.0, 1.0),
    "max_runtime_seconds": (None, 10.0, 100000.0),
    "min_runtime_seconds": (None, 5.0),
    "last_duration_seconds": (None, 1.0, 10.0),
    "last_run_success": (None, 0.0, 1.0),
    "consecutive_failures": (None, 0.0, 1.0, 3.0),
    "alert_after_failures": (None, 1.0, 3.0),
    "last_heartbeat_timestamp_seconds": (None, NOW - 1000, NOW - 10, NOW - 9000),
    "last_end_timestamp_seconds": (None, NOW - 15),
    "last_size_bytes": (None, 100.0, 5000.0),
    "min_size_bytes": (None, 1000.0),
    "max_shrink_ratio": (None, 0.5),
    "typical_size_bytes": (None, 4000.0, 20000.0),
    "last_items": (None, 2.0, 50.0),
    "min_items": (None, 10.0),
    "last_output_updated": (None, 0.0, 1.0),
}
OUTCOMES = (None, "success", "failure", "timeout", "skipped")
PUSHES = (None, (NOW - 50, None), (NOW - 50, NOW - 10), (NOW - 10, NOW - 50))


def _scenarios(n: int, seed: int = 24) -> list[dict[str, Any]]:
    rnd = random.Random(seed)  # noqa: S311 - reproducible scenarios, not secrets
    out = []
    for _ in range(n):
        values = {k: rnd.choice(v) for k, v in CHOICES.items()}
        out.append({"gauges": {k: v for k, v in values.items() if v is not None},
                    "outcome": rnd.choice(OUTCOMES), "push": rnd.choice(PUSHES)})
    return out


def _group(job: str, scenario: dict[str, Any]) -> dict[str, Any]:
    """The group as the gateway's API writes it (the gateway keeps both push times of every
    group: a group never pushed to in vain has a failure time of 0)."""
    group: dict[str, Any] = {"labels": {"job": job, "instance": "h"}}
    group.update({f"jobreport_{k}": family(v) for k, v in scenario["gauges"].items()})
    if scenario["outcome"] is not None:
        group["jobreport_last_outcome"] = family(1.0, outcome=scenario["outcome"])
    pushed, failed = scenario["push"] or (1.0, None)
    group["push_time_seconds"] = family(pushed)
    group["push_failure_time_seconds"] = family(0.0 if failed is None else failed)
    return group


def test_status_fires_what_the_rules_fire(tmp_path: Path) -> None:
    """For 300 random combinations of what a group holds, the rules `status` says would fire
    are exactly those promtool fires from the shipped rules (annotations aside), with the
    rules' labels."""
    scenarios = _scenarios(300)
    groups = [_group(f"s{i}", s) for i, s in enumerate(scenarios)]
    held = read_groups([gateway_text(groups)], "jobreport")
    judged = {g.job: g for g in statuses(held, "jobreport", now=NOW)}
    assert len(judged) == len(groups)
    rules = load_yaml(ALERTS)
    for group in rules["groups"]:
        for rule in group["rules"]:
            rule.pop("annotations", None)  # templated text: not what is compared here
    rules_file = write_yaml(tmp_path / "alerts.yml", rules)
    series = []
    for group in groups:
        for name, found in group.items():
            if name == "labels":
                continue
            for sample in found["metrics"]:
                labels = {**group["labels"], **sample["labels"]}
                text = ",".join(f'{k}="{v}"' for k, v in labels.items())
                value = float(sample["value"])
                series.append({"series": f"{name}{{{text}}}", "values": f"{value:.17g}x1"})
    expected: dict[str, list[dict[str, Any]]] = {name: [] for name in _rules()
                                                 if name not in NOT_JUDGED}
    severities = {r: _rules()[r]["labels"]["severity"] for r in expected}
    for job, status in judged.items():
        for finding in status.findings:
            rule = finding.kind.rule
            if rule is None or finding.state == OK:
                continue
            labels = {"job": job, "instance": "h", "severity": severities[rule],
                      **dict(finding.labels)}
            expected[rule].append({"exp_labels": labels})
    test = {"rule_files": [str(rules_file)], "evaluation_interval": "1d",
            "tests": [{"interval": "1d", "input_series": series,
                       "alert_rule_test": [{"eval_time": "1d", "alertname": name,
                                            "exp_alerts": alerts}
                                           for name, alerts in expected.items()]}]}
    path = write_yaml(tmp_path / "judgement.test.yml", test)
    done = subprocess.run([PROMTOOL, "test", "rules", str(path)], capture_output=True,
                          text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-3000:]
    assert sum(len(a) for a in expected.values()) > 30  # the scenarios do fire rules


# --- the command, against a real gateway ----------------------------------------------------


def _check(env: dict[str, str], *extra: str) -> subprocess.CompletedProcess[str]:
    done = run_cli(["status", "--check", *extra], env, timeout=60)
    assert_no_traceback(done.stdout, done.stderr)
    return done


@pytest.mark.integration
def test_the_states_of_real_runs(gateway: Gateway, tmp_path: Path) -> None:
    """OK for fine jobs; one failure of a job that alerts after 3 is still OK; a failure
    or a too-short success is a WARNING; an overdue job is CRITICAL. One status line first,
    perfdata after a "|", then a line per problem."""
    env = cli_env(JOBREPORT_GATEWAY=gateway.url, JOBREPORT_DB=str(tmp_path / "s.db"))
    assert run_cli(["run", "--job", "fine", "--expect-every", "1h", "--", "true"],
                   env).returncode == 0
    run_cli(["run", "--job", "flaky", "--alert-after-failures", "3", "--", "false"], env)
    done = _check(env)
    assert done.returncode == 0, done.stdout
    assert done.stdout.startswith("JOBREPORT OK - 2 group(s), no problem | groups=2;;;0")
    run_cli(["run", "--job", "short", "--min-runtime", "1h", "--", "true"], env)
    run_cli(["run", "--job", "broken", "--", "false"], env)
    done = _check(env)
    assert done.returncode == 1, done.stdout
    first = done.stdout.splitlines()[0]
    assert first.startswith("JOBREPORT WARNING - 1 failed, 1 too short |"), first
    assert "WARNING: job=broken" in done.stdout and "[JobreportJobFailed]" in done.stdout
    # a job last successful long ago, with a 1s interval: overdue, the critical alert
    run_cli(["run", "--job", "late", "--expect-every", "1s", "--grace", "0s", "--", "true"],
            env)
    deadline = time.monotonic() + 30
    while (done := _check(env)).returncode != 2 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert done.returncode == 2, done.stdout
    assert done.stdout.startswith("JOBREPORT CRITICAL - 1 overdue, 1 failed, 1 too short |")


@pytest.mark.integration
def test_undelivered_runs_on_any_sink_are_a_warning(tmp_path: Path) -> None:
    """A host whose only sink is a missing textfile directory, or a receiver that refuses:
    its runs wait in the store, and the check says WARNING, naming the sink."""
    env = cli_env(JOBREPORT_DB=str(tmp_path / "s.db"),
                  JOBREPORT_TEXTFILE_DIR=str(tmp_path / "missing"))
    run_cli(["run", "--job", "nightly", "--", "true"], env)
    done = _check(env)
    assert done.returncode == 1, done.stdout
    assert done.stdout.startswith("JOBREPORT WARNING - textfile: 1 group(s)"), done.stdout
    with ScriptedServer(default=Answer(400, body="out of order sample")) as refusing:
        env = cli_env(JOBREPORT_DB=str(tmp_path / "r.db"),
                      JOBREPORT_REMOTE_WRITE_URL=refusing.url + "/api/v1/write")
        run_cli(["run", "--job", "nightly", "--", "true"], env)
        done = _check(env)
    assert done.returncode == 1, done.stdout
    assert done.stdout.startswith("JOBREPORT WARNING - remote-write: 1 group(s)"), done.stdout


@pytest.mark.integration
@pytest.mark.parametrize("body", [
    '{"status":"success","data":[1,"x",null]}',
    '{"status":"success","data":{"groups":[]}}',
    "<html>a login page</html>",
    '{"status":"success"}',
    "",
])
def test_a_gateway_holding_nonsense_is_unknown(body: str, tmp_path: Path) -> None:
    """An answer that is not the Pushgateway's is UNKNOWN (3), never "no groups, OK"."""
    with ScriptedServer(default=Answer(200, body=body,
                                       headers={"Content-Type": "application/json"})) as odd:
        done = _check(cli_env(JOBREPORT_GATEWAY=odd.url, JOBREPORT_DB=str(tmp_path / "s.db")))
    assert done.returncode == 3, done.stdout
    assert done.stdout.startswith("JOBREPORT UNKNOWN - "), done.stdout


@pytest.mark.integration
@pytest.mark.parametrize("status", [401, 404, 500, 503])
def test_a_gateway_that_refuses_is_unknown(status: int, tmp_path: Path) -> None:
    """A refusal or a failing gateway: the state of the jobs is unknown (3)."""
    with ScriptedServer(default=Answer(status, body="no")) as refusing:
        done = _check(cli_env(JOBREPORT_GATEWAY=refusing.url,
                              JOBREPORT_DB=str(tmp_path / "s.db")))
    assert done.returncode == 3, done.stdout
    assert done.stdout.startswith("JOBREPORT UNKNOWN - cannot read the Pushgateway")


@pytest.mark.integration
def test_an_unreachable_or_hanging_gateway_is_unknown_within_ten_seconds(
        tmp_path: Path) -> None:
    """A refused connection is UNKNOWN at once; a gateway that accepts and never answers
    is UNKNOWN well within Nagios' 10 s default (JOBREPORT_BUDGET notwithstanding)."""
    env = cli_env(JOBREPORT_DB=str(tmp_path / "s.db"), JOBREPORT_BUDGET="60",
                  JOBREPORT_TIMEOUT="60")
    done = _check({**env, "JOBREPORT_GATEWAY": "http://127.0.0.1:1"})
    assert done.returncode == 3, done.stdout
    with SilentServer() as silent:
        started = time.monotonic()
        done = _check({**env, "JOBREPORT_GATEWAY": silent.url})
        took = time.monotonic() - started
    assert done.returncode == 3, done.stdout
    assert done.stdout.startswith("JOBREPORT UNKNOWN - ")
    assert took < 9.5, took


@pytest.mark.integration
def test_usage_and_configuration_errors_are_unknown(tmp_path: Path) -> None:
    """A typo in the check's command line or a bad setting is UNKNOWN (3), not CRITICAL;
    without --check a usage error stays exit 2."""
    env = cli_env(JOBREPORT_DB=str(tmp_path / "s.db"), JOBREPORT_GATEWAY="http://127.0.0.1:1")
    done = _check(env, "--no-such-option")
    assert done.returncode == 3 and done.stdout.startswith("JOBREPORT UNKNOWN - usage")
    done = _check({**env, "JOBREPORT_TIMEOUT": "-5"})
    assert done.returncode == 3 and done.stdout.startswith("JOBREPORT UNKNOWN - ")
    done = _check({**env, "JOBREPORT_GATEWAY": ""})
    assert done.returncode == 3, done.stdout
    assert run_cli(["status", "--no-such-option"], env).returncode == 2


@pytest.mark.integration
def test_a_hostile_job_name_stays_on_its_line(gateway: Gateway, tmp_path: Path) -> None:
    """A job name holding a newline, a "|" or an escape cannot add a status line, start
    the perfdata early or move the terminal."""
    env = cli_env(JOBREPORT_GATEWAY=gateway.url, JOBREPORT_DB=str(tmp_path / "s.db"))
    run_cli(["run", "--job", "evil\nJOBREPORT OK - fine | x=1\x1b[2J", "--", "false"], env)
    done = _check(env)
    assert done.returncode == 1, done.stdout
    lines = done.stdout.splitlines()
    assert lines[0].startswith("JOBREPORT WARNING - 1 failed |")
    assert not any(line.startswith("JOBREPORT OK") for line in lines)
    assert "\x1b" not in done.stdout
