"""A second `jobreport monitoring export` into the same directory keeps the options the
first was given unless it is given them again (it used to reset --runbook-url in silence),
says which it kept, and forgets them with --reset-options. Export exits 1 for "edited
files left alone" and 4 for "could not write", and `jobreport rules --sink` without jobs
does not call its output empty."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.monitoring_helpers import PROMTOOL, load_yaml, rule_alerts

pytestmark = pytest.mark.integration  # runs exports as child processes

RUNBOOK = "https://wiki.example.org/ops/jobreport"


def jobreport(*args: str | Path, cwd: Path,
              env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "jobreport", *map(str, args)], check=False,
                          capture_output=True, text=True, timeout=120, cwd=cwd,
                          env={**os.environ, **(env or {})})


def links(out: Path) -> set[str]:
    """The runbook_url of every alert of the export's alert rules and guards."""
    found = set()
    for path in (out / "rules" / "jobreport-alerts.yml",
                 out / "rules" / "generated" / "jobreport-absent.yml"):
        found |= {rule["annotations"]["runbook_url"] for rule in rule_alerts(path).values()}
    return found


def guarded_jobs(out: Path) -> list[str]:
    [group] = load_yaml(out / "rules" / "generated" / "jobreport-absent.yml")["groups"]
    return [rule["labels"]["job"] for rule in group["rules"]]


def options(out: Path) -> dict[str, object]:
    remembered: dict[str, object] = json.loads(
        (out / ".jobreport-export.json").read_text())["options"]
    return remembered


