"""What `check` and `status` say about each sink, and which groups a sink added later gets
(issue 24 item 5): each sink's section once, with its URL or directory; every pending count
names its sink; a group no sink has had is pending for every sink (the "no gateway yet"
default), one another sink has is pending for a new sink only once it changes."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import Gateway
from tests.faults import assert_no_traceback, cli_env, run_cli
from tests.scripted import Answer, ScriptedServer

pytestmark = pytest.mark.integration  # jobreport end to end, loopback receivers


def _sections(output: str) -> list[str]:
    return [line[:-1] for line in output.splitlines() if line and not line.startswith(" ")]


def test_check_shows_each_sink_once_with_where_it_is(tmp_path: Path) -> None:
    """The remote-write and textfile sections appear once each, with the receiver's URL
    (credentials masked) and the directory; their pending lines are in them."""
    textfile = tmp_path / "textfile"
    textfile.mkdir()
    with ScriptedServer(default=Answer(204)) as receiver:
        env = cli_env(JOBREPORT_DB=str(tmp_path / "s.db"), JOBREPORT_TEXTFILE_DIR=str(textfile),
                      JOBREPORT_REMOTE_WRITE_URL=receiver.url.replace(
                          "://", "://ops:rw-Secret-7@") + "/api/v1/write")
        run_cli(["run", "--job", "nightly", "--", "true"], env)
        done = run_cli(["check"], env)
    assert_no_traceback(done.stdout, done.stderr)
    sections = _sections(done.stdout)
    assert sections.count("remote-write") == 1 and sections.count("textfile") == 1, done.stdout
    assert f"where: the remote-write receiver at {receiver.url}/api/v1/write" in done.stdout
    assert f"where: the textfile directory {textfile}" in done.stdout
    assert "rw-Secret-7" not in done.stdout
    rw = done.stdout.split("remote-write:\n", 1)[1].split("textfile:\n", 1)[0]
    assert "pending: nothing waiting" in rw, done.stdout


def test_every_pending_count_names_its_sink(tmp_path: Path) -> None:
    """A refused receiver's backlog is said for that sink, in `check` and in `status`;
    with no sink at all, the store says the runs wait for one."""
    env = cli_env(JOBREPORT_DB=str(tmp_path / "s.db"))
    run_cli(["run", "--job", "nightly", "--", "true"], env)
    done = run_cli(["check"], env)
    assert "pending: 1 group(s), 1 run(s) kept for a sink (none is configured)" in done.stdout
    with ScriptedServer(default=Answer(400, body="out of bounds")) as receiver:
        env["JOBREPORT_REMOTE_WRITE_URL"] = receiver.url + "/api/v1/write"
        run_cli(["run", "--job", "nightly", "--", "true"], env)
        check = run_cli(["check"], env)
        status = run_cli(["status"], env)
    rw = check.stdout.split("remote-write:\n", 1)[1]
    assert "pending: 1 group(s), 2 run(s) not delivered yet (last error: " in rw, check.stdout
    assert "remote-write: 1 group(s), 2 run(s) not delivered yet" in status.stdout


def test_a_sink_added_later_gets_only_what_changes(gateway: Gateway, tmp_path: Path) -> None:
    """Jobs delivered to the gateway are not written to a textfile directory added later by
    a flush; the next run of one of them is; `flush --all` writes every group."""
    env = cli_env(JOBREPORT_DB=str(tmp_path / "s.db"), JOBREPORT_GATEWAY=gateway.url)
    for job in ("a", "b", "c"):
        assert run_cli(["run", "--job", job, "--", "true"], env).returncode == 0
    textfile = tmp_path / "textfile"
    textfile.mkdir()
    env["JOBREPORT_TEXTFILE_DIR"] = str(textfile)
    done = run_cli(["flush"], env)
    assert done.returncode == 0, done.stderr
    assert sorted(textfile.iterdir()) == [], done.stdout
    run_cli(["run", "--job", "b", "--", "true"], env)
    assert [p.name.split("-")[1] for p in textfile.glob("*.prom")] == ["b"]
    run_cli(["flush", "--all"], env)
    assert sorted(p.name.split("-")[1] for p in textfile.glob("*.prom")) == ["a", "b", "c"]


def test_runs_kept_before_any_sink_go_to_the_first_one(tmp_path: Path) -> None:
    """The out-of-the-box default: runs recorded with no sink are delivered by the first
    flush with one, whichever it is."""
    env = cli_env(JOBREPORT_DB=str(tmp_path / "s.db"))
    for job in ("a", "b"):
        run_cli(["run", "--job", job, "--", "true"], env)
    textfile = tmp_path / "textfile"
    textfile.mkdir()
    done = run_cli(["flush", "--textfile-dir", str(textfile)], env)
    assert done.returncode == 0, done.stderr
    assert sorted(p.name.split("-")[1] for p in textfile.glob("*.prom")) == ["a", "b"]


def test_a_sink_that_fails_its_first_delivery_waits_for_that_run_only(
        gateway: Gateway, tmp_path: Path) -> None:
    """A textfile directory missing on the first run that uses it: that run waits for it,
    not every run the gateway already had."""
    env = cli_env(JOBREPORT_DB=str(tmp_path / "s.db"), JOBREPORT_GATEWAY=gateway.url)
    for _ in range(3):
        run_cli(["run", "--job", "a", "--", "true"], env)
    env["JOBREPORT_TEXTFILE_DIR"] = str(tmp_path / "missing")
    run_cli(["run", "--job", "a", "--", "true"], env)
    done = run_cli(["status"], env)
    assert "textfile: 1 group(s), 1 run(s) not delivered yet" in done.stdout, done.stdout
