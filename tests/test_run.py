"""`jobreport run` as a real process against a real Pushgateway (CliRunner cannot see a
child's output, signals or exit status)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil
import pytest

from tests import servers
from tests.conftest import Gateway

pytestmark = pytest.mark.integration  # runs `jobreport` as a process, end to end

REPO = Path(__file__).resolve().parent.parent
PY = sys.executable
HOST = socket.gethostname()


def jobreport_argv(*args: str) -> list[str]:
    return [PY, "-m", "jobreport", *args]


def jobreport_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)  # isolated_env already pointed XDG_* into tmp_path
    env["PYTHONPATH"] = str(REPO)
    env.update(extra)
    return env


def jobreport(*args: str, stdin: bytes | None = None, timeout: float = 90,
              **env: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(jobreport_argv(*args), input=stdin, capture_output=True,
                          env=jobreport_env(**env), timeout=timeout, check=False)


def history(**env: str) -> list[dict[str, Any]]:
    out = jobreport("history", "--json", "--limit", "100", **env)
    assert out.returncode == 0, out.stderr
    data: list[dict[str, Any]] = json.loads(out.stdout)
    return data


def wait_until(predicate: Callable[[], object], timeout: float = 60.0) -> Any:
    """Poll ``predicate`` until it holds; the ceiling is for a busy machine, not a speed."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError("condition not met in time")


def child_of(proc: subprocess.Popen[bytes], name: str) -> psutil.Process:
    """The descendant of ``proc`` called ``name``, once it runs."""
    def find() -> psutil.Process | None:
        try:
            for p in psutil.Process(proc.pid).children(recursive=True):
                if p.name() == name:
                    return p
        except psutil.NoSuchProcess:
            return None
        return None
    found: psutil.Process = wait_until(find)
    return found


def held(release: Path) -> list[str]:
    """A command that runs until ``release`` exists (bounded: at most about a minute), so
    that a test decides when it ends instead of guessing how long the machine needs."""
    return ["sh", "-c", 'i=0; while [ ! -e "$1" ] && [ $i -lt 1200 ]; do sleep 0.05; '
            "i=$((i+1)); done", "sh", str(release)]


def gone(p: psutil.Process) -> bool:
    try:
        return p.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def outcome_of(samples: dict[str, float]) -> str:
    hot = [k for k, v in samples.items() if k.startswith("jobreport_last_outcome{") and v == 1]
    assert len(hot) == 1, samples
    return hot[0].split('"')[1]


@pytest.fixture
def gw(gateway: Gateway, monkeypatch: pytest.MonkeyPatch) -> Gateway:
    monkeypatch.setenv("JOBREPORT_GATEWAY", gateway.url)
    return gateway


# -- exit codes and outcomes -------------------------------------------------------------


def test_exit_code_3_passes_through_and_is_reported(gw: Gateway) -> None:
    """A failing command's own exit code is jobreport's, and the gateway says failure/3."""
    out = jobreport("run", "--job", "backup", "--", "sh", "-c", "echo working; exit 3")
    assert out.returncode == 3
    assert out.stdout == b"working\n"
    s = gw.samples("backup", instance=HOST)
    assert s["jobreport_last_exit_code"] == 3
    assert outcome_of(s) == "failure"
    assert s["jobreport_last_run_success"] == 0
    assert s['jobreport_runs_total{outcome="failure"}'] == 1
    assert "jobreport_last_success_timestamp_seconds" not in s
    assert s["jobreport_running"] == 0


def test_exit_code_0_is_success_with_resources(gw: Gateway) -> None:
    """Success: exit 0, last success set, and the CPU/RSS of the process tree pushed."""
    before = time.time()
    out = jobreport("run", "--job", "backup", "--expect-every", "1h", "--max-runtime", "5m",
                    "--", PY, "-c", "x = bytearray(60_000_000)")
    assert out.returncode == 0, out.stderr
    s = gw.samples("backup", instance=HOST)
    assert outcome_of(s) == "success" and s["jobreport_last_exit_code"] == 0
    assert before <= s["jobreport_last_success_timestamp_seconds"] <= time.time()
    assert s["jobreport_last_max_rss_bytes"] >= 60_000_000
    assert s["jobreport_last_cpu_seconds"] > 0
    assert s["jobreport_expected_interval_seconds"] == 3960
    assert s["jobreport_max_runtime_seconds"] == 300


