"""The rule variants per sink: derived from the base rules, valid for promtool, staleness-safe
for remote write."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from jobreport.monitoring.variants import SINKS, base_rules, lookback_selectors, rules_for

PROMTOOL = shutil.which("promtool") or "/usr/bin/promtool"


def _alerts(text: str) -> dict[str, str]:
    doc = yaml.safe_load(text)
    return {r["alert"]: r["expr"] for g in doc["groups"] for r in g["rules"] if "alert" in r}


@pytest.mark.parametrize("sink", SINKS)
def test_every_variant_passes_promtool(tmp_path: Path, sink: str) -> None:
    """promtool check rules accepts each generated file."""
    files = rules_for(sink, lookback="3d")
    assert set(files) == {"jobreport-alerts.yml", "jobreport-recording.yml"}
    paths = []
    for name, text in files.items():
        path = tmp_path / name
        path.write_text(text)
        paths.append(str(path))
    check = subprocess.run([PROMTOOL, "check", "rules", *paths], capture_output=True,
                           text=True, timeout=60)
    assert check.returncode == 0, check.stdout + check.stderr


def test_remote_write_looks_back_in_every_job_alert() -> None:
    """Every base job alert is kept, and every jobreport_ selector in it looks back over the
    window; the Pushgateway's own alerts are left out."""
    base = _alerts(base_rules()["jobreport-alerts.yml"])
    variant = _alerts(rules_for("remote-write", lookback="9d")["jobreport-alerts.yml"])
    job_alerts = {a for a, e in base.items() if "push_" not in e and "pushgateway" not in e}
    assert set(variant) == job_alerts
    assert {"JobreportJobOverdue", "JobreportJobFailed"} <= job_alerts
    for expr in variant.values():
        bare = re.findall(r"(?<![\w:(])jobreport_\w+(?:\{[^}]*\})?(?!\[)", expr)
        assert not bare, expr
        assert "[9d])" in expr


def test_textfile_swaps_gateway_alerts_for_node_exporter_ones() -> None:
    """The textfile variant keeps the job alerts as they are and watches node_exporter."""
    base = _alerts(base_rules()["jobreport-alerts.yml"])
    variant = _alerts(rules_for("textfile")["jobreport-alerts.yml"])
    assert variant["JobreportJobOverdue"] == base["JobreportJobOverdue"]
    assert not any("push_" in e or "pushgateway" in e for e in variant.values())
    assert 'up{job="node"}' in variant["JobreportNodeExporterDown"]
    assert "node_textfile_scrape_error" in variant["JobreportTextfileError"]


def test_new_base_rules_get_variants_without_an_edit() -> None:
    """A rule added to the base file is rewritten too (the variants follow the base)."""
    base = {"jobreport-alerts.yml": (
        "groups:\n- name: g\n  rules:\n  - alert: JobreportJobTooShort\n"
        "    expr: jobreport_last_duration_seconds < jobreport_min_runtime_seconds\n")}
    expr = _alerts(rules_for("remote-write", lookback="2d", base=base)["jobreport-alerts.yml"])
    assert expr["JobreportJobTooShort"] == (
        "last_over_time(jobreport_last_duration_seconds[2d]) < "
        "last_over_time(jobreport_min_runtime_seconds[2d])")


def test_selector_rewrite_keeps_matchers_and_leaves_other_names() -> None:
    """Label matchers stay inside the range selector; recording rules, time() and
    non-jobreport series are untouched."""
    out = lookback_selectors('time() - jobreport:x + jobreport_a{outcome="s"} + up', "1d")
    assert out == 'time() - jobreport:x + last_over_time(jobreport_a{outcome="s"}[1d]) + up'


def test_bad_lookback_and_sink_are_refused() -> None:
    """A lookback that is not a Prometheus duration, or an unknown sink, is a ValueError."""
    with pytest.raises(ValueError, match="lookback"):
        rules_for("remote-write", lookback="8 days")
    with pytest.raises(ValueError, match="sink"):
        rules_for("kafka")


def test_cli_rules_per_sink_pass_promtool(tmp_path: Path) -> None:
    """`jobreport rules --sink S` prints one file with the variant's alerts, recording rules
    and the guards (absent_over_time for remote write) that promtool accepts."""
    from click.testing import CliRunner

    from jobreport.cli import main

    config = tmp_path / "jobreport.toml"
    config.write_text('[jobs.backup]\nexpect_every = "24h"\n')
    for sink in SINKS:
        result = CliRunner().invoke(main, ["rules", "--sink", sink, "--lookback", "2d",
                                           "--config", str(config)])
        assert result.exit_code == 0, result.output
        path = tmp_path / f"{sink}.yml"
        path.write_text(result.stdout)
        check = subprocess.run([PROMTOOL, "check", "rules", str(path)], capture_output=True,
                               text=True, timeout=60)
        assert check.returncode == 0, check.stdout + check.stderr
        alerts = _alerts(result.stdout)
        assert "JobreportJobAbsent" in alerts
        if sink == "remote-write":
            assert alerts["JobreportJobAbsent"].startswith("absent_over_time(")
            assert "[2d]" in alerts["JobreportJobOverdue"]


