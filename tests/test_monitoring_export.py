"""`jobreport monitoring export` writes the whole monitoring side from the package data:
every file passes promtool and amtool, the Alertmanager route fits under a foreign root,
runbook links and metric names follow the options, and a second export leaves edited files
alone. `jobreport monitoring runbook` finds the shipped runbook."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from jobreport.monitoring import shipped
from tests.monitoring_helpers import AMTOOL, MONITORING, PROMTOOL, ROOT, load_yaml, write_yaml

pytestmark = pytest.mark.integration  # runs promtool, amtool and exports as child processes

RUNBOOK = "https://wiki.example.org/ops/jobreport-runbook"


def run(*argv: str | Path, cwd: Path | None = None,
        env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(a) for a in argv], check=False, capture_output=True, text=True,
                          timeout=120, cwd=cwd, env=env)


def jobreport(*args: str | Path, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return run(sys.executable, "-m", "jobreport", *args, cwd=cwd)


def config_file(tmp_path: Path) -> Path:
    path = tmp_path / "jobreport.toml"
    path.write_text('[jobs.backup]\nexpect_every = "24h"\n\n'
                    '[jobs.analysis]\nexpect_every = "1h"\nlabels = { team = "data" }\n')
    return path


def export(tmp_path: Path, *args: str, out: str = "out") -> tuple[Path, Any]:
    target = tmp_path / out
    result = jobreport("monitoring", "export", target, "--config", config_file(tmp_path),
                       *args, cwd=tmp_path)
    return target, result


def check_exported(out: Path) -> None:
    """Every exported file passes the tool made for it."""
    rule_files = sorted((out / "rules").rglob("*.yml"))
    assert out / "rules" / "generated" / "jobreport-absent.yml" in rule_files
    for path in rule_files:
        result = run(PROMTOOL, "check", "rules", path)
        assert result.returncode == 0, f"{path}: {result.stdout}{result.stderr}"
    tests = sorted((out / "tests").glob("*.yml"))
    assert tests
    result = run(PROMTOOL, "test", "rules", *tests, cwd=out)
    assert result.returncode == 0, result.stdout + result.stderr
    for name in ("prometheus.yml", "prometheus-scrape.yml"):
        result = run(PROMTOOL, "check", "config", out / name)
        assert result.returncode == 0, f"{name}: {result.stdout}{result.stderr}"
    for name in ("alertmanager.yml", "alertmanager-route.yml"):
        result = run(AMTOOL, "check-config", out / name)
        assert result.returncode == 0, f"{name}: {result.stdout}{result.stderr}"
    dashboard = out / "grafana" / "dashboards" / "jobreport.json"
    assert '"panels"' in dashboard.read_text()
    for provisioning in (out / "grafana" / "provisioning").rglob("*.yml"):
        assert load_yaml(provisioning)["apiVersion"] == 1


def runbook_links(out: Path) -> dict[str, str]:
    """alert name -> runbook_url of every alert rule in the export."""
    links = {}
    for path in (out / "rules").rglob("*.yml"):
        if path.name.endswith(".example.yml"):
            continue
        for group in load_yaml(path)["groups"]:
            for rule in group["rules"]:
                if "alert" in rule:
                    links[rule["alert"]] = rule["annotations"]["runbook_url"]
    return links


def runbook_headings() -> set[str]:
    """The anchors of the shipped runbook's headings (GitHub's rules)."""
    return {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-")
            for h in re.findall(r"^#+ (.+)$", shipped.runbook().read_text(), flags=re.M)}


def test_export_passes_promtool_and_amtool(tmp_path: Path) -> None:
    """The export holds rules with a guard per configured job, the promtool tests, both
    Prometheus and both Alertmanager files, and the Grafana files; each passes its tool."""
    out, result = export(tmp_path)
    assert result.returncode == 0, result.stderr
    check_exported(out)
    [group] = load_yaml(out / "rules" / "generated" / "jobreport-absent.yml")["groups"]
    assert sorted(r["labels"]["job"] for r in group["rules"]) == ["analysis", "backup"]
    # the shipped files are the repository's, byte for byte
    for name in ("rules/jobreport-alerts.yml", "rules/jobreport-recording.yml",
                 "docker-compose.yml", "grafana/provisioning/dashboards/jobreport.yml"):
        assert (out / name).read_text() == (MONITORING / name).read_text(), name
    # the dashboard: the shipped one with a variable for the jobs' grouping label (team)
    board = json.loads((out / "grafana" / "dashboards" / "jobreport.json").read_text())
    shipped_board = json.loads((MONITORING / "grafana" / "dashboards" / "jobreport.json")
                               .read_text())
    names = [v["name"] for v in board["templating"]["list"]]
    assert names == [v["name"] for v in shipped_board["templating"]["list"]
                     ][:3] + ["team"] + names[4:]
    assert len(board["panels"]) == len(shipped_board["panels"])
    # the scrape snippet is the Pushgateway job of prometheus.yml and nothing else
    snippet = load_yaml(out / "prometheus-scrape.yml")
    assert list(snippet) == ["scrape_configs"]
    [scrape] = snippet["scrape_configs"]
    assert scrape["job_name"] == "pushgateway" and scrape["honor_labels"] is True


def test_alertmanager_route_fits_under_an_existing_root(tmp_path: Path) -> None:
    """The marked route entry, pasted under a foreign root with the exported receivers and
    inhibition, is a valid config that sends every jobreport alert (and only those) to the
    jobreport receivers, by severity."""
    out, result = export(tmp_path)
    assert result.returncode == 0, result.stderr
    text = (out / "alertmanager-route.yml").read_text()
    block = re.search(r"^( *)# >>> jobreport route.*?\n(.*?)^ *# <<< jobreport route", text,
                      flags=re.M | re.S)
    assert block, text
    [route] = load_yaml_text(textwrap.dedent(block.group(2)))
    assert route["matchers"] == ['alertname=~"Jobreport.*"']
    snippet = load_yaml(out / "alertmanager-route.yml")
    existing = {
        "route": {"receiver": "team-default", "group_by": ["alertname"],
                  "routes": [{"matchers": ['team="web"'], "receiver": "team-web"}]},
        "receivers": [{"name": "team-default"}, {"name": "team-web"}],
    }
    existing["route"]["routes"].insert(0, route)
    existing["receivers"] += snippet["receivers"]
    existing["inhibit_rules"] = snippet["inhibit_rules"]
    merged = write_yaml(tmp_path / "merged.yml", existing)
    result = run(AMTOOL, "check-config", merged)
    assert result.returncode == 0, result.stdout + result.stderr
    for labels, receiver in [
        (["alertname=JobreportJobOverdue", "severity=critical", "job=backup"],
         "jobreport-critical"),
        (["alertname=JobreportJobFailed", "severity=warning", "job=backup"],
         "jobreport-warning"),
        (["alertname=JobreportJobAbsent", "severity=critical", "job=x", "team=web"],
         "jobreport-critical"),
        (["alertname=HighLatency", "team=web"], "team-web"),
        (["alertname=DiskFull"], "team-default"),
    ]:
        result = run(AMTOOL, "config", "routes", "test", f"--config.file={merged}", *labels)
        assert result.stdout.strip() == receiver, (labels, result.stdout, result.stderr)


def load_yaml_text(text: str) -> Any:
    import yaml

    return yaml.safe_load(text)


def test_runbook_links_are_absolute_with_runbook_url(tmp_path: Path) -> None:
    """With --runbook-url every alert (the absent() guards too) links to URL#its-section,
    and the shipped runbook has that section; without it the links stay relative."""
    out, result = export(tmp_path, "--runbook-url", RUNBOOK + "#ignored")
    assert result.returncode == 0, result.stderr
    check_exported(out)
    links = runbook_links(out)
    assert {"JobreportJobOverdue", "JobreportJobFailed", "JobreportJobAbsent"} <= set(links)
    headings = runbook_headings()
    for alert, link in links.items():
        assert link == f"{RUNBOOK}#{alert.lower()}", (alert, link)
        assert alert.lower() in headings, alert
    assert "docs/runbook.md" not in (out / "alertmanager.yml").read_text()

    plain, result = export(tmp_path, out="plain")
    assert result.returncode == 0, result.stderr
    assert all(link == f"docs/runbook.md#{alert.lower()}"
               for alert, link in runbook_links(plain).items())


def test_runbook_url_must_be_absolute(tmp_path: Path) -> None:
    """A relative --runbook-url is a usage error that writes nothing."""
    out, result = export(tmp_path, "--runbook-url", "wiki/runbook")
    assert result.returncode == 2
    assert "is not an absolute URL" in result.stderr
    assert not out.exists()


def test_namespace_renames_every_metric(tmp_path: Path) -> None:
    """--namespace moves every metric and recorded series of the rules, the guards and the
    dashboard to the namespace; the renamed rules still pass their unit tests."""
    out, result = export(tmp_path, "--namespace", "acme_batch")
    assert result.returncode == 0, result.stderr
    check_exported(out)
    for path in [*(out / "rules").rglob("*.yml"), *(out / "tests").glob("*.yml"),
                 out / "grafana" / "dashboards" / "jobreport.json"]:
        text = path.read_text()
        assert not re.search(r"(?<![A-Za-z0-9_])jobreport(_[a-z]|:[a-z])", text), path
    alerts = (out / "rules" / "jobreport-alerts.yml").read_text()
    assert "acme_batch_last_success_timestamp_seconds" in alerts
    recording = (out / "rules" / "jobreport-recording.yml").read_text()
    assert "record: acme_batch:seconds_since_last_success" in recording
    guards = (out / "rules" / "generated" / "jobreport-absent.yml").read_text()
    assert 'absent(acme_batch_last_end_timestamp_seconds{job="backup"})' in guards
    # names that are not metrics keep theirs
    assert "name: jobreport-alerts" in alerts and "alert: JobreportJobOverdue" in alerts

    bad, result = export(tmp_path, "--namespace", "9lives", out="bad")
    assert result.returncode == 2 and "invalid namespace" in result.stderr
    assert not bad.exists()


def test_second_export_keeps_edited_files(tmp_path: Path) -> None:
    """A second export replaces the files it wrote (here: new runbook links) but not the
    file edited since, and names it; --force overwrites it. A file no export wrote is
    protected too."""
    out, result = export(tmp_path)
    assert result.returncode == 0, result.stderr
    edited = out / "rules" / "jobreport-alerts.yml"
    edited.write_text(edited.read_text() + "# our own change\n")

    out, result = export(tmp_path, "--runbook-url", RUNBOOK)
    assert result.returncode == 1
    assert ("not overwritten, edited since the last export: rules/jobreport-alerts.yml\n"
            in result.stderr)
    assert "--force" in result.stderr
    assert edited.read_text().endswith("# our own change\n")
    assert "docs/runbook.md" in edited.read_text()
    # the rest moved on
    assert runbook_links(out)["JobreportJobAbsent"].startswith(RUNBOOK)

    _, result = export(tmp_path, "--runbook-url", RUNBOOK)
    assert result.returncode == 1, "still edited: still refused"
    assert "rules/jobreport-alerts.yml" in result.stderr

    out, result = export(tmp_path, "--runbook-url", RUNBOOK, "--force")
    assert result.returncode == 0, result.stderr
    assert "# our own change" not in edited.read_text()
    assert runbook_links(out)["JobreportJobOverdue"].startswith(RUNBOOK)
    out, result = export(tmp_path, "--runbook-url", RUNBOOK)
    assert result.returncode == 0, result.stderr
    assert "0 files written" in result.stdout
    check_exported(out)


def test_export_protects_files_it_did_not_write(tmp_path: Path) -> None:
    """Exporting into a directory that already holds a prometheus.yml of its own leaves that
    file alone (no manifest names it) and writes the rest."""
    own = tmp_path / "mon" / "prometheus.yml"
    own.parent.mkdir()
    own.write_text("global: {}\n")
    out, result = export(tmp_path, out="mon")
    assert result.returncode == 1
    assert "edited since the last export: prometheus.yml\n" in result.stderr
    assert own.read_text() == "global: {}\n"
    assert (out / "rules" / "jobreport-alerts.yml").exists()


@pytest.mark.parametrize(("sink", "scrape_job"), [("remote-write", None),
                                                   ("textfile", "node")])
def test_sink_variants_pass_promtool(tmp_path: Path, sink: str, scrape_job: str | None) -> None:
    """--sink writes that sink's rule variant (remote write: staleness-safe lookbacks, the
    guards too; textfile: node_exporter's health instead of the Pushgateway's) and its scrape
    job, and every file still passes promtool and amtool."""
    out, result = export(tmp_path, "--sink", sink, "--lookback", "9d",
                         "--runbook-url", RUNBOOK)
    assert result.returncode == 0, result.stderr
    assert not (out / "tests").exists(), "the unit tests are written for the Pushgateway rules"
    for path in sorted((out / "rules").rglob("*.yml")):
        checked = run(PROMTOOL, "check", "rules", path)
        assert checked.returncode == 0, f"{path}: {checked.stdout}{checked.stderr}"
    for name in ("prometheus.yml", "prometheus-scrape.yml"):
        checked = run(PROMTOOL, "check", "config", out / name)
        assert checked.returncode == 0, f"{name}: {checked.stdout}{checked.stderr}"
        jobs = [s["job_name"] for s in load_yaml(out / name)["scrape_configs"] or []]
        assert jobs == ([scrape_job] if scrape_job else []), name
    for name in ("alertmanager.yml", "alertmanager-route.yml"):
        checked = run(AMTOOL, "check-config", out / name)
        assert checked.returncode == 0, f"{name}: {checked.stdout}{checked.stderr}"
    alerts = (out / "rules" / "jobreport-alerts.yml").read_text()
    guards = (out / "rules" / "generated" / "jobreport-absent.yml").read_text()
    assert "push_time_seconds" not in alerts
    if sink == "remote-write":
        assert "last_over_time(jobreport_last_success_timestamp_seconds[9d])" in alerts
        assert 'absent_over_time(jobreport_running{job="backup"}[9d])' in guards
    else:
        assert 'up{job="node"}' in alerts
    headings = runbook_headings()
    for alert, link in runbook_links(out).items():
        assert link == f"{RUNBOOK}#{alert.lower()}", (alert, link)
        assert alert.lower() in headings, f"docs/runbook.md has no section {alert}"


def test_bad_lookback_is_a_usage_error(tmp_path: Path) -> None:
    """A lookback promtool would not take is refused before anything is written."""
    out, result = export(tmp_path, "--sink", "remote-write", "--lookback", "8 days")
    assert result.returncode == 2 and "lookback" in result.stderr
    assert not out.exists()


def test_runbook_command_finds_the_shipped_page(tmp_path: Path) -> None:
    """`jobreport monitoring runbook` prints where the runbook is (in a checkout: the
    repository's docs/runbook.md), --show prints the page."""
    where = jobreport("monitoring", "runbook", cwd=tmp_path)
    assert where.returncode == 0, where.stderr
    assert Path(where.stdout.strip()) == ROOT / "docs" / "runbook.md"
    page = jobreport("monitoring", "runbook", "--show", cwd=tmp_path)
    assert page.returncode == 0, page.stderr
    assert page.stdout == (ROOT / "docs" / "runbook.md").read_text()
    assert "## JobreportJobOverdue" in page.stdout


@pytest.mark.integration
def test_remote_write_dashboard_looks_back(tmp_path: Path) -> None:
    """For remote write the dashboard's panels read each jobreport series through
    last_over_time over the lookback (a job that does not run has stale samples), and
    every panel query still parses and evaluates in a real Prometheus."""
    from tests import servers
    from tests.monitoring_helpers import prom_query

    out, result = export(tmp_path, "--sink", "remote-write", "--lookback", "9d")
    assert result.returncode == 0, result.stderr
    board = json.loads((out / "grafana" / "dashboards" / "jobreport.json").read_text())

    def targets(panels: list[dict[str, Any]]) -> list[str]:
        found = []
        for panel in panels:
            found += [t["expr"] for t in panel.get("targets", [])]
            found += targets(panel.get("panels", []))
        return found

    exprs = targets(board["panels"])
    assert any("last_over_time(jobreport_last_duration_seconds{" in e for e in exprs)
    for expr in exprs:
        bare = re.sub(r"last_over_time\(jobreport_[a-z_]+(\{[^{}]*\})?\[9d\]\)", "", expr)
        assert not re.search(r"(?<![\w:])jobreport_[a-z_]+", bare), expr
    config = write_yaml(tmp_path / "prometheus.yml", {"global": {"scrape_interval": "1s"}})
    prometheus = servers.prometheus(tmp_path / "prometheus", config).start()
    try:
        for expr in exprs:
            concrete = re.sub(r"\$\{?\w+\}?", ".*", expr)  # every variable: "All"
            answer = prom_query(prometheus.url, concrete)
            assert answer["status"] == "success", (expr, answer)
    finally:
        prometheus.stop()