def test_timeout_is_124(gw: Gateway) -> None:
    """--timeout stops the command: exit 124, outcome timeout."""
    out = jobreport("run", "--job", "slow", "--timeout", "0.5s", "--", "sleep", "30")
    assert out.returncode == 124
    s = gw.samples("slow")
    assert outcome_of(s) == "timeout" and s["jobreport_last_exit_code"] == 124


def test_not_found_is_127(gw: Gateway) -> None:
    """A missing command: exit 127, one-line message, outcome not_found pushed."""
    out = jobreport("run", "--job", "missing", "--", "jobreport-no-such-program")
    assert out.returncode == 127
    assert b"jobreport-no-such-program: command not found" in out.stderr
    assert b"Traceback" not in out.stderr
    assert outcome_of(gw.samples("missing")) == "not_found"


def test_not_executable_is_126(gw: Gateway, tmp_path: Path) -> None:
    """A file without execute permission: exit 126, outcome not_executable."""
    script = tmp_path / "job.sh"
    script.write_text("#!/bin/sh\n")
    script.chmod(0o644)
    out = jobreport("run", "--job", "noexec", "--", str(script))
    assert out.returncode == 126
    assert b"cannot execute" in out.stderr
    assert outcome_of(gw.samples("noexec")) == "not_executable"


def test_job_defaults_to_the_command_base_name(gw: Gateway) -> None:
    """Without --job the job is named after the command."""
    assert jobreport("run", "--", "/bin/true").returncode == 0
    assert outcome_of(gw.samples("true")) == "success"


def test_labels_and_no_instance(gw: Gateway) -> None:
    """--label adds grouping labels; --no-instance drops the instance label."""
    out = jobreport("run", "--job", "etl", "--label", "team=data", "--label", "db=main",
                    "--no-instance", "--", "true")
    assert out.returncode == 0, out.stderr
    groups = [g["labels"] for g in gw.groups()]
    assert {"job": "etl", "team": "data", "db": "main"} in groups


# -- signals -----------------------------------------------------------------------------


def test_sigterm_is_forwarded_and_exits_143(gw: Gateway) -> None:
    """SIGTERM to jobreport reaches the child; the run is reported as signal and jobreport
    exits 143 with the child gone."""
    proc = subprocess.Popen(jobreport_argv("run", "--job", "long", "--", "sleep", "60"),
                            env=jobreport_env(), stderr=subprocess.PIPE)
    child = child_of(proc, "sleep")
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(60) == 143
    assert wait_until(lambda: gone(child))
    s = gw.samples("long")
    assert outcome_of(s) == "signal" and s["jobreport_last_exit_code"] == 143
    assert s["jobreport_running"] == 0


def test_sigint_is_interrupted_130(gw: Gateway) -> None:
    """SIGINT (not from a terminal) is forwarded too: outcome interrupted, exit 130."""
    proc = subprocess.Popen(jobreport_argv("run", "--job", "int", "--", "sleep", "60"),
                            env=jobreport_env())
    child_of(proc, "sleep")
    proc.send_signal(signal.SIGINT)
    assert proc.wait(60) == 130
    assert outcome_of(gw.samples("int")) == "interrupted"


def test_child_trapping_sigterm_decides_the_outcome(gw: Gateway, tmp_path: Path) -> None:
    """A child that handles SIGTERM and exits 0 succeeded."""
    ready = tmp_path / "ready"
    code = ("import signal, sys, time, pathlib\n"
            "signal.signal(signal.SIGTERM, lambda *a: sys.exit(0))\n"
            f"pathlib.Path({str(ready)!r}).write_text('1')\n"
            "time.sleep(60)\n")
    proc = subprocess.Popen(jobreport_argv("run", "--job", "trap", "--", PY, "-c", code),
                            env=jobreport_env())
    wait_until(ready.exists)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(60) == 0
    assert outcome_of(gw.samples("trap")) == "success"


