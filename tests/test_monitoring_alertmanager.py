"""The Alertmanager side of an export is paste-ready: the pieces of alertmanager-route.yml go
under route.routes:, inhibit_rules: and receivers: of Debian's alertmanager.yml as they are
(amtool accepts the result and routes by it), each piece is marked once, no receiver leans
on another through a YAML anchor, and each sink's inhibition names only alerts that sink's
rules define, and inhibits what it should in a real Alertmanager."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests import servers
from tests.monitoring_helpers import (
    AMTOOL,
    WebhookReceiver,
    alertmanager_test_config,
    load_yaml,
    rule_alerts,
    wait_for,
)

pytestmark = pytest.mark.integration  # runs amtool on each export

#: Debian's /etc/prometheus/alertmanager.yml as prometheus-alertmanager 0.25.0-1 installs it
#: (a copy: the machine's own may have been edited).
DEBIAN = Path(__file__).resolve().parent / "data" / "debian-alertmanager.yml"
SINKS = ("pushgateway", "remote-write", "textfile")
#: piece -> the line of Debian's file it goes under
PIECES = {"route": "  routes:", "inhibition": "inhibit_rules:", "receivers": "receivers:"}


def run(*argv: str | Path, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(a) for a in argv], check=False, capture_output=True, text=True,
                          timeout=120, cwd=cwd)


def export(tmp_path: Path, sink: str) -> Path:
    out = tmp_path / sink
    result = run(sys.executable, "-m", "jobreport", "monitoring", "export", out, "--sink", sink,
                 "--job", "backup", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    return out


def piece(text: str, name: str) -> str:
    """The lines from ``# >>> jobreport NAME`` to ``# <<< jobreport NAME``, as
    `sed -n '/>>> jobreport NAME/,/<<< jobreport NAME/p'` prints them."""
    lines = text.splitlines(keepends=True)
    start = next(i for i, line in enumerate(lines) if f">>> jobreport {name}" in line)
    end = next(i for i, line in enumerate(lines) if i > start
               and f"<<< jobreport {name}" in line)
    return "".join(lines[start:end + 1])


def pasted_into_debian(snippet: str) -> str:
    """Debian's alertmanager.yml with each piece pasted, unchanged, right after the line
    it goes under (the route first among the root route's children)."""
    lines = DEBIAN.read_text().splitlines(keepends=True)
    for name, under in PIECES.items():
        [at] = [i for i, line in enumerate(lines) if line.rstrip() == under]
        lines.insert(at + 1, piece(snippet, name))
    return "".join(lines)


@pytest.mark.parametrize("sink", SINKS)
def test_pieces_paste_into_debians_alertmanager_yml(tmp_path: Path, sink: str) -> None:
    """Pasted as they are under Debian's route.routes:, inhibit_rules: and receivers:
    (which put list items flush with their key; the pieces used to be indented two spaces
    deeper and broke it), the result passes amtool check-config, sends jobreport alerts to
    the jobreport receivers by severity, and leaves Debian's own routes as they were."""
    out = export(tmp_path, sink)
    merged = tmp_path / "alertmanager.yml"
    merged.write_text(pasted_into_debian((out / "alertmanager-route.yml").read_text()))
    checked = run(AMTOOL, "check-config", merged)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    inhibitions = len(load_yaml(out / "alertmanager-route.yml")["inhibit_rules"] or [])
    assert f" - {inhibitions + 1} inhibit rules" in checked.stdout
    assert " - 8 receivers" in checked.stdout  # Debian's five, jobreport's three
    for labels, receiver in [
        (["alertname=JobreportJobOverdue", "severity=critical", "job=backup"],
         "jobreport-critical"),
        (["alertname=JobreportJobFailed", "severity=warning", "job=backup",
          "service=files"], "jobreport-warning"),
        (["alertname=DiskFull", "service=files", "severity=critical"], "team-Y-pager"),
        (["alertname=DiskFull"], "team-X-mails"),
    ]:
        routed = run(AMTOOL, "config", "routes", "test", f"--config.file={merged}", *labels)
        assert routed.stdout.strip() == receiver, (labels, routed.stdout, routed.stderr)


def test_each_piece_is_marked_once(tmp_path: Path) -> None:
    """Each marker appears once, as a comment line of its own: the header no longer holds
    the marker text (an extraction from the first ">>> jobreport route" took the header
    along), and each marked piece is a YAML list by itself."""
    out = export(tmp_path, "pushgateway")
    for path in (out / "alertmanager-route.yml", out / "alertmanager.yml"):
        text = path.read_text()
        for name in PIECES:
            for marker in (f">>> jobreport {name}", f"<<< jobreport {name}"):
                [line] = [ln for ln in text.splitlines() if marker in ln]
                assert re.fullmatch(rf" *# {marker}(:.*)?", line), line
            items = yaml.safe_load(piece(text, name))
            assert isinstance(items, list) and items, (path, name)


def test_receivers_share_no_anchor(tmp_path: Path) -> None:
    """No receiver refers to another through a YAML anchor: drop the webhook receiver
    (which held the anchor the other two used) and point the routes elsewhere, and the rest
    is still a valid config."""
    out = export(tmp_path, "pushgateway")
    for name in ("alertmanager.yml", "alertmanager-route.yml"):
        tokens = yaml.scan((out / name).read_text())
        assert not [t for t in tokens if isinstance(t, (yaml.AnchorToken, yaml.AliasToken))]
    text = (out / "alertmanager-route.yml").read_text()
    kept = re.sub(r"^- name: jobreport-webhook\n(?:(?:  .*)?\n)*", "", text, flags=re.M)
    assert "name: jobreport-webhook" not in kept and "name: jobreport-critical" in kept
    kept = kept.replace("receiver: jobreport-webhook", "receiver: jobreport-critical")
    path = tmp_path / "without-webhook.yml"
    path.write_text(kept)
    checked = run(AMTOOL, "check-config", path)
    assert checked.returncode == 0, checked.stdout + checked.stderr


def alertnames_of(matchers: list[str]) -> list[str]:
    """The alert names an inhibition's matchers name (``alertname="A"``,
    ``alertname=~"A|B"``); a pattern with other regex syntax is returned as is."""
    names = []
    for matcher in matchers:
        m = re.fullmatch(r'alertname(=~?)"(.*)"', matcher)
        assert m, matcher
        names += m.group(2).split("|") if m.group(1) == "=~" else [m.group(2)]
    return names


@pytest.mark.parametrize("sink", SINKS)
def test_inhibition_names_only_alerts_the_sink_defines(tmp_path: Path, sink: str) -> None:
    """Every alert an inhibition names (source) is one that sink's exported rules define,
    and every target pattern matches some of them; the textfile inhibition used to name the
    Pushgateway alerts, which its rules do not have."""
    out = export(tmp_path, sink)
    defined = set()
    for path in (out / "rules").rglob("*.yml"):
        if not path.name.endswith(".example.yml"):
            defined |= set(rule_alerts(path))
    for name in ("alertmanager.yml", "alertmanager-route.yml"):
        rules = load_yaml(out / name)["inhibit_rules"] or []
        assert bool(rules) == (sink != "remote-write"), (sink, rules)
        for rule in rules:
            for source in alertnames_of(rule["source_matchers"]):
                assert source in defined, (sink, source)
            for target in alertnames_of(rule["target_matchers"]):
                assert any(re.fullmatch(target, a) for a in defined), (sink, target)


def post_alerts(url: str, alerts: list[dict[str, Any]]) -> None:
    body = json.dumps([{"labels": labels} for labels in alerts]).encode()
    request = urllib.request.Request(f"{url}/api/v2/alerts", data=body, method="POST",
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as answer:
        assert answer.status == 200


@pytest.mark.integration
def test_textfile_inhibition_silences_only_the_host_whose_node_exporter_is_down(
        tmp_path: Path) -> None:
    """In a real Alertmanager with the exported textfile config, node_exporter down on one
    host inhibits the job alerts of that host (same instance) and no other host's."""
    out = export(tmp_path, "textfile")
    webhook = WebhookReceiver().start()
    config = alertmanager_test_config(tmp_path / "am.yml", webhook_url=webhook.url,
                                      source=out / "alertmanager.yml")
    am = servers.alertmanager(tmp_path / "alertmanager", config).start()
    try:
        post_alerts(am.url, [
            {"alertname": "JobreportNodeExporterDown", "severity": "critical",
             "job": "node", "instance": "h1:9100"},
            {"alertname": "JobreportJobFailed", "severity": "warning", "job": "backup",
             "instance": "h1:9100"},
            {"alertname": "JobreportJobFailed", "severity": "warning", "job": "backup",
             "instance": "h2:9100"},
        ])

        def states() -> dict[str, str] | None:
            with urllib.request.urlopen(f"{am.url}/api/v2/alerts", timeout=10) as answer:
                alerts = json.load(answer)
            found = {a["labels"]["instance"]: a["status"]["state"] for a in alerts
                     if a["labels"]["alertname"] == "JobreportJobFailed"}
            return found if found.get("h1:9100") == "suppressed" and len(found) == 2 else None

        got = wait_for("the job alert of h1 inhibited", states, timeout=30)
        assert got == {"h1:9100": "suppressed", "h2:9100": "active"}
    finally:
        am.stop()
        webhook.stop()
