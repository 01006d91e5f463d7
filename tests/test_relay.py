"""The output relay of ``jobreport run`` when its output is not a terminal (issue 11 item 2):
the copying is a process of its own, so that the command's output keeps landing where it
would without jobreport even when the wrapper is killed (``kill -9``, the OOM killer), and
that process ends with the last writer. Each through a real ``jobreport run`` process."""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import threading
from pathlib import Path

import pytest

from jobreport.wrapper import relay
from jobreport.wrapper.child import run
from tests.test_run import PY, jobreport_argv, jobreport_env, wait_until
from tests.test_run_unchanged import runs, tail_of

pytestmark = pytest.mark.integration  # runs `jobreport run` as a process, end to end

#: Generous deadline for a condition on a loaded machine (a correct run meets it in moments).
WAIT = 90.0


def gated(gate: Path, before: str, after: str) -> str:
    """A shell script that runs ``before``, waits (bounded) until ``gate`` exists, then
    runs ``after``."""
    return (f"{before}; i=0; while [ ! -e {shlex.quote(str(gate))} ] && [ $i -lt 1800 ]; "
            f"do sleep 0.05; i=$((i+1)); done; {after}")


def with_status(script: str, status: Path) -> str:
    """``script`` in a shell of its own, whose exit status is written to ``status`` (141 if
    a write of it died of SIGPIPE)."""
    return f"sh -c {shlex.quote(script)}; echo $? > {shlex.quote(str(status))}"


def holders(path: Path) -> list[int]:
    """Pids of the processes (other than this one) with ``path`` open."""
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) == os.getpid():
            continue
        try:
            fds = os.listdir(f"/proc/{name}/fd")
        except OSError:
            continue  # gone, or not ours to look at
        for fd in fds:
            try:
                if os.readlink(f"/proc/{name}/fd/{fd}") == str(path):
                    found.append(int(name))
                    break
            except OSError:
                continue
    return found


def children(pid: int) -> set[int]:
    pids: set[int] = set()
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/children", encoding="ascii") as f:
                pids.update(int(p) for p in f.read().split())
        except FileNotFoundError:
            continue
    return pids


def text(path: Path) -> str:
    return path.read_text() if path.exists() else ""


def test_output_keeps_landing_after_the_wrapper_is_killed(tmp_path: Path) -> None:
    """kill -9 of the wrapper while the command still writes: what the command writes
    afterwards, to stdout and to stderr, still lands in the files, the command's writes do
    not fail (it exits 0, not by SIGPIPE), and nothing holds the files once it has ended."""
    out, err, gate, status = (tmp_path / n for n in ("out", "err", "gate", "status"))
    script = gated(gate, "echo a; echo x >&2", "echo b; echo y >&2; echo c")
    with open(out, "wb") as f, open(err, "wb") as e:
        wrapper = subprocess.Popen(
            jobreport_argv("run", "--job", "killed", "--", "sh", "-c",
                           with_status(script, status)),
            stdout=f, stderr=e, env=jobreport_env())
    try:
        wait_until(lambda: text(out) == "a\n" and "x\n" in text(err), timeout=WAIT)
    finally:
        wrapper.kill()
        wrapper.wait(WAIT)
    gate.touch()  # only now, with the wrapper gone, does the command write again
    wait_until(lambda: text(status).strip(), timeout=WAIT)
    assert text(status).strip() == "0"
    wait_until(lambda: text(out) == "a\nb\nc\n", timeout=WAIT)
    assert "x\ny\n" in text(err)
    wait_until(lambda: not holders(out) and not holders(err), timeout=WAIT)