def test_sigkilled_jobreport_leaves_an_abandoned_run(gw: Gateway) -> None:
    """A jobreport killed with SIGKILL leaves its run open; the next run of the group closes
    it as abandoned."""
    proc = subprocess.Popen(jobreport_argv("run", "--job", "crash", "--", "sleep", "60"),
                            env=jobreport_env())
    child = child_of(proc, "sleep")
    wait_until(lambda: any(r["outcome"] is None for r in history()))  # opened in the store
    proc.kill()
    proc.wait(20)
    child.kill()
    assert jobreport("run", "--job", "crash", "--", "true").returncode == 0
    outcomes = sorted(str(r["outcome"]) for r in history() if r["job"] == "crash")
    assert outcomes == ["abandoned", "success"]
    assert gw.samples("crash")['jobreport_runs_total{outcome="abandoned"}'] == 1


# -- options -----------------------------------------------------------------------------


def test_lock_skips_a_second_run(gw: Gateway, tmp_path: Path) -> None:
    """With --lock, a run of the same group while one runs does not start: exit 75,
    outcome skipped recorded; the first run is unaffected."""
    marker = tmp_path / "second-ran"
    release = tmp_path / "release"
    first = subprocess.Popen(
        jobreport_argv("run", "--lock", "--job", "nightly", "--", *held(release)),
        env=jobreport_env())
    child_of(first, "sh")
    second = jobreport("run", "--lock", "--job", "nightly", "--", "touch", str(marker))
    release.touch()
    assert second.returncode == 75
    assert b"already running" in second.stderr
    assert not marker.exists()
    assert first.wait(60) == 0
    runs = [r for r in history() if r["job"] == "nightly"]
    assert sorted(str(r["outcome"]) for r in runs) == ["skipped", "success"], second.stderr
    s = gw.samples("nightly")
    assert s['jobreport_runs_total{outcome="skipped"}'] == 1
    assert outcome_of(s) == "success"  # a skipped run does not hide the real last outcome
    # the lock is free again
    third = jobreport("run", "--lock", "--job", "nightly", "--", "touch", str(marker))
    assert third.returncode == 0 and marker.exists()


def test_lock_is_per_group(gw: Gateway, tmp_path: Path) -> None:
    """Another job (or another label set) is not blocked by the lock."""
    release = tmp_path / "release"
    first = subprocess.Popen(
        jobreport_argv("run", "--lock", "--job", "a", "--", *held(release)), env=jobreport_env())
    try:
        child_of(first, "sh")
        assert jobreport("run", "--lock", "--job", "b", "--", "true").returncode == 0
        assert jobreport("run", "--lock", "--job", "a", "--label", "shard=2", "--",
                         "true").returncode == 0
        assert first.poll() is None  # the lock of group a was held all along
    finally:
        release.touch()
    assert first.wait(60) == 0


def test_size_path_counts_files_and_trees(gw: Gateway, tmp_path: Path) -> None:
    """--size-path reports the bytes of a file plus a directory tree after the run."""
    out_file = tmp_path / "dump.sql"
    tree = tmp_path / "tree"
    script = (f"head -c 1000 /dev/zero > {out_file}; mkdir -p {tree}/sub; "
              f"head -c 300 /dev/zero > {tree}/a; head -c 200 /dev/zero > {tree}/sub/b")
    out = jobreport("run", "--job", "dump", "--size-path", str(out_file), "--size-path",
                    str(tree), "--size-path", str(tmp_path / "nope"), "--", "sh", "-c", script)
    assert out.returncode == 0
    assert b"nope does not exist" in out.stderr
    assert gw.samples("dump")["jobreport_last_size_bytes"] == 1500


def test_metrics_file_values_join_the_end_push(gw: Gateway) -> None:
    """Lines the command appends to $JOBREPORT_METRICS_FILE are pushed; bad lines are
    warned about with their number and skipped; the exit code stays the command's."""
    script = ('echo "backup_tables 42" >> "$JOBREPORT_METRICS_FILE"; '
              "echo 'rows{table=\"users\"} 7' >> \"$JOBREPORT_METRICS_FILE\"; "
              'echo "broken line here" >> "$JOBREPORT_METRICS_FILE"; exit 2')
    out = jobreport("run", "--job", "tables", "--", "sh", "-c", script)
    assert out.returncode == 2
    assert b"line 3" in out.stderr and b"skipped" in out.stderr
    s = gw.samples("tables")
    assert s["backup_tables"] == 42
    assert s['rows{table="users"}'] == 7
    assert outcome_of(s) == "failure"


