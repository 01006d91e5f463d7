"""The job sees no difference (issue 11 item 2), the run is durable before the command starts
and judged only by its own PID namespace (issue 10 item 6), and outcomes other than success
say so in one line (issue 11 item 5): each through a real `jobreport run` process."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
from pathlib import Path

import pytest

from jobreport.config import default_db_url
from jobreport.store.read_rows import RunRecord
from jobreport.store.store import Store
from tests.conftest import Gateway
from tests.test_run import PY, jobreport, jobreport_argv, jobreport_env, wait_until

pytestmark = pytest.mark.integration  # runs `jobreport run` as a process, end to end

#: Generous deadline for a condition on a loaded machine (a correct run meets it in moments).
WAIT = 90.0


def runs(job: str) -> list[RunRecord]:
    store = Store(default_db_url())
    try:
        return store.history(job)
    finally:
        store.close()


def tail_of(record: RunRecord) -> str:
    return (record.result.tail if record.result is not None else None) or ""


def sh_run(script: str) -> subprocess.CompletedProcess[bytes]:
    """`jobreport run` started by a shell (for redirections such as `>&-`)."""
    argv = " ".join(jobreport_argv())
    return subprocess.run(["sh", "-c", script.replace("JOBREPORT", argv)],  # noqa: S607
                          capture_output=True, env=jobreport_env(), timeout=90, check=False)


def pid_gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:  # a zombie counts as gone
            return f.read().rsplit(b")", 1)[1].split()[0] == b"Z"
    except FileNotFoundError:
        return True


@pytest.mark.parametrize("closed", [">&-", "2>&-", ">&- 2>&-"])
def test_closed_streams_keep_the_exit_code(closed: str) -> None:
    """With jobreport's stdout and/or stderr closed the exit code is the command's."""
    assert sh_run(f"JOBREPORT run -- true {closed}").returncode == 0
    assert sh_run(f"JOBREPORT run -- sh -c 'exit 3' {closed}").returncode == 3


def test_closed_stdout_stays_closed_for_the_command() -> None:
    """The command finds stdout closed, as without jobreport (not a file of jobreport's)."""
    probe = f"{PY} -c 'import os; os.fstat(1)' 2>/dev/null"
    without = subprocess.run(["sh", "-c", f"{probe} >&-"], check=False)  # noqa: S607
    assert without.returncode == 1
    assert sh_run(f"JOBREPORT run --lock -- sh -c \"{probe}\" >&-").returncode == 1


def test_background_output_lands_where_it_would(tmp_path: Path) -> None:
    """Output of a background process the job left keeps reaching the file after the
    command (and jobreport) exited; jobreport itself exits with the command."""
    out = tmp_path / "f"
    gate = tmp_path / "gate"
    script = f"(while [ ! -e {gate} ]; do sleep 0.05; done; echo tick) & echo started"
    # stderr to a file too: a pipe would stay open (held by the background process) and
    # keep subprocess.run waiting, with or without jobreport
    with open(out, "wb") as f, open(tmp_path / "err", "wb") as err:
        done = subprocess.run(jobreport_argv("run", "--job", "bg", "--", "sh", "-c", script),
                              stdout=f, stderr=err, env=jobreport_env(), timeout=90,
                              check=False)
    assert done.returncode == 0, (tmp_path / "err").read_text()
    gate.touch()  # only now may the background process write
    wait_until(lambda: b"tick" in out.read_bytes(), timeout=WAIT)
    assert out.read_bytes() == b"started\ntick\n"
    assert tail_of(runs("bg")[0]) == "started"


def test_secrets_are_not_in_the_environment_and_masked_in_the_tail() -> None:
    """The command gets no JOBREPORT_PASSWORD/TOKEN; a secret it prints is masked in the
    stored tail (and still reaches its own output unchanged)."""
    script = 'env | grep "^JOBREPORT_" | cut -d= -f1; echo "t0k3n-value-x and pw-value-y"'
    out = jobreport("run", "--job", "sec", "--", "sh", "-c", script,
                    JOBREPORT_PASSWORD="pw-value-y",  # noqa: S106
                    JOBREPORT_TOKEN="t0k3n-value-x")  # noqa: S106
    assert out.returncode == 0, out.stderr
    names = out.stdout.decode().split()
    assert "JOBREPORT_JOB" in names
    assert "JOBREPORT_PASSWORD" not in names and "JOBREPORT_TOKEN" not in names
    assert b"t0k3n-value-x and pw-value-y" in out.stdout
    tail = tail_of(runs("sec")[0])
    assert "*** and ***" in tail
    assert "t0k3n-value-x" not in tail and "pw-value-y" not in tail


def test_lock_makes_the_state_directory_owner_only(tmp_path: Path) -> None:
    """--lock on a fresh machine creates the state directory 0700, as the store does."""
    state = tmp_path / "fresh" / "state"
    out = jobreport("run", "--lock", "--job", "l", "--db", f"sqlite:///{tmp_path}/x.db", "--",
                    "true", XDG_STATE_HOME=str(state))
    assert out.returncode == 0, out.stderr
    for directory in (state / "jobreport", state / "jobreport" / "locks"):
        assert stat.S_IMODE(directory.stat().st_mode) == 0o700, directory


def test_killed_wrapper_keeps_the_lock_and_its_run_alive(tmp_path: Path) -> None:
    """kill -9 of the wrapper (the OOM killer) while the command runs: the lock stays held
    by the command, the next run is skipped and does not call the first abandoned; once
    the command is gone, the next run records it as abandoned and runs."""
    pidfile = tmp_path / "pid"
    first = subprocess.Popen(
        jobreport_argv("run", "--lock", "--job", "oom", "--", "sh", "-c",
                       f"echo $$ > {pidfile}; exec sleep 300"),
        env=jobreport_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_until(lambda: pidfile.exists() and pidfile.read_text().strip(), timeout=WAIT)
        command = int(pidfile.read_text())
        # open in the store
        wait_until(lambda: [r for r in runs("oom") if r.ended is None], timeout=WAIT)
        first.kill()
        first.wait(WAIT)
        second = jobreport("run", "--lock", "--job", "oom", "--", "true")
        assert second.returncode == 75, second.stderr
        assert b"already running" in second.stderr
        outcomes = [r.outcome for r in runs("oom")]
        assert "abandoned" not in outcomes and None in outcomes  # still open
    finally:
        if pidfile.exists():
            os.kill(int(pidfile.read_text()), signal.SIGKILL)
    wait_until(lambda: pid_gone(command), timeout=WAIT)
    third = jobreport("run", "--lock", "--job", "oom", "--", "true")
    assert third.returncode == 0, third.stderr
    assert b"was left open by a process that is gone; recorded as abandoned" in third.stderr
    assert sorted(str(r.outcome) for r in runs("oom")) == ["abandoned", "skipped", "success"]


def _wrapper_killed_by_its_command(job: str, tmp_path: Path) -> None:
    """`jobreport run --job JOB` whose command SIGKILLs the wrapper at once, then ends."""
    pidfile = tmp_path / "pid"
    killed = jobreport("run", "--job", job, "--", "sh", "-c",
                       f"echo $$ > {pidfile}; kill -9 $PPID")
    assert killed.returncode == -signal.SIGKILL
    wait_until(lambda: pidfile.exists() and pidfile.read_text().strip(), timeout=WAIT)
    wait_until(lambda: pid_gone(int(pidfile.read_text())), timeout=WAIT)


def test_a_wrapper_killed_at_once_leaves_a_run_the_next_one_records(tmp_path: Path) -> None:
    """A wrapper SIGKILLed moments after starting the command (before the store heard of
    the run) leaves a marker that the next run of the group records as abandoned."""
    _wrapper_killed_by_its_command("fast", tmp_path)
    nxt = jobreport("run", "--job", "fast", "--", "true")
    assert nxt.returncode == 0, nxt.stderr
    assert b"recorded as abandoned" in nxt.stderr
    assert [r.outcome for r in runs("fast")] == ["success", "abandoned"]
    assert list((Path(os.environ["XDG_STATE_HOME"]) / "jobreport" / "runs").glob("*")) == []


@pytest.mark.integration  # long child processes
def test_timeout_and_signal_say_so_in_one_line() -> None:
    """A timeout names its limit; a signal names itself; each in one line of stderr."""
    out = jobreport("run", "--job", "backup", "--timeout", "1s", "--", "sleep", "60")
    assert out.returncode == 124
    lines = [x for x in out.stderr.decode().splitlines() if "timed out" in x]
    assert lines == ["jobreport: backup timed out after 1s; killed the command (exit 124)"]
    out = jobreport("run", "--job", "sig", "--", "sh", "-c", "kill -TERM $$")
    assert out.returncode == 143
    assert "jobreport: sig was ended by signal 15 (SIGTERM) (exit 143)" in out.stderr.decode()


def test_a_fifo_in_place_of_the_metrics_file_is_refused() -> None:
    """A FIFO put where the metrics file was never blocks the end of the run."""
    out = jobreport("run", "--job", "fifo", "--", "sh", "-c",
                    'rm "$JOBREPORT_METRICS_FILE" && mkfifo "$JOBREPORT_METRICS_FILE"')
    assert out.returncode == 0, out.stderr
    assert b"is not a regular file" in out.stderr
    assert [r.outcome for r in runs("fifo")] == ["success"]



def test_flush_records_a_run_only_a_marker_knows(tmp_path: Path, gateway: Gateway) -> None:
    """A wrapper killed at once, and no later run of its job: `jobreport flush` records the
    run as abandoned and delivers its group."""
    _wrapper_killed_by_its_command("once", tmp_path)
    flushed = jobreport("flush", JOBREPORT_GATEWAY=gateway.url)
    assert flushed.returncode == 0, flushed.stderr
    assert [r.outcome for r in runs("once")] == ["abandoned"]
    assert gateway.samples("once")['jobreport_runs_total{outcome="abandoned"}'] == 1


def test_a_run_of_another_pid_namespace_is_not_judged(tmp_path: Path) -> None:
    """A jobreport in another PID namespace (a container sharing the host's name) does not
    call a live run abandoned, although the run's pids mean nothing there."""
    probe = subprocess.run(["unshare", "--pid", "--fork", "--mount-proc", "true"],  # noqa: S607
                           capture_output=True, check=False)
    if probe.returncode != 0:  # pragma: no cover - needs the right to make namespaces
        pytest.skip(f"cannot make a PID namespace here: {probe.stderr.decode().strip()}")
    flag = tmp_path / "stop"
    first = subprocess.Popen(
        jobreport_argv("run", "--job", "ns", "--", "sh", "-c",
                       f"i=0; while [ ! -e {flag} ] && [ $i -lt 6000 ]; do sleep 0.05; "
                       "i=$((i+1)); done"),
        env=jobreport_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_until(lambda: [r for r in runs("ns") if r.ended is None], timeout=WAIT)
        inside = subprocess.run(
            ["unshare", "--pid", "--fork", "--mount-proc",  # noqa: S607
             *jobreport_argv("run", "--job", "ns", "--", "true")],
            capture_output=True, env=jobreport_env(), timeout=90, check=False)
        assert inside.returncode == 0, inside.stderr
        assert b"abandoned" not in inside.stderr
        assert sorted(str(r.outcome) for r in runs("ns")) == ["None", "success"]
    finally:
        flag.touch()
        first.wait(WAIT)
    assert sorted(str(r.outcome) for r in runs("ns")) == ["success", "success"]


def test_a_device_in_place_of_the_metrics_file_is_refused() -> None:
    """A link to a device (or any non-regular file) is refused, not read."""
    out = jobreport("run", "--job", "dev", "--", "sh", "-c",
                    'rm "$JOBREPORT_METRICS_FILE" && ln -s /dev/zero "$JOBREPORT_METRICS_FILE"')
    assert out.returncode == 0, out.stderr
    assert b"is not a regular file" in out.stderr
