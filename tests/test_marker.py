"""The run marker: written before the command starts, before the settings are resolved, and
still turned into an abandoned run of the right group when the wrapper dies at once."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from jobreport.config import load_config
from jobreport.marker import RunMarker, markers, new_marker
from jobreport.state import group_key

JOBREPORT = [sys.executable, "-m", "jobreport"]


def until_no_marker_is_alive() -> None:
    """Until the runs of the markers are gone (their killed command reaped; bounded)."""
    deadline = time.monotonic() + 60
    while any(m.alive() for m in markers()):
        assert time.monotonic() < deadline, "the killed command is still there"
        time.sleep(0.05)


def test_a_marker_written_before_the_settings_resolves_to_its_group(isolated_env: Path) -> None:
    """A marker that records only the run's labels (the wrapper died before the settings
    were loaded) is found under the group the reader's settings give it."""
    marker = new_marker("u1", "backup", labels={"db": "main"})
    assert marker.grouping == {} and marker.write()
    config = load_config(env={"XDG_STATE_HOME": str(isolated_env),
                              "JOBREPORT_INSTANCE": "host-a"})
    key = group_key({"job": "backup", "instance": "host-a", "db": "main"})
    found = markers(key, config.grouping)
    assert [m.uid for m in found] == ["u1"]
    assert found[0].grouping == {"job": "backup", "instance": "host-a", "db": "main"}
    assert markers(group_key({"job": "backup", "instance": "host-a"}), config.grouping) == []


def test_marker_fields_survive_a_round_trip_with_hostile_text(isolated_env: Path) -> None:
    """Quotes, backslashes, newlines and non-ASCII text in a label or the command come back
    unchanged (the writer escapes without loading the unicode_escape codec)."""
    text = "it's \"quoted\" \\ back\nslash é ☃ \x00\x7f"
    marker = new_marker("u2", "j", {"job": "j", "note": text}).with_child(
        1, None, f"echo {text}")
    assert marker.write()
    found = markers()
    assert len(found) == 1
    assert found[0].grouping == {"job": "j", "note": text}
    assert found[0].command == f"echo {text}"
    assert isinstance(found[0], RunMarker) and found[0].child_pid == 1


def test_a_wrapper_killed_right_after_the_start_leaves_an_abandoned_run(
        isolated_env: Path, tmp_path: Path) -> None:
    """SIGKILL of `jobreport run` as soon as its command has started (before the settings
    are loaded, in most runs): once the command is gone too, the next run of the group
    records the first as abandoned."""
    pidfile = tmp_path / "pid"
    env = {**os.environ, "JOBREPORT_INSTANCE": "host-b"}
    wrapper = subprocess.Popen([*JOBREPORT, "run", "--job", "victim", "--label", "k=v", "--",
                                "sh", "-c", f'echo $$ > "{pidfile}"; exec sleep 30'],
                               env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    command = None
    try:
        deadline = time.monotonic() + 60
        while not (pidfile.exists() and pidfile.read_text().strip()):
            assert time.monotonic() < deadline, "the command did not start"
            time.sleep(0.002)
        wrapper.send_signal(signal.SIGKILL)
        wrapper.wait(timeout=60)
        command = int(pidfile.read_text())
        [marker] = markers()
        assert marker.alive()  # the command still runs: not abandoned yet
    finally:
        if command is not None:
            os.kill(command, signal.SIGKILL)
    until_no_marker_is_alive()
    proc = subprocess.run([*JOBREPORT, "run", "--job", "victim", "--label", "k=v", "--",
                           "true"], env=env, capture_output=True, text=True, timeout=120,
                          check=False)
    assert proc.returncode == 0, proc.stderr
    history = subprocess.run([*JOBREPORT, "history", "victim", "--json"], env=env,
                             capture_output=True, text=True, timeout=120, check=False)
    assert history.returncode == 0, history.stderr
    outcomes = [run["outcome"] for run in json.loads(history.stdout)]
    assert sorted(outcomes) == ["abandoned", "success"]
    assert markers() == []


def test_a_command_nobody_named_is_found_by_its_run_id(isolated_env: Path) -> None:
    """A marker with no command pid (the wrapper was killed in the instant after the start)
    whose wrapper is gone is still alive while a process holds the run's JOBREPORT_RUN_ID,
    and not once it has ended."""
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait(60)
    marker = RunMarker(uid="feedc0de12345678", job="j", grouping={"job": "j"},
                       host=os.uname().nodename, started=time.time(), pid=dead.pid)
    assert not marker.alive()
    command = subprocess.Popen(["sleep", "30"],
                               env={**os.environ, "JOBREPORT_RUN_ID": marker.uid})
    try:
        assert marker.alive()
        other = RunMarker(uid="0000000000000000", job="j", grouping={"job": "j"},
                          host=os.uname().nodename, started=time.time(), pid=dead.pid)
        assert not other.alive()
    finally:
        command.kill()
        command.wait(60)
    assert not marker.alive()


def test_a_secret_in_the_command_line_is_masked_in_the_marker_and_the_adopted_run(
        isolated_env: Path, tmp_path: Path) -> None:
    """A secret typed into the command (`curl -u ops:...`) is masked in the run marker on
    disk and in the abandoned run the next run of the group records from it, as in the
    store's runs that ended: the marker holds the command line made once the settings are
    resolved."""
    secret = "s3cret-token-0123456789"
    pidfile = tmp_path / "pid"
    env = {**os.environ, "JOBREPORT_INSTANCE": "host-c", "JOBREPORT_TOKEN": secret}
    wrapper = subprocess.Popen([*JOBREPORT, "run", "--job", "leaky", "--", "sh", "-c",
                                f'echo $$ > "{pidfile}"; exec sleep 30', "sh", secret],
                               env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    command = None
    try:
        deadline = time.monotonic() + 60
        while not [m for m in markers() if m.command]:  # the settings are resolved
            assert time.monotonic() < deadline, "the marker never got its command line"
            time.sleep(0.01)
        wrapper.send_signal(signal.SIGKILL)
        wrapper.wait(timeout=60)
        command = int(pidfile.read_text())
        [marker] = markers()
        on_disk = Path(marker.path).read_text()
        assert secret not in on_disk and "***" in str(marker.command), on_disk
    finally:
        if command is not None:
            os.kill(command, signal.SIGKILL)
    until_no_marker_is_alive()
    proc = subprocess.run([*JOBREPORT, "run", "--job", "leaky", "--", "echo", secret],
                          env=env, capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    history = subprocess.run([*JOBREPORT, "history", "leaky", "--json"], env=env,
                             capture_output=True, text=True, timeout=120, check=False)
    assert history.returncode == 0, history.stderr
    runs = json.loads(history.stdout)
    assert sorted(r["outcome"] for r in runs) == ["abandoned", "success"]
    assert secret not in history.stdout
    assert all("***" in r["command"] for r in runs), runs
