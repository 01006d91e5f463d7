"""The shipped Prometheus and Alertmanager files pass the real tools (promtool, amtool), the
rule unit tests pass, and the rules follow the conventions docs/alerting.md promises."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from jobreport.exposition import StateCollector
from jobreport.outcomes import OUTCOMES
from jobreport.result import CustomFamily, RunResult
from jobreport.spec import GAUGED, JobSpec
from jobreport.state import GroupState
from tests.monitoring_helpers import (
    AMTOOL,
    MONITORING,
    PROMTOOL,
    ROOT,
    RULES,
    load_yaml,
)

RULE_FILES = sorted(RULES.glob("*.yml"))
ALERT_FILES = [RULES / "jobreport-alerts.yml", RULES / "jobreport-absent.example.yml"]
RULE_TESTS = sorted((MONITORING / "tests").glob("*.yml"))


def run(*argv: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(a) for a in argv], check=False, capture_output=True, text=True,
                          timeout=60)


def alert_rules() -> list[dict[str, object]]:
    return [rule for path in ALERT_FILES for group in load_yaml(path)["groups"]
            for rule in group["rules"] if "alert" in rule]


def contract_metric_names() -> set[str]:
    """Every series name jobreport pushes, from the exposition of a group with every field
    known (the code is the contract's mirror)."""
    last = RunResult(ended=2.0, duration=1.0, outcome="success", exit_code=0, size=1.0,
                     items=1.0, output_updated=1, cpu_seconds=1.0, max_rss_bytes=1.0,
                     custom=(CustomFamily.gauge("x", 1.0),))
    state = GroupState(
        job="j", grouping={"job": "j"}, running=1, last_start=1.0, last_success=2.0,
        last_failure=1.0, last=last, runs_total=dict.fromkeys(OUTCOMES, 1),
        # every threshold a push can carry (spec.GAUGED), whatever fields come
        spec=JobSpec("j", **{f.name: 1 for f in GAUGED}),
        last_heartbeat=1.0, success_deadline=3.0, start_deadline=3.0, consecutive_failures=0,
        typical_size=1.0, typical_duration=1.0,
    )
    names = {s.name for fam in StateCollector(state).collect() for s in fam.samples}
    return {n for n in names if n.startswith("jobreport_")}


def test_promtool_check_config() -> None:
    """promtool accepts prometheus.yml and the rule files it loads."""
    result = run(PROMTOOL, "check", "config", MONITORING / "prometheus.yml")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "jobreport-alerts.yml" in result.stdout


def test_promtool_check_rules() -> None:
    """promtool accepts every shipped rule file, the absent() example included."""
    assert {p.name for p in RULE_FILES} >= {
        "jobreport-alerts.yml", "jobreport-recording.yml", "jobreport-absent.example.yml"}
    result = run(PROMTOOL, "check", "rules", *RULE_FILES)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.integration  # long child processes
def test_promtool_rule_unit_tests() -> None:
    """The promtool unit tests in monitoring/tests/ pass."""
    assert RULE_TESTS
    result = run(PROMTOOL, "test", "rules", *RULE_TESTS)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "FAILED" not in result.stdout


def test_every_alert_has_a_unit_test_that_fires_and_one_that_stays_silent() -> None:
    """Each alert is expected to fire somewhere and to be silent somewhere in the unit tests."""
    fired: set[str] = set()
    silent: set[str] = set()
    for path in RULE_TESTS:
        for case in load_yaml(path)["tests"]:
            for check in case.get("alert_rule_test", []):
                (fired if check.get("exp_alerts") else silent).add(check["alertname"])
    names = {str(rule["alert"]) for rule in alert_rules()}
    assert names - fired == set(), "alerts never expected to fire"
    assert names - silent == set(), "alerts never expected to stay silent"


def test_alerts_have_severity_annotations_and_runbook_sections() -> None:
    """Every alert has a severity, a summary and description naming the job, and a
    runbook_url whose anchor is a section of docs/runbook.md."""
    runbook = (ROOT / "docs" / "runbook.md").read_text(encoding="utf-8")
    headings = {m.group(1).strip().lower()
                for m in re.finditer(r"^#+\s+(.*)$", runbook, flags=re.M)}
    rules = alert_rules()
    assert {"JobreportJobOverdue", "JobreportJobFailed"} <= {r["alert"] for r in rules}
    for rule in rules:
        name = str(rule["alert"])
        labels = rule["labels"]
        annotations = rule["annotations"]
        assert isinstance(labels, dict) and isinstance(annotations, dict)
        assert labels["severity"] in ("critical", "warning"), name
        assert "$labels.job" in annotations["summary"], name
        assert "$labels.job" in annotations["description"], name
        if "$value" in annotations["description"]:  # shown as a person reads it
            assert "$value }}" not in annotations["description"], name
            assert "$value | humanize" in annotations["description"], name
        assert annotations["runbook_url"] == f"docs/runbook.md#{name.lower()}", name
        assert name.lower() in headings, f"docs/runbook.md has no section {name}"


def test_per_job_alerts_are_inhibited_by_the_gateway_alerts() -> None:
    """Per-job alert names match the inhibition's target and the gateway alerts its
    source, so a down Pushgateway does not page once per job."""
    inhibit = load_yaml(MONITORING / "alertmanager.yml")["inhibit_rules"]
    [rule] = inhibit
    source = re.fullmatch(r'alertname=~"(.*)"', rule["source_matchers"][0])
    target = re.fullmatch(r'alertname=~"(.*)"', rule["target_matchers"][0])
    assert source and target
    for alert in alert_rules():
        name = str(alert["alert"])
        if name.startswith("JobreportPushgateway"):
            assert re.fullmatch(source.group(1), name), name
        elif name.startswith("JobreportJob"):
            assert re.fullmatch(target.group(1), name), name
    assert re.fullmatch(target.group(1), "JobreportJobAbsent")
    assert not re.fullmatch(target.group(1), "JobreportPushgatewayDown")


def test_rules_use_only_metrics_jobreport_pushes() -> None:
    """Every jobreport_* name in the rules is one the exposition produces (a misspelled
    metric is valid PromQL and would silently never fire)."""
    known = contract_metric_names()
    assert "jobreport_expected_interval_seconds" in known
    recorded = {rule["record"] for path in RULE_FILES for group in load_yaml(path)["groups"]
                for rule in group["rules"] if "record" in rule}
    for path in RULE_FILES:
        for group in load_yaml(path)["groups"]:
            for rule in group["rules"]:
                used = set(re.findall(r"\bjobreport_[a-z_]+", rule["expr"]))
                assert used <= known, f"{path.name}: unknown metrics {used - known}"
                colons = set(re.findall(r"\bjobreport:[a-z_:]+", rule["expr"]))
                assert colons <= recorded, f"{path.name}: unknown recording rules {colons}"


def test_amtool_check_config() -> None:
    """amtool accepts alertmanager.yml, placeholders included."""
    result = run(AMTOOL, "check-config", MONITORING / "alertmanager.yml")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


@pytest.mark.parametrize(
    ("labels", "receiver"),
    [
        (["alertname=JobreportJobOverdue", "severity=critical", "job=backup"],
         "jobreport-critical"),
        (["alertname=JobreportJobFailed", "severity=warning", "job=backup"],
         "jobreport-warning"),
        (["alertname=Other", "job=backup"], "jobreport-webhook"),
    ],
)
def test_alertmanager_routes_by_severity(labels: list[str], receiver: str) -> None:
    """Critical alerts reach the on-call receiver, warnings the chat receiver, anything
    else the default webhook."""
    result = run(AMTOOL, "config", "routes", "test",
                 f"--config.file={MONITORING / 'alertmanager.yml'}", *labels)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == receiver


def test_alertmanager_groups_by_job() -> None:
    """Notifications are grouped by job."""
    route = load_yaml(MONITORING / "alertmanager.yml")["route"]
    assert route["group_by"] == ["job"]


def test_jobreport_rules_generates_the_documented_absent_guards(tmp_path: Path) -> None:
    """`jobreport rules` for the example's jobs writes exactly the guards of
    rules/jobreport-absent.example.yml, and they pass the absent() unit tests."""
    config = tmp_path / "jobreport.toml"
    config.write_text('[jobs.backup]\nexpect_every = "24h"\n\n'
                      '[jobs.analysis]\nexpect_every = "1h"\nlabels = { team = "data" }\n')
    result = subprocess.run(
        [sys.executable, "-m", "jobreport", "rules", "--config", str(config)],
        check=False, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    generated = tmp_path / "jobreport-absent.yml"
    generated.write_text(result.stdout)

    def by_job(path: Path) -> dict[str, dict[str, Any]]:
        [group] = load_yaml(path)["groups"]
        assert group["name"] == "jobreport-absent"
        rules = {r["labels"]["job"]: r for r in group["rules"]}
        for rule in rules.values():
            rule["expr"] = " ".join(rule["expr"].split())
        return rules

    assert by_job(generated) == by_job(RULES / "jobreport-absent.example.yml")

    unit_test = load_yaml(MONITORING / "tests" / "jobreport-absent.test.yml")
    unit_test["rule_files"] = [str(generated)]
    test_file = tmp_path / "absent.test.yml"
    test_file.write_text(yaml.safe_dump(unit_test))
    checked = run(PROMTOOL, "test", "rules", test_file)
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_alerting_doc_threshold_example_is_a_valid_config(tmp_path: Path) -> None:
    """The jobreport.toml example in docs/alerting.md loads, and its grace lands in the
    expected interval the overdue rule compares with."""
    from jobreport import load_config

    doc = (ROOT / "docs" / "alerting.md").read_text(encoding="utf-8")
    [block] = re.findall(r"```toml\n(.*?)```", doc, flags=re.S)
    path = tmp_path / "jobreport.toml"
    path.write_text(block)
    config = load_config(env={}, config_file=str(path))
    hourly = config.job("import")
    assert hourly.expected_interval == 5400  # 1h + 30m
    daily = config.job("backup")
    assert daily.expected_interval == 95040  # 24h + 10%
    assert daily.max_runtime == 7200