def test_child_environment(gw: Gateway, tmp_path: Path) -> None:
    """The child gets JOBREPORT_JOB, JOBREPORT_RUN_ID and a writable JOBREPORT_METRICS_FILE,
    which is removed afterwards."""
    dump = tmp_path / "env.json"
    code = ("import json, os, sys\n"
            "keys = ['JOBREPORT_JOB', 'JOBREPORT_RUN_ID', 'JOBREPORT_METRICS_FILE']\n"
            f"json.dump({{k: os.environ.get(k) for k in keys}}, open({str(dump)!r}, 'w'))\n")
    assert jobreport("run", "--job", "envjob", "--", PY, "-c", code).returncode == 0
    seen = json.loads(dump.read_text())
    assert seen["JOBREPORT_JOB"] == "envjob"
    assert seen["JOBREPORT_RUN_ID"]
    assert seen["JOBREPORT_METRICS_FILE"] and not os.path.exists(seen["JOBREPORT_METRICS_FILE"])


def test_heartbeat_is_pushed(gw: Gateway, tmp_path: Path) -> None:
    """--heartbeat pushes a liveness timestamp while the command runs."""
    before = time.time()
    release = tmp_path / "release"
    proc = subprocess.Popen(jobreport_argv("run", "--job", "hb", "--heartbeat", "0.2s", "--",
                                           *held(release)), env=jobreport_env())

    def beat() -> float | None:
        try:
            return gw.samples("hb").get("jobreport_last_heartbeat_timestamp_seconds")
        except AssertionError:
            return None

    try:
        assert wait_until(beat) >= before
        assert proc.poll() is None  # seen while the command still runs
    finally:
        release.touch()
    assert proc.wait(60) == 0


# -- output ------------------------------------------------------------------------------


def test_large_binary_output_and_stdin_pass_through(gw: Gateway, tmp_path: Path) -> None:
    """Several MB of arbitrary bytes reach stdout and stderr unchanged; stdin reaches the
    child; the tail is kept in the history."""
    data = os.urandom(4 * 1024 * 1024) + b"\nlast line\n"
    code = ("import sys\n"
            "d = sys.stdin.buffer.read()\n"
            "sys.stdout.buffer.write(d)\n"
            "sys.stderr.buffer.write(d[::-1])\n")
    out = jobreport("run", "--job", "cat", "--", PY, "-c", code, stdin=data)
    assert out.returncode == 0
    assert out.stdout == data
    assert out.stderr == data[::-1]
    run = history()[0]
    assert run["tail"] is not None and len(run["tail"].encode()) <= 64 * 1024


def test_history_run_shows_the_output_tail(gw: Gateway) -> None:
    """`history --run ID` shows a run's last lines of output (--tail of them)."""
    out = jobreport("run", "--job", "talky", "--tail", "3", "--", "sh", "-c",
                    "for i in 1 2 3 4 5; do echo line$i; done")
    assert out.returncode == 0
    run_id = history()[0]["id"]
    shown = jobreport("history", "--run", str(run_id))
    assert shown.returncode == 0
    text = shown.stdout.decode()
    assert "line3\nline4\nline5" in text and "line2" not in text


# -- a gateway that is down --------------------------------------------------------------


def closed_port_url() -> str:
    # a port kept reserved by the suite: nothing else can start listening on it meanwhile
    return f"http://127.0.0.1:{servers.free_port()}"


def test_down_gateway_keeps_exit_code_and_flush_delivers_later(gateway: Gateway) -> None:
    """With the gateway down the command still runs and exits with its code, a warning is
    printed, the run is stored; a later `jobreport flush` delivers it."""
    down = closed_port_url()
    out = jobreport("run", "--job", "offline", "--", "sh", "-c", "echo still ran; exit 4",
                    JOBREPORT_GATEWAY=down, JOBREPORT_BUDGET="1", JOBREPORT_TIMEOUT="0.5")
    assert out.returncode == 4
    assert out.stdout == b"still ran\n"
    assert b"failed" in out.stderr and b"jobreport flush" in out.stderr
    assert b"Traceback" not in out.stderr
    assert [r["outcome"] for r in history()] == ["failure"]
    flushed = jobreport("flush", JOBREPORT_GATEWAY=gateway.url)
    assert flushed.returncode == 0, flushed.stderr
    assert b"delivered 1 group" in flushed.stdout
    s = gateway.samples("offline")
    assert outcome_of(s) == "failure" and s["jobreport_last_exit_code"] == 4


