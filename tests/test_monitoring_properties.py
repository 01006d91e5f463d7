"""A property: for any job names, label values and runbook URL jobreport accepts (hostile
ones: quotes, backslashes, `{{`, `}}`, `$`, YAML indicators, controls, line separators, any
script, very long), the export for every sink passes the real `promtool check rules` and
`amtool check-config`, every alert links to the URL as typed, and the guards fire in
`promtool test rules` with each job and label exactly as typed. Many jobs per example and
one tool call per example keep it fast."""

from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from jobreport.config import Config
from jobreport.spec import JobSpec
from jobreport.errors import InvalidNameError
from jobreport.monitoring.export import SINKS, export_files
from jobreport.monitoring.quoting import template_text
from jobreport.monitoring.rewrite import check_runbook_url
from jobreport.names import check_job, check_labels
from tests.monitoring_helpers import (
    AMTOOL,
    PROMTOOL,
    ExpectedAlert,
    alert_unit_test,
    expand_labels,
    rule_alerts,
)

pytestmark = pytest.mark.integration  # runs promtool on generated exports

FRAGMENTS = [
    '"', "'", "\\", "\\n", "{{", "}}", "{{ $value }}", '{{ printf "pwn" }}', "{{/* c */}}",
    "{{-", "-}}", "$", "$labels.job", ": ", " - ", "- ", "#", " #", "&a", "*a", "!!str", "|",
    ">", "%", "@", "`", "{", "}", "[", "]", ",", "?", "...", "---", "~", "null", "yes", "0x1F",
    "\n", "\t", "\r", "\x00", "\x7f", "\x85", "\u2028", "\u2029", "\ufeff", "\u00a0", "ü",
    "日本", "😀", "\U0010fffd", "jobreport_last_end_timestamp_seconds", "jobreport:x",
    "docs/runbook.md#x", " ", "",
]
hostile = st.lists(st.one_of(st.sampled_from(FRAGMENTS), st.text(max_size=4)),
                   min_size=1, max_size=8).map("".join)
very_long = st.builds(lambda piece, n: (piece * n)[:1024], st.sampled_from(FRAGMENTS[:40]),
                      st.integers(200, 1100))
values = st.one_of(hostile, very_long)


def accepted_job(name: str) -> bool:
    try:
        check_job(name)
    except InvalidNameError:
        return False
    return True


job_names = values.filter(accepted_job)
#: grouping label names (checked by names.check_labels; never severity or alertname)
label_names = st.sampled_from(["team", "env", "path", "jobreport_env", "x_1"])
jobs = st.dictionaries(job_names, st.dictionaries(label_names, values, max_size=2),
                       min_size=1, max_size=5)
urls = st.builds(lambda path: "https://wiki.example.org/" + path, values)


def exported(config: Config, url: str, namespace: str, root: Path) -> dict[str, Path]:
    """Export for every sink under ``root``; sink -> its directory."""
    out = {}
    for sink in SINKS:
        files = export_files(config, sink=sink, runbook_url=url, namespace=namespace,
                             lookback="3d")
        for path, text in files.items():
            target = root / sink / path
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text, encoding="utf-8")
        out[sink] = root / sink
    return out


def expected_alerts(config: Config, url: str, directory: Path) -> list[ExpectedAlert]:
    """The alerts a Prometheus with no data at all fires at 11m: a guard per job, with its
    job and grouping labels as typed (``absent()`` drops empty ones), and the alert that no
    Pushgateway / node_exporter is scraped, each linking to ``url#alert``."""
    guards = directory / "rules" / "generated" / "jobreport-absent.yml"
    template = next(iter(rule_alerts(guards).values()))["annotations"]
    alerts = []
    for job in config.jobs:
        labels = {k: v for k, v in config.grouping(job).items() if k != "instance" and v}
        alerts.append(ExpectedAlert("JobreportJobAbsent", {**labels, "severity": "critical"}, {
            "summary": expand_labels(template["summary"], labels),
            "description": expand_labels(template["description"], labels),
            "runbook_url": f"{url}#jobreportjobabsent"}))
    rules = rule_alerts(directory / "rules" / "jobreport-alerts.yml")
    for name, job in (("JobreportPushgatewayNotScraped", "pushgateway"),
                      ("JobreportNodeExporterNotScraped", "node")):
        if name in rules:
            annotations = rules[name]["annotations"]
            labels = {"job": job}
            alerts.append(ExpectedAlert(name, {**labels, "severity": "critical"}, {
                "summary": expand_labels(annotations["summary"], labels),
                "description": expand_labels(annotations["description"], labels),
                "runbook_url": f"{url}#{name.lower()}"}))
    return alerts


def tool(*argv: str | Path, cwd: Path) -> str:
    result = subprocess.run([str(a) for a in argv], capture_output=True, text=True,
                            timeout=120, check=False, cwd=cwd)
    output = result.stdout + result.stderr
    assert result.returncode == 0 and "FAILED" not in output, output
    return output


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                  HealthCheck.filter_too_much])
@given(jobs=jobs, labels=st.dictionaries(label_names, values, max_size=2), url=urls,
       namespace=st.sampled_from(["jobreport", "acme", "jobreport_x"]))
# NEL (U+0085) and the other line and format characters Go's YAML folds or drops when a
# scalar carries them raw (found by this property: the guard fired with job="*a\" \"ü \"\"")
@example(jobs={'*a"\x85"ü\x85""': {}, "a\u2028b\ufeffc": {"team": "x\u2029y"}},
         labels={"team": '"', "env": '\U0010fffd$"'}, url="https://wiki.example.org/x",
         namespace="jobreport")
def test_hostile_values_give_exports_the_tools_accept(
        jobs: dict[str, dict[str, str]], labels: dict[str, str], url: str,
        namespace: str) -> None:
    """Every value a user can type into an export reaches promtool and amtool safely, and
    reaches the alerts exactly as typed."""
    try:
        url = check_runbook_url(url)
        check_labels(labels)
        for job_labels in jobs.values():
            check_labels(job_labels)
    except ValueError:  # what the command line refuses is refused there (exit 2)
        assume(False)
    config = Config(labels=labels,
                    jobs={job: JobSpec(job, job_labels) for job, job_labels in jobs.items()})
    with tempfile.TemporaryDirectory(prefix="jobreport-hostile-") as tmp:
        root = Path(tmp)
        out = exported(config, url, namespace, root)
        rule_files = sorted(p for d in out.values() for p in (d / "rules").rglob("*.yml"))
        tool(PROMTOOL, "check", "rules", *rule_files, cwd=root)
        tool(AMTOOL, "check-config", *(d / name for d in out.values()
                                       for name in ("alertmanager.yml",
                                                    "alertmanager-route.yml")), cwd=root)
        unit_tests = []
        for sink, directory in out.items():
            for path in (directory / "rules").rglob("*.yml"):
                for name, rule in rule_alerts(path).items():
                    if path.name.endswith(".example.yml"):
                        continue
                    assert rule["annotations"]["runbook_url"] == template_text(
                        f"{url}#{name.lower()}"), (sink, path, name)
            unit_tests.append(alert_unit_test(
                root / f"{sink}.test.yml",
                [directory / "rules" / "generated" / "jobreport-absent.yml",
                 directory / "rules" / "jobreport-alerts.yml"],
                expected_alerts(config.with_overrides(namespace=namespace), url,
                                directory)))
        tool(PROMTOOL, "test", "rules", *unit_tests, cwd=root)