def test_a_second_export_keeps_the_options_of_the_first(tmp_path: Path) -> None:
    """An export with --runbook-url, --job and --sink, then one with only --namespace:
    the second keeps the first's runbook links, jobs and sink (and says so on stderr),
    adds the namespace, and remembers all four; --reset-options goes back to the
    defaults and remembers nothing."""
    out = tmp_path / "out"
    first = jobreport("monitoring", "export", out, "--runbook-url", RUNBOOK, "--job", "backup",
                      "--job", "sync", "--sink", "textfile", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    assert "kept from the last export" not in first.stderr

    second = jobreport("monitoring", "export", out, "--namespace", "acme", cwd=tmp_path)
    assert second.returncode == 0, second.stderr
    assert all(link.startswith(RUNBOOK + "#") for link in links(out)), links(out)
    assert (f"kept from the last export into {out}: --sink textfile, --runbook-url {RUNBOOK}, "
            "--job backup --job sync (--reset-options forgets them)") in second.stderr
    assert guarded_jobs(out) == ["backup", "sync"]
    alerts = (out / "rules" / "jobreport-alerts.yml").read_text()
    assert 'up{job="node"}' in alerts and "acme_last_success_timestamp_seconds" in alerts
    assert options(out) == {"sink": "textfile", "runbook_url": RUNBOOK, "namespace": "acme",
                            "jobs": ["backup", "sync"]}

    reset = jobreport("monitoring", "export", out, "--reset-options", cwd=tmp_path)
    assert reset.returncode == 0, reset.stderr
    assert "kept from" not in reset.stderr
    assert all(link.startswith("docs/runbook.md#") for link in links(out))
    assert guarded_jobs(out) == []
    assert "jobreport_last_success_timestamp_seconds" in (
        out / "rules" / "jobreport-alerts.yml").read_text()
    assert options(out) == {}


def test_flags_and_environment_override_what_was_remembered(tmp_path: Path) -> None:
    """An option given again, as a flag or in the environment, wins over the remembered
    one and is remembered in its place."""
    out = tmp_path / "out"
    assert jobreport("monitoring", "export", out, "--runbook-url", RUNBOOK, "--sink",
                     "textfile", cwd=tmp_path).returncode == 0
    other = "https://runbooks.example.net/batch"
    again = jobreport("monitoring", "export", out, "--runbook-url", other, cwd=tmp_path,
                      env={"JOBREPORT_EXPORT_SINK": "remote-write"})
    assert again.returncode == 0, again.stderr
    assert "kept from" not in again.stderr
    assert all(link.startswith(other + "#") for link in links(out))
    assert "last_over_time(" in (out / "rules" / "jobreport-alerts.yml").read_text()
    assert options(out) == {"sink": "remote-write", "runbook_url": other}


def test_a_bad_remembered_option_is_a_usage_error(tmp_path: Path) -> None:
    """A manifest someone edited to remember what the command line refuses (a runbook URL
    with a newline) is a usage error naming the manifest; --reset-options gets past it."""
    out = tmp_path / "out"
    assert jobreport("monitoring", "export", out, "--runbook-url", RUNBOOK,
                     cwd=tmp_path).returncode == 0
    manifest = out / ".jobreport-export.json"
    data = json.loads(manifest.read_text())
    data["options"]["runbook_url"] = RUNBOOK + "\nevil: 1"
    manifest.write_text(json.dumps(data))
    result = jobreport("monitoring", "export", out, cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert str(manifest) in result.stderr and "a newline" in result.stderr
    assert "--reset-options" in result.stderr
    assert jobreport("monitoring", "export", out, "--reset-options",
                     cwd=tmp_path).returncode == 0


def test_export_exit_codes_tell_left_alone_from_not_written(tmp_path: Path) -> None:
    """1: files edited since the last export were left alone, the rest written; 4: the
    export could not be written (a directory where a file goes, a file where a directory
    goes). Files written before the failure are recorded: the export after the fix takes
    them for its own, not for edited ones."""
    out = tmp_path / "out"
    assert jobreport("monitoring", "export", out, cwd=tmp_path).returncode == 0
    edited = out / "prometheus.yml"
    edited.write_text(edited.read_text() + "# ours\n")
    left_alone = jobreport("monitoring", "export", out, cwd=tmp_path)
    assert left_alone.returncode == 1, left_alone.stderr
    assert "not overwritten, edited since the last export: prometheus.yml" in (
        left_alone.stderr)

    blocked = tmp_path / "blocked"
    assert jobreport("monitoring", "export", blocked, cwd=tmp_path).returncode == 0
    (blocked / "prometheus.yml").unlink()
    (blocked / "prometheus.yml").mkdir()  # a file of the export cannot be written
    (blocked / "alertmanager.yml").unlink()  # written before it (sorted), then recorded
    failed = jobreport("monitoring", "export", blocked, cwd=tmp_path)
    assert failed.returncode == 4, failed.stderr
    assert f"cannot write {blocked / 'prometheus.yml'}" in failed.stderr
    assert (blocked / "alertmanager.yml").exists()
    (blocked / "prometheus.yml").rmdir()
    fixed = jobreport("monitoring", "export", blocked, cwd=tmp_path)
    assert fixed.returncode == 0, fixed.stderr
    assert "1 file written" in fixed.stdout

    a_file = tmp_path / "a-file"
    a_file.write_text("")
    nowhere = jobreport("monitoring", "export", a_file / "out", cwd=tmp_path)
    assert nowhere.returncode == 4, nowhere.stderr
    assert "cannot write" in nowhere.stderr and "Traceback" not in nowhere.stderr

    helped = jobreport("monitoring", "export", "--help", cwd=tmp_path)
    assert "1 some files were" in helped.stdout and "4 the export could not be" in (
        helped.stdout.replace("\n", " "))


def test_rules_for_a_sink_without_jobs_says_what_is_missing(tmp_path: Path) -> None:
    """`jobreport rules --sink textfile` with no configured job prints the textfile rules
    and says that no absent() guard was written (it said "the rules file is empty" after
    printing 17 rules)."""
    result = jobreport("rules", "--sink", "textfile", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "empty" not in result.stderr
    assert "no absent() guards" in result.stderr and "--job NAME" in result.stderr
    path = tmp_path / "rules.yml"
    path.write_text(result.stdout)
    rules = [r for g in load_yaml(path)["groups"] for r in g["rules"]]
    assert len(rules) >= 17
    checked = subprocess.run([PROMTOOL, "check", "rules", str(path)], capture_output=True,
                             text=True, timeout=60, check=False)
    assert checked.returncode == 0, checked.stdout + checked.stderr