def test_quiet_hides_warnings(gateway: Gateway) -> None:
    """--quiet: no warning of jobreport's own even with the gateway down."""
    out = jobreport("run", "--quiet", "--job", "q", "--", "true",
                    JOBREPORT_GATEWAY=closed_port_url(), JOBREPORT_BUDGET="0.5",
                    JOBREPORT_TIMEOUT="0.5")
    assert out.returncode == 0
    assert out.stderr == b""


def test_no_gateway_configured_still_runs_and_records() -> None:
    """Without any gateway the command runs, a notice says so, the run is in the store."""
    out = jobreport("run", "--job", "local", "--", "sh", "-c", "exit 6")
    assert out.returncode == 6
    assert b"no Pushgateway configured" in out.stderr
    assert [(r["job"], r["exit_code"]) for r in history()] == [("local", 6)]


def test_bad_setting_does_not_stop_the_job(tmp_path: Path) -> None:
    """A broken setting is a warning for `run`: the job still runs (a numeric one out of
    its range aside: tests/test_ranges.py)."""
    marker = tmp_path / "ran"
    out = jobreport("run", "--job", "x", "--", "touch", str(marker),
                    JOBREPORT_GATEWAY="ftp://nope", JOBREPORT_TLS_VERIFY="soon")
    assert out.returncode == 0 and marker.exists()
    assert b"JOBREPORT_TLS_VERIFY" in out.stderr


@pytest.mark.parametrize(("variable", "value"), [
    ("JOBREPORT_QUIET", "2"), ("JOBREPORT_NO_INSTANCE", "perhaps"),
    ("JOBREPORT_LABELS", "nonsense"),
])
def test_bad_setting_variable_is_a_warning(tmp_path: Path, variable: str, value: str) -> None:
    """A bad value of a setting's variable (what the config reads) is ignored with a
    warning: the job runs."""
    marker = tmp_path / "ran"
    out = jobreport("run", "--job", "x", "--", "sh", "-c", f"touch {marker}; exit 5",
                    **{variable: value})
    assert out.returncode == 5, out.stderr
    assert marker.exists()
    assert variable.encode() in out.stderr and b"Traceback" not in out.stderr


@pytest.mark.parametrize(("variable", "value"), [
    ("JOBREPORT_RUN_TIMEOUT", "soon"), ("JOBREPORT_EXPECT_EVERY", "-1h"),
    ("JOBREPORT_TAIL", "lots"), ("JOBREPORT_LOCK", "maybe"), ("JOBREPORT_KILL_AFTER", "x"),
    ("JOBREPORT_ALERT_AFTER_FAILURES", "0"), ("JOBREPORT_TIMEZONE", "leapseconds"),
])
def test_bad_spec_variable_is_a_usage_error(tmp_path: Path, variable: str, value: str) -> None:
    """A bad value of a variable of the run's spec (its thresholds, schedule and limits) is
    what a bad flag is: a usage error (2) naming the variable, and the command never runs
    (docs/cli.md)."""
    marker = tmp_path / "ran"
    out = jobreport("run", "--job", "x", "--", "sh", "-c", f"touch {marker}; exit 5",
                    **{variable: value})
    assert out.returncode == 2, out.stderr
    assert not marker.exists()
    assert variable.encode() in out.stderr and b"Traceback" not in out.stderr


def test_bad_flag_is_a_usage_error() -> None:
    """A malformed option is a usage error (2) and nothing runs."""
    out = jobreport("run", "--timeout", "soon", "--", "true")
    assert out.returncode == 2
    assert b"soon" in out.stderr and b"Traceback" not in out.stderr


# -- the other commands as real processes -------------------------------------------------