def test_a_cron_pipe_gets_all_the_output_and_its_end_after_the_wrapper_is_killed(
        tmp_path: Path) -> None:
    """As cron runs it (stdout and stderr one pipe, read until EOF): with the wrapper
    killed mid-run, the reader still gets every line of the command, in order, and its EOF
    once the command has ended (cron would otherwise wait for ever to mail the output)."""
    gate, status = tmp_path / "gate", tmp_path / "status"
    script = gated(gate, "echo a", "echo b; echo c >&2; echo d")
    wrapper = subprocess.Popen(
        jobreport_argv("run", "--job", "cron", "--", "sh", "-c", with_status(script, status)),
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=jobreport_env())
    assert wrapper.stdout is not None
    got = bytearray()
    started = threading.Event()

    def read() -> None:
        assert wrapper.stdout is not None
        fd = wrapper.stdout.fileno()
        while chunk := os.read(fd, 4096):
            got.extend(chunk)
            if b"a\n" in got:
                started.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        assert started.wait(WAIT), bytes(got)
    finally:
        wrapper.kill()
        wrapper.wait(WAIT)
    gate.touch()
    reader.join(WAIT)
    assert not reader.is_alive(), f"no end of the output: {bytes(got)!r}"
    lines = [x for x in bytes(got).decode().splitlines() if len(x) == 1]
    assert lines == ["a", "b", "c", "d"], bytes(got)
    assert text(status).strip() == "0"


def test_the_copier_holds_only_its_pipes_and_outputs_and_ignores_stop_signals(
        tmp_path: Path) -> None:
    """The copier is a process of its own from the start of the run; it holds nothing of
    the wrapper's (not the lock, not the store, not stdin): only the pipes and the outputs.
    SIGTERM, SIGHUP and SIGINT sent to it (systemd's stop reaches every process) do not end
    it: the command's last words after such a stop still arrive."""
    out, err, gate, status, pidfile = (tmp_path / n for n in
                                       ("out", "err", "gate", "status", "pid"))
    script = gated(gate, f"echo $$ > {shlex.quote(str(pidfile))}; echo a", "echo last")
    (tmp_path / "in").write_bytes(b"")
    with open(out, "wb") as f, open(err, "wb") as e, open(tmp_path / "in", "rb") as i:
        wrapper = subprocess.Popen(
            jobreport_argv("run", "--lock", "--job", "own", "--", "sh", "-c",
                           with_status(script, status)),
            stdout=f, stderr=e, stdin=i, env=jobreport_env())
    try:
        wait_until(lambda: text(out) == "a\n" and text(pidfile).strip(), timeout=WAIT)
        shell = {int(p) for p in children(wrapper.pid)}
        # the command is `sh -c` (whose child wrote the pid); the other child is the copier
        command = {p for p in shell if int(text(pidfile)) in children(p)}
        copiers = shell - command
        assert len(copiers) == 1, (shell, command)
        copier = copiers.pop()
        assert Path(f"/proc/{copier}/comm").read_text().strip() == "jobreport-relay"
        fds = os.listdir(f"/proc/{copier}/fd")
        opened = {os.readlink(f"/proc/{copier}/fd/{fd}") for fd in fds}
        assert opened - {str(out), str(err)}, opened  # its pipes
        assert {x for x in opened if not x.startswith("pipe:")} == {str(out), str(err)}, opened
        for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
            os.kill(copier, sig)
    finally:
        wrapper.kill()
        wrapper.wait(WAIT)
    gate.touch()
    wait_until(lambda: text(status).strip(), timeout=WAIT)
    assert text(status).strip() == "0"
    wait_until(lambda: text(out) == "a\nlast\n", timeout=WAIT)
    wait_until(lambda: not holders(out), timeout=WAIT)


def test_background_writers_keep_writing_and_the_copier_ends_with_the_last(
        tmp_path: Path) -> None:
    """jobreport exits with the command while a background process it left still writes:
    that output lands in the file, the process's writes do not fail, the tail of the run is
    recorded, and once the last writer is gone no copier is left."""
    out, err, gate, status = (tmp_path / n for n in ("out", "err", "gate", "status"))
    background = gated(gate, "true", "echo tick; echo $? > " + shlex.quote(str(status)))
    with open(out, "wb") as f, open(err, "wb") as e:
        done = subprocess.run(
            jobreport_argv("run", "--job", "bg2", "--", "sh", "-c",
                           f"({background}) & echo started; echo more >&2"),
            stdout=f, stderr=e, env=jobreport_env(), timeout=WAIT, check=False)
    assert done.returncode == 0, text(err)
    assert holders(out), "nothing relays the background process's output"
    gate.touch()
    wait_until(lambda: text(status).strip(), timeout=WAIT)
    assert text(status).strip() == "0"
    wait_until(lambda: text(out) == "started\ntick\n", timeout=WAIT)
    assert sorted(tail_of(runs("bg2")[0]).splitlines()) == ["more", "started"]
    wait_until(lambda: not holders(out) and not holders(err), timeout=WAIT)


