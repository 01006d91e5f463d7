"""What users type reaches the exported and printed rules as data: a runbook URL or a job
name holding quotes, backslashes or Go template actions gives files promtool accepts, and
the alerts carry the text exactly as typed (never evaluated); what no URL can hold is a
usage error. Each case was a reproduced failure: a file promtool rejected, a template
Prometheus executed, a value silently changed."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.monitoring_helpers import (
    AMTOOL,
    PROMTOOL,
    ExpectedAlert,
    alert_unit_test,
    expand_labels,
    load_yaml,
    rule_alerts,
)

pytestmark = pytest.mark.integration  # runs promtool, amtool and exports as child processes

WIKI = "https://wiki.example.org/ops/"


def run(*argv: str | Path, cwd: Path | None = None,
        env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(a) for a in argv], check=False, capture_output=True, text=True,
                          timeout=120, cwd=cwd, env=env)


def jobreport(*args: str | Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    return run(sys.executable, "-m", "jobreport", *args, cwd=cwd)


def promtool_accepts(*paths: Path) -> None:
    """promtool check rules succeeds without a lint complaint (it prints FAILED for a
    duplicate rule yet exits 0)."""
    checked = run(PROMTOOL, "check", "rules", *paths)
    assert checked.returncode == 0 and "FAILED" not in checked.stdout + checked.stderr, (
        checked.stdout + checked.stderr)


def promtool_tests_pass(*paths: Path, cwd: Path | None = None) -> None:
    tested = run(PROMTOOL, "test", "rules", *paths, cwd=cwd)
    assert tested.returncode == 0, tested.stdout + tested.stderr


def guard_alert(job: str, runbook: str = "docs/runbook.md", **labels: str) -> ExpectedAlert:
    """The JobreportJobAbsent alert of ``job`` as it must fire: job and labels as typed."""
    got = {"job": job, **labels}
    template = rule_alerts(Path(__file__).resolve().parent.parent / "monitoring" / "rules"
                           / "jobreport-absent.example.yml")["JobreportJobAbsent"]
    return ExpectedAlert("JobreportJobAbsent", {**got, "severity": "critical"}, {
        "summary": expand_labels(template["annotations"]["summary"], got),
        "description": expand_labels(template["annotations"]["description"], got),
        "runbook_url": f"{runbook}#jobreportjobabsent"})


@pytest.mark.parametrize("url", [
    WIKI + 'run"book', WIKI + "a\\b", WIKI + "{{x", WIKI + "{{ $value }}",
    WIKI + '{{ printf "pwn" }}', WIKI + "a}}b{{", WIKI + "a b: c - !d &e *f |g >h %i @j `k",
    WIKI + "jöb/😀"],
    ids=["quote", "backslash", "open-braces", "value", "printf", "braces", "yaml", "unicode"])
def test_runbook_url_reaches_every_alert_as_typed(tmp_path: Path, url: str) -> None:
    """An export with a runbook URL holding a quote, a backslash, `{{`, a template action,
    YAML indicators or unicode exits 0 with rule files promtool accepts, every alert's
    runbook_url annotation expands to URL#alert (promtool test rules, on a guard and on the
    alert of a Pushgateway that is not scraped), and amtool accepts the Alertmanager
    files."""
    (tmp_path / "jobreport.toml").write_text('[jobs.backup]\nexpect_every = "24h"\n')
    out = tmp_path / "out"
    result = jobreport("monitoring", "export", out, "--config", "jobreport.toml",
                       "--runbook-url", url, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    rules = sorted((out / "rules").rglob("*.yml"))
    promtool_accepts(*rules)
    checked = run(AMTOOL, "check-config", out / "alertmanager.yml",
                  out / "alertmanager-route.yml")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    alerts = out / "rules" / "jobreport-alerts.yml"
    not_scraped = rule_alerts(alerts)["JobreportPushgatewayNotScraped"]["annotations"]
    gateway = {"job": "pushgateway"}
    expected = [guard_alert("backup", url), ExpectedAlert(
        "JobreportPushgatewayNotScraped", {**gateway, "severity": "critical"},
        {"summary": expand_labels(not_scraped["summary"], gateway),
         "description": expand_labels(not_scraped["description"], gateway),
         "runbook_url": f"{url}#jobreportpushgatewaynotscraped"})]
    unit = alert_unit_test(tmp_path / "hostile.test.yml",
                           [out / "rules" / "generated" / "jobreport-absent.yml", alerts],
                           expected)
    promtool_tests_pass(unit)


def test_hostile_runbook_url_keeps_the_shipped_unit_tests_passing(tmp_path: Path) -> None:
    """The exported promtool unit tests expect every alert's runbook_url as typed, and pass
    against the exported rules, for a URL holding everything that broke them before."""
    url = WIKI + 'a"b\\c{{ $value }}{{x}}'
    out = tmp_path / "out"
    result = jobreport("monitoring", "export", out, "--runbook-url", url, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    tests = sorted((out / "tests").glob("*.yml"))
    assert tests
    promtool_tests_pass(*tests, cwd=out)
    links = [alert["exp_annotations"]["runbook_url"] for path in tests
             for case in load_yaml(path)["tests"] for check in case.get("alert_rule_test", [])
             for alert in check.get("exp_alerts", [])]
    assert links and all(link.startswith(url + "#") for link in links)


@pytest.mark.parametrize(("url", "named"), [
    (WIKI + "a\nb", "a newline"), (WIKI + "a\tb", "a tab"), (WIKI + "a\rb", "a carriage return"),
    (WIKI + "a\x00b", "U+0000"), (WIKI + "a\x85b", "U+0085")])
def test_runbook_url_with_a_control_character_is_a_usage_error(
        tmp_path: Path, url: str, named: str) -> None:
    """A URL cannot hold a newline or another control character (Python's URL parser
    dropped a newline in silence): exit 2 naming it, nothing written, from the flag and from
    the environment alike."""
    out = tmp_path / "out"
    if "\x00" in url:  # no argv or environment string can hold a NUL
        from jobreport.monitoring.rewrite import check_runbook_url

        with pytest.raises(ValueError, match=re.escape(named)):
            check_runbook_url(url)
        return
    result = jobreport("monitoring", "export", out, "--runbook-url", url, cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert named in result.stderr and "--runbook-url" in result.stderr
    assert not out.exists()
    env = {**os.environ, "JOBREPORT_RUNBOOK_URL": url}
    result = run(sys.executable, "-m", "jobreport", "monitoring", "export", out, cwd=tmp_path,
                 env=env)
    assert result.returncode == 2 and named in result.stderr
    assert not out.exists()


@pytest.mark.parametrize("job", ["{{", 'x{{ printf "pwn" }}', "}}{{ $value }}", 'a"b\\c',
                                 "a}b{c", "backup 😀", "jobreport_selftest", "- x: #y"])
def test_job_names_reach_the_guards_as_data(tmp_path: Path, job: str) -> None:
    """`jobreport rules --job NAME` for a job named `{{` (which broke the whole file) or
    `x{{ printf "pwn" }}` (which Prometheus executed: the guard fired with job="xpwn"), and
    other names jobreport accepts: promtool accepts the file, and the guard fires with the
    job exactly as typed, its summary naming it as typed."""
    result = jobreport("rules", "--job", job, "--job", "backup", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    guards = tmp_path / "guards.yml"
    guards.write_text(result.stdout)
    promtool_accepts(guards)
    unit = alert_unit_test(tmp_path / "guards.test.yml", [guards],
                           [guard_alert(job), guard_alert("backup")])
    promtool_tests_pass(unit)


def test_config_sections_and_labels_reach_every_sink_as_data(tmp_path: Path) -> None:
    """Job names from `[jobs."..."]` sections and label values from `labels = {...}` (here
    a template action, a quote, `jobreport_` and a character beyond the BMP, which broke the
    YAML) give guards for every sink that fire with the labels as written; --namespace
    renames metrics, never a job name, label value or label name."""
    job = 'x{{ printf "pwn" }} "😀" jobreport_x'
    (tmp_path / "jobreport.toml").write_text(
        f"[jobs.{json.dumps(job, ensure_ascii=False)}]\n"
        'labels = { jobreport_env = "jobreport_prod {{ $value }}", empty = "" }\n')
    promtool_inputs = []
    for sink in ("pushgateway", "remote-write", "textfile"):
        out = tmp_path / sink
        result = jobreport("monitoring", "export", out, "--config", "jobreport.toml",
                           "--sink", sink, "--namespace", "acme", cwd=tmp_path)
        assert result.returncode == 0, result.stderr
        guards = out / "rules" / "generated" / "jobreport-absent.yml"
        promtool_accepts(guards)
        text = guards.read_text()
        assert "acme_running{" in text and "jobreport_x" in text and "jobreport_prod" in text
        board = json.loads((out / "grafana" / "dashboards" / "jobreport.json").read_text())
        assert "jobreport_env" in [v["name"] for v in board["templating"]["list"]]
        promtool_inputs.append(alert_unit_test(
            tmp_path / f"{sink}.test.yml", [guards],
            [guard_alert(job, jobreport_env="jobreport_prod {{ $value }}")]))
    promtool_tests_pass(*promtool_inputs)


def test_remote_write_guard_looks_back_whatever_the_job_name(tmp_path: Path) -> None:
    """The remote-write guards use absent_over_time also for a job whose name holds braces
    (the text rewrite that made them skipped such a selector)."""
    result = jobreport("rules", "--sink", "remote-write", "--lookback", "2d", "--job", "a}b",
                       cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    [guard] = [r for g in load_yaml_text(result.stdout)["groups"] for r in g["rules"]
               if r.get("alert") == "JobreportJobAbsent"]
    assert guard["expr"].split() == [
        'absent_over_time(jobreport_last_end_timestamp_seconds{job="a}b"}[2d])', "and",
        'absent_over_time(jobreport_running{job="a}b"}[2d])']


def test_a_job_name_jobreport_does_not_accept_is_a_usage_error(tmp_path: Path) -> None:
    """`--job ''` names no job: exit 2, as everywhere else jobreport takes a job name."""
    for command in (["rules"], ["monitoring", "export", "out"]):
        result = jobreport(*command, "--job", "", cwd=tmp_path)
        assert result.returncode == 2, result.stderr
        assert "job name" in result.stderr
    assert not (tmp_path / "out").exists()


def load_yaml_text(text: str) -> dict[str, list[dict[str, list[dict[str, str]]]]]:
    import yaml

    data: dict[str, list[dict[str, list[dict[str, str]]]]] = yaml.safe_load(text)
    return data