def test_history_status_delete_as_processes(gw: Gateway) -> None:
    """history --json lists the runs; status shows the groups with problems first;
    delete removes a group from the gateway."""
    assert jobreport("run", "--job", "good", "--", "true").returncode == 0
    assert jobreport("run", "--job", "bad", "--", "false").returncode == 1
    runs = history()
    assert [(r["job"], r["outcome"], r["exit_code"]) for r in runs] == [
        ("bad", "failure", 1), ("good", "success", 0)]
    assert runs[0]["labels"] == {"instance": HOST}

    status = jobreport("status")
    assert status.returncode == 0, status.stderr
    lines = status.stdout.decode().splitlines()
    assert lines[1].startswith("bad") and "last run: failure" in lines[1]
    assert lines[2].startswith("good") and lines[2].rstrip().endswith("ok")
    data = json.loads(jobreport("status", "--json").stdout)
    assert [(g["job"], g["ok"]) for g in data] == [("bad", False), ("good", True)]

    deleted = jobreport("delete", "--job", "bad")
    assert deleted.returncode == 0, deleted.stderr
    left = gw.groups_once(lambda groups: [g["labels"]["job"] for g in groups] == ["good"])
    assert [g["labels"]["job"] for g in left] == ["good"]


def test_help_of_every_command_as_a_process() -> None:
    """`jobreport COMMAND --help` works for all eight commands of the installed entry."""
    for command in ("run", "push", "flush", "history", "status", "delete", "check", "rules"):
        out = jobreport(command, "--help")
        assert out.returncode == 0, (command, out.stderr)
        assert b"Example" in out.stdout


def test_in_a_terminal_the_child_reads_it_and_ctrl_c_interrupts(gw: Gateway) -> None:
    """Run from a terminal's foreground: the command reads the terminal as without
    jobreport, and Ctrl-C interrupts it once; the run is reported as interrupted (130)."""
    import fcntl
    import pty
    import termios

    master, slave = pty.openpty()

    def controlling_terminal() -> None:
        os.setsid()
        fcntl.ioctl(0, termios.TIOCSCTTY, 0)
        # as a terminal's shell starts a foreground job: SIGINT at its default (a suite
        # started in the background, `... &` in a script, has it ignored, and jobreport
        # keeps an ignored signal ignored for the command: Ctrl-C would do nothing)
        signal.signal(signal.SIGINT, signal.SIG_DFL)

    code = ("import sys, time\n"
            "print('got', sys.stdin.readline().strip(), flush=True)\n"
            "time.sleep(60)\n")
    proc = subprocess.Popen(jobreport_argv("run", "--job", "tty", "--", PY, "-c", code),
                            stdin=slave, stdout=slave, stderr=slave, env=jobreport_env(),
                            preexec_fn=controlling_terminal)  # noqa: PLW1509
    os.close(slave)
    try:
        os.write(master, b"typed\n")
        seen = b""
        deadline = time.monotonic() + 30
        while b"got typed" not in seen and time.monotonic() < deadline:
            if _readable(master, 0.2):
                seen += os.read(master, 4096)
        assert b"got typed" in seen
        os.write(master, b"\x03")
        assert proc.wait(60) == 130
    finally:
        os.close(master)
        if proc.poll() is None:
            proc.kill()
    s = gw.samples("tty")
    assert outcome_of(s) == "interrupted" and s["jobreport_last_exit_code"] == 130
    assert history()[0]["tail"] is None  # a terminal's output is never captured


def _readable(fd: object, timeout: float) -> bool:
    """Whether ``fd`` has input within ``timeout`` s (poll: no FD_SETSIZE limit, so it works
    however many descriptors the test process already holds)."""
    import selectors

    with selectors.DefaultSelector() as sel:
        sel.register(fd, selectors.EVENT_READ)  # type: ignore[arg-type]
        return bool(sel.select(timeout))


def test_sigint_ignored_by_the_caller_stays_ignored_for_the_command(tmp_path: Path) -> None:
    """`jobreport run ... &` in a script starts with SIGINT ignored: the command inherits it
    ignored, as it would without jobreport."""
    code = "import signal; print(signal.getsignal(signal.SIGINT) is signal.SIG_IGN)"

    def ignore_sigint() -> None:
        signal.signal(signal.SIGINT, signal.SIG_IGN)

    out = subprocess.run(jobreport_argv("run", "--job", "ign", "--", PY, "-c", code),
                         capture_output=True, env=jobreport_env(), timeout=60,
                         preexec_fn=ignore_sigint)  # noqa: PLW1509
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == b"True"