@pytest.mark.parametrize(("tail", "stdout_is"), [("0", "the file"), ("20", "a pipe")])
def test_tail_zero_relays_nothing(tmp_path: Path, tail: str, stdout_is: str) -> None:
    """With --tail 0 the command writes to jobreport's stdout itself (no pipe, no copier);
    otherwise its stdout is the relay's pipe."""
    out = tmp_path / "out"
    with open(out, "wb") as f:
        done = subprocess.run(
            jobreport_argv("run", "--tail", tail, "--job", "t0", "--", "sh", "-c",
                           "readlink /proc/$$/fd/1"),
            stdout=f, stderr=subprocess.PIPE, env=jobreport_env(), timeout=WAIT, check=False)
    assert done.returncode == 0, done.stderr
    target = text(out).strip()
    assert (target == str(out)) if stdout_is == "the file" else target.startswith("pipe:")


def test_without_a_copier_process_the_wrapper_relays_by_itself(
        monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]) -> None:
    """When no process can be forked (a process limit), the output is still relayed
    unchanged and the tail kept, by the wrapper's thread, as before the copier existed."""
    tried: list[int] = []

    def no_fork() -> int:
        tried.append(1)
        raise BlockingIOError(11, "Resource temporarily unavailable")

    monkeypatch.setattr(relay.os, "fork", no_fork)
    r = run(["sh", "-c", "echo one; echo two >&2; echo three"])
    assert (r.exit_code, tried) == (0, [1])
    assert r.tail is not None and sorted(r.tail.splitlines()) == ["one", "three", "two"]
    captured = capfd.readouterr()
    assert (captured.out, captured.err) == ("one\nthree\n", "two\n")


def test_nothing_is_lost_or_doubled_when_the_wrapper_dies_mid_stream(tmp_path: Path) -> None:
    """The command writes numbered lines without pause while the wrapper is killed: every
    line reaches the file once, in order, and the command's writes never fail."""
    out, gate, status = tmp_path / "out", tmp_path / "gate", tmp_path / "status"
    writer = (
        "import os, sys, time\n"
        "gate, status = sys.argv[1], sys.argv[2]\n"
        "i = 0\n"
        "deadline = time.monotonic() + 120\n"
        "while not os.path.exists(gate) and time.monotonic() < deadline:\n"
        "    os.write(1, b'%d\\n' % i); i += 1\n"
        "for _ in range(20000):\n"
        "    os.write(1, b'%d\\n' % i); i += 1\n"
        "open(status, 'w').write(str(i))\n")
    with open(out, "wb") as f:
        wrapper = subprocess.Popen(
            jobreport_argv("run", "--job", "stream", "--", PY, "-c", writer, str(gate),
                           str(status)),
            stdout=f, stderr=subprocess.DEVNULL, env=jobreport_env())
    try:
        wait_until(lambda: out.stat().st_size > 100_000, timeout=WAIT)
    finally:
        wrapper.kill()
        wrapper.wait(WAIT)
    gate.touch()
    wait_until(lambda: text(status).strip(), timeout=WAIT)
    written = int(text(status))
    wait_until(lambda: not holders(out), timeout=WAIT)
    assert out.read_bytes() == b"".join(b"%d\n" % i for i in range(written))


def test_reaping_the_copier_waits_for_its_exit_and_no_longer() -> None:
    """``_reap`` reaps a copier that exits while it waits (woken by its pidfd), and leaves one
    that outlives the wait to init or the subreaper."""
    import time

    from jobreport.wrapper.relay import _reap

    quick = os.fork()
    if quick == 0:  # pragma: no cover - the child
        time.sleep(0.05)
        os._exit(0)
    _reap(quick, wait=30.0)
    with pytest.raises(ChildProcessError):
        os.waitpid(quick, os.WNOHANG)  # reaped already

    slow = os.fork()
    if slow == 0:  # pragma: no cover - the child
        time.sleep(60)
        os._exit(0)
    try:
        _reap(slow, wait=0.05)
        assert os.waitpid(slow, os.WNOHANG) == (0, 0)  # still running, not reaped
    finally:
        os.kill(slow, signal.SIGKILL)
        os.waitpid(slow, 0)