def test_cli_interval_sets_every_group(tmp_path: Path) -> None:
    """--interval writes `interval:` on each group (promtool accepts it); a bad one is a
    usage error."""
    from click.testing import CliRunner

    from jobreport.cli import main

    result = CliRunner().invoke(main, ["rules", "--sink", "remote-write", "--interval", "1m"])
    assert result.exit_code == 0, result.output
    doc = yaml.safe_load(result.stdout)
    assert doc["groups"] and all(g["interval"] == "1m" for g in doc["groups"])
    path = tmp_path / "rules.yml"
    path.write_text(result.stdout)
    check = subprocess.run([PROMTOOL, "check", "rules", str(path)], capture_output=True,
                           text=True, timeout=60)
    assert check.returncode == 0, check.stdout + check.stderr
    bad = CliRunner().invoke(main, ["rules", "--sink", "textfile", "--interval", "soon"])
    assert bad.exit_code == 2 and "--interval" in bad.output


#: The clause that retires the groups of a host that is gone (--retire-after), as every
#: per-job alert of the base rules ends with it.
RETIRED = re.compile(
    r"unless(?: ignoring\((?:outcome|threshold)\))?\s*\(\s*\(\s*time\(\) - "
    r"jobreport_last_start_timestamp_seconds\s*> jobreport_retire_after_seconds\s*\)\s*"
    r"and\s*\(\s*jobreport_last_start_timestamp_seconds\s*< ignoring\(instance\) "
    r"group_left\(\)\s*max without\(instance\) "
    r"\(jobreport_last_start_timestamp_seconds\)\s*\)\s*\)\s*$")


def test_every_job_alert_honours_retire_after() -> None:
    """Every alert about one group (it reads jobreport_* series) ends with the retirement
    clause, the whole expression before it in parentheses: a rule added later that forgets
    it would keep paging for hosts that are gone."""
    base = _alerts(base_rules()["jobreport-alerts.yml"])
    job_alerts = {a: e for a, e in base.items() if "jobreport_" in e}
    assert len(job_alerts) >= 9
    for name, expr in job_alerts.items():
        assert RETIRED.search(expr), name
        assert expr.lstrip().startswith("("), name


@pytest.mark.parametrize("sink", SINKS)
def test_retire_after_unit_tests_pass_against_every_variant(tmp_path: Path, sink: str) -> None:
    """The promtool unit tests of --retire-after pass against each sink's variant of the
    alert rules: retired groups are silent and live ones alert, whichever the sink."""
    (tmp_path / "rules").mkdir()
    (tmp_path / "tests").mkdir()
    variant = rules_for(sink, lookback="1d")["jobreport-alerts.yml"]
    (tmp_path / "rules" / "jobreport-alerts.yml").write_text(variant)
    source = Path(__file__).resolve().parent.parent / "monitoring" / "tests"
    test = tmp_path / "tests" / "jobreport-retire.test.yml"
    shutil.copy(source / "jobreport-retire.test.yml", test)
    done = subprocess.run([PROMTOOL, "test", "rules", str(test)], capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
@pytest.mark.parametrize("sink", SINKS)
def test_every_variant_passes_the_unit_tests_of_the_job_alerts(tmp_path: Path, sink: str) -> None:
    """The promtool unit tests of the output alerts (dense synthetic series, as a scrape or
    one delivery per minute writes them) pass against each sink's variant unchanged."""
    files = rules_for(sink, lookback="8d")
    (tmp_path / "rules").mkdir()
    (tmp_path / "rules" / "jobreport-alerts.yml").write_text(files["jobreport-alerts.yml"])
    (tmp_path / "tests").mkdir()
    source = Path(__file__).resolve().parents[1] / "monitoring" / "tests"
    test = tmp_path / "tests" / "jobreport-outputs.test.yml"
    shutil.copy(source / "jobreport-outputs.test.yml", test)
    result = subprocess.run([PROMTOOL, "test", "rules", str(test)], capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    if sink == "remote-write":
        assert "last_over_time(jobreport_min_size_bytes[8d])" in files["jobreport-alerts.yml"]
