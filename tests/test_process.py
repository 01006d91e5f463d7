"""jobreport.wrapper.child: running the wrapped command, with real subprocesses throughout."""

from __future__ import annotations

import contextlib
import json
import os
import pty
import signal
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from jobreport import outcomes
from jobreport.wrapper.child import run
from jobreport.wrapper.exit_status import ProcessResult
from jobreport.wrapper.relay import Tail as _Tail
from tests.isolation import own_dirs

REPO = Path(__file__).resolve().parent.parent
PY = sys.executable
# Ceiling of every wait for something to happen (a file written, a process gone): seconds
# on a quiet machine, much more on a busy one; reached only when the thing never happens.
WAIT = 60.0

# Runs jobreport.wrapper.child.run in a fresh interpreter (so that signals, stdout and the
# terminal are its own) and writes the result as JSON to $RESULT_FILE.
DRIVER = r"""
import json, os, sys
if os.environ.get("DRIVER_CTTY"):
    import fcntl, signal, termios
    os.setsid()
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)
    # a terminal's foreground job starts with SIGINT at its default, even when the suite
    # runs in the background with SIGINT ignored
    signal.signal(signal.SIGINT, signal.SIG_DFL)
from jobreport.wrapper.child import run
r = run(
    sys.argv[1:],
    timeout=float(os.environ.get("DRIVER_TIMEOUT", "0")) or None,
    kill_after=float(os.environ.get("DRIVER_KILL_AFTER", "10")),
    subreaper=True,
    on_started=lambda pid: open(os.environ["PID_FILE"], "w").write(str(pid))
    if os.environ.get("PID_FILE") else None,
)
with open(os.environ["RESULT_FILE"], "w") as f:
    json.dump(r._asdict(), f)
sys.exit(r.exit_code)
"""


def driver_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO)
    env["RESULT_FILE"] = str(tmp_path / "result.json")
    env.update(extra)
    return env


def result_of(tmp_path: Path) -> dict[str, object]:
    data: dict[str, object] = json.loads((tmp_path / "result.json").read_text())
    return data


def gone(pid: int) -> bool:
    """True when ``pid`` has ended (a zombie waiting for init counts as ended)."""
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def wait_for_file(path: Path, timeout: float = WAIT) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and path.read_text().strip():
            return path.read_text().strip()
        time.sleep(0.02)
    raise AssertionError(f"{path} never written")


def wait_until(predicate: object, timeout: float = WAIT) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return True
        time.sleep(0.05)
    return False


def py(code: str) -> list[str]:
    return [PY, "-c", code]


@contextlib.contextmanager
def sigterm_blocked_in_children() -> Iterator[None]:
    """Block SIGTERM in this thread while run() starts the child. The child inherits the
    signal mask through fork and exec, so a SIGTERM sent to it stays pending until the
    child unblocks it itself (or forever): the child is "ready" for SIGTERM from its first
    instruction, however long the machine takes to start it."""
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


# -- exit codes and outcomes -------------------------------------------------------------


@pytest.mark.parametrize("code", [0, 1, 3, 42, 255])
def test_exit_code_passes_through(code: int) -> None:
    """The child's own exit code is the result's exit code; 0 is success, others failure."""
    r = run(["sh", "-c", f"exit {code}"])
    assert r.exit_code == code
    assert r.outcome == (outcomes.SUCCESS if code == 0 else outcomes.FAILURE)
    assert r.signal is None and r.error is None and not r.timed_out


def test_result_is_frozen_with_times() -> None:
    """The result is immutable and carries wall times, a monotonic duration and the pid."""
    before = time.time()
    r = run(["sleep", "0.2"])
    after = time.time()
    assert isinstance(r, ProcessResult)
    with pytest.raises(AttributeError):
        r.exit_code = 1  # type: ignore[misc]
    assert before <= r.started_at <= r.ended_at <= after
    assert 0.2 <= r.duration < 30  # seconds, not milliseconds; a busy machine is slow
    assert r.pid is not None and r.pid > 0


def test_command_not_found_is_127() -> None:
    """A command missing from PATH is not_found with exit code 127 and a clear message."""
    r = run(["jobreport-no-such-command-xyz", "arg"])
    assert (r.exit_code, r.outcome) == (127, outcomes.NOT_FOUND)
    assert r.error is not None and "jobreport-no-such-command-xyz" in r.error
    assert "not found" in r.error
    assert r.pid is None and r.cpu_seconds is None and r.max_rss_bytes is None


def test_empty_command_name_is_127() -> None:
    """An empty program name is not found (127), as in a shell."""
    r = run([""])
    assert (r.exit_code, r.outcome) == (127, outcomes.NOT_FOUND)


def test_missing_path_is_127(tmp_path: Path) -> None:
    """An absolute path that does not exist is not_found (127)."""
    r = run([str(tmp_path / "nope" / "cmd")])
    assert (r.exit_code, r.outcome) == (127, outcomes.NOT_FOUND)


def test_file_without_execute_bit_is_126(tmp_path: Path) -> None:
    """A file that may not be executed is not_executable with exit code 126."""
    script = tmp_path / "job.sh"
    script.write_text("#!/bin/sh\nexit 0\n")
    script.chmod(0o644)
    r = run([str(script)])
    assert (r.exit_code, r.outcome) == (126, outcomes.NOT_EXECUTABLE)
    assert r.error is not None and str(script) in r.error


def test_directory_is_126(tmp_path: Path) -> None:
    """Trying to run a directory is not_executable (126), like the shell says."""
    r = run([str(tmp_path)])
    assert (r.exit_code, r.outcome) == (126, outcomes.NOT_EXECUTABLE)
    assert r.error is not None and "is a directory" in r.error


def test_bad_interpreter_is_126_not_127(tmp_path: Path) -> None:
    """A script whose #! interpreter is missing exists, so it is 126 and says why."""
    script = tmp_path / "job.sh"
    script.write_text("#!/nonexistent/interpreter\nexit 0\n")
    script.chmod(0o755)
    r = run([str(script)])
    assert (r.exit_code, r.outcome) == (126, outcomes.NOT_EXECUTABLE)
    assert r.error is not None and "interpreter" in r.error


def test_not_a_binary_is_126(tmp_path: Path) -> None:
    """An executable file without #! that the kernel cannot load is 126 (exec format error)."""
    blob = tmp_path / "blob"
    blob.write_bytes(b"\x00\x01\x02\x03 not a program")
    blob.chmod(0o755)
    r = run([str(blob)])
    assert (r.exit_code, r.outcome) == (126, outcomes.NOT_EXECUTABLE)


@pytest.mark.parametrize(
    ("sig", "outcome"),
    [
        (signal.SIGTERM, outcomes.SIGNAL),
        (signal.SIGKILL, outcomes.SIGNAL),
        (signal.SIGSEGV, outcomes.SIGNAL),
        (signal.SIGINT, outcomes.INTERRUPTED),
    ],
)
def test_death_by_signal_is_128_plus_n(sig: int, outcome: str) -> None:
    """A child killed by signal N exits 128+N; SIGINT is interrupted, others signal."""
    reset = f"signal.signal({int(sig)}, signal.SIG_DFL); " if sig != signal.SIGKILL else ""
    r = run(py(f"import os, signal; {reset}os.kill(os.getpid(), {int(sig)})"))
    assert r.exit_code == 128 + sig
    assert r.outcome == outcome
    assert r.signal == sig


def test_empty_command_is_refused() -> None:
    """run() needs a command."""
    with pytest.raises(ValueError, match="no command"):
        run([])


# -- timeout -----------------------------------------------------------------------------


def test_timeout_kills_and_reports_124() -> None:
    """At the timeout the child gets SIGTERM; the run is a timeout with exit code 124."""
    r = run(["sleep", "30"], timeout=0.3)
    assert (r.exit_code, r.outcome) == (124, outcomes.TIMEOUT)
    assert r.timed_out and r.signal == signal.SIGTERM
    assert r.duration < 20  # stopped, not waited for (sleep 30)
    assert r.pid is not None and gone(r.pid)


@pytest.mark.integration  # long child processes
def test_timeout_escalates_to_sigkill_after_kill_after() -> None:
    """A child deaf to SIGTERM is killed with SIGKILL once kill_after has passed."""
    with sigterm_blocked_in_children():  # deaf from its first instruction, however slow
        r = run(["sleep", "30"], timeout=0.5, kill_after=0.5)
    assert (r.exit_code, r.outcome) == (124, outcomes.TIMEOUT)
    assert r.signal == signal.SIGKILL
    assert r.duration < 20  # killed, not waited for (sleep 30)


def test_timeout_is_124_even_when_the_child_exits_cleanly_on_sigterm() -> None:
    """What the child does with the SIGTERM of a timeout does not change the outcome."""
    # the child takes SIGTERM only once its handler is in place (it starts with SIGTERM
    # blocked), so the timeout's SIGTERM always reaches the handler, however slow the start
    code = ("import signal, sys, time\n"
            "signal.signal(signal.SIGTERM, lambda *a: sys.exit(0))\n"
            "signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM})\n"
            "time.sleep(30)\n")
    with sigterm_blocked_in_children():
        r = run(py(code), timeout=0.5)
    assert (r.exit_code, r.outcome) == (124, outcomes.TIMEOUT)


@pytest.mark.integration  # long child processes
def test_timeout_sends_one_sigterm_to_a_child_of_its_own_group(tmp_path: Path) -> None:
    """The timeout's SIGTERM reaches each process once: a child cleaning up after the first
    one is not cut short by a second (killpg and the per-process pass used to send two)."""
    seen = tmp_path / "sigterms"
    code = ("import signal, sys, time\n"
            f"path = {str(seen)!r}\n"
            "def on_term(*a):\n"
            "    open(path, 'a').write('T')\n"
            "signal.signal(signal.SIGTERM, on_term)\n"
            "signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM})\n"
            "deadline = time.monotonic() + 30\n"
            "while not __import__('os').path.exists(path) and time.monotonic() < deadline:\n"
            "    time.sleep(0.05)\n"
            "time.sleep(1.0)  # a second SIGTERM would land here\n"
            "sys.exit(0)\n")
    with sigterm_blocked_in_children():
        r = run(py(code), timeout=0.5)
    assert r.outcome == outcomes.TIMEOUT
    assert seen.read_text() == "T"


def test_no_timeout_when_child_ends_in_time() -> None:
    """A timeout that is not reached changes nothing."""
    r = run(["sh", "-c", "exit 5"], timeout=30)
    assert (r.exit_code, r.outcome, r.timed_out) == (5, outcomes.FAILURE, False)


@pytest.mark.integration  # long child processes
@pytest.mark.parametrize("subreaper", [False, True])
def test_timeout_kills_the_whole_tree(tmp_path: Path, subreaper: bool) -> None:
    """Grandchildren die too, including one that left the process group with setsid and
    one that ignores SIGTERM."""
    pids = tmp_path / "pids"
    script = (
        f"sleep 60 & echo $! >> {pids}; "
        f"setsid sleep 61 & echo $! >> {pids}; "
        f"{PY} -c 'import signal,time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
        f"time.sleep(62)' & echo $! >> {pids}; "
        "wait"
    )
    # the timeout leaves the shell time to start all three even on a busy machine
    r = run(["sh", "-c", script], timeout=3.0, kill_after=0.5, subreaper=subreaper)
    assert (r.exit_code, r.outcome) == (124, outcomes.TIMEOUT)
    found = [int(p) for p in pids.read_text().split()]
    assert len(found) == 3
    assert wait_until(lambda: all(gone(p) for p in found))


# -- signals sent to jobreport -----------------------------------------------------------


class SignalToSelf:
    """Sends ``sig`` to this process from another thread once ``ready()`` holds (polled up
    to WAIT), as a user or init would while the main thread waits for the child."""

    def __init__(self, sig: int, ready: object = lambda: True) -> None:
        self.sig = sig
        self.ready = ready
        self.thread: threading.Thread | None = None

    def __call__(self, _pid: int) -> None:  # run()'s on_started: the child has exec'd
        self.thread = threading.Thread(target=self._send, daemon=True)
        self.thread.start()

    def _send(self) -> None:
        if wait_until(self.ready):
            os.kill(os.getpid(), self.sig)

    def join(self) -> None:
        assert self.thread is not None, "on_started was not called"
        self.thread.join(WAIT)


@pytest.mark.parametrize(
    ("sig", "outcome"),
    [
        (signal.SIGTERM, outcomes.SIGNAL),
        (signal.SIGHUP, outcomes.SIGNAL),
        (signal.SIGINT, outcomes.INTERRUPTED),
    ],
)
def test_signals_are_forwarded_to_the_child(sig: int, outcome: str, tmp_path: Path) -> None:
    """SIGTERM/SIGHUP/SIGINT sent to jobreport reach the child, once each, whose death
    decides."""
    before = signal.getsignal(sig)
    ready, seen = tmp_path / "ready", tmp_path / "seen"
    # the child notes each signal it gets, then dies of it as it would have
    code = ("import os, pathlib, signal, time\n"
            "def got(n, frame):\n"
            f"    with open({str(seen)!r}, 'a') as out: out.write(f'{{n}}\\n')\n"
            "    signal.signal(n, signal.SIG_DFL)\n"
            "    os.kill(os.getpid(), n)\n"
            f"signal.signal({int(sig)}, got)\n"
            f"pathlib.Path({str(ready)!r}).write_text('1')\n"
            "time.sleep(30)\n")
    sender = SignalToSelf(sig, ready.exists)  # once the child's handler is in place
    r = run(py(code), on_started=sender)
    sender.join()
    assert r.exit_code == 128 + sig
    assert r.outcome == outcome
    assert seen.read_text() == f"{int(sig)}\n"  # passed on exactly once
    assert r.pid is not None and gone(r.pid)
    assert signal.getsignal(sig) == before


def test_child_that_handles_sigterm_and_exits_zero_succeeded(tmp_path: Path) -> None:
    """The child's own exit status decides: trapping SIGTERM and exiting 0 is success."""
    ready, seen = tmp_path / "ready", tmp_path / "seen"
    code = ("import pathlib, signal, sys, time\n"
            "def got(n, frame):\n"
            f"    pathlib.Path({str(seen)!r}).write_text(str(n))\n"
            "    sys.exit(0)\n"
            "signal.signal(signal.SIGTERM, got)\n"
            f"pathlib.Path({str(ready)!r}).write_text('1')\n"
            "time.sleep(30)\n")
    sender = SignalToSelf(signal.SIGTERM, ready.exists)  # once its handler is in place
    r = run(py(code), on_started=sender)
    sender.join()
    assert (r.exit_code, r.outcome) == (0, outcomes.SUCCESS)
    assert seen.read_text() == str(int(signal.SIGTERM))  # it was the forwarded SIGTERM


def test_sigterm_to_jobreport_process_gives_143(tmp_path: Path) -> None:
    """A real jobreport process killed with SIGTERM forwards it and exits 143 with the
    child gone."""
    pid_file = tmp_path / "pid"
    proc = subprocess.Popen([PY, "-c", DRIVER, "sleep", "30"],
                            env=driver_env(tmp_path, PID_FILE=str(pid_file)))
    child = int(wait_for_file(pid_file))
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(20) == 143
    result = result_of(tmp_path)
    assert result["outcome"] == outcomes.SIGNAL and result["signal"] == signal.SIGTERM
    assert gone(child)


# -- output ------------------------------------------------------------------------------


def test_tail_keeps_last_lines_of_both_streams() -> None:
    """The tail holds the last N lines of stdout and stderr in order of arrival."""
    # "arrival" is when jobreport reads a pipe: before writing to the other stream the child
    # waits until jobreport has read everything it wrote (FIONREAD of the pipe is 0), so the
    # order of arrival is the order of writing on any machine
    code = ("import fcntl, os, struct, termios, time\n"
            "def drained(fd):\n"
            "    for _ in range(6000):\n"
            "        if struct.unpack('i', fcntl.ioctl(fd, termios.FIONREAD, bytes(4)))[0] == 0:\n"
            "            return\n"
            "        time.sleep(0.01)\n"
            "os.write(1, b''.join(b'out%d\\n' % i for i in range(1, 6)))\n"
            "drained(1)\n"
            "os.write(2, b'err\\n')\n"
            "drained(2)\n"
            "os.write(1, b'last\\n')\n")
    r = run(py(code), tail_lines=3)
    assert r.tail == "out5\nerr\nlast"


def test_tail_keeps_an_unfinished_last_line() -> None:
    """Output without a final newline still ends up in the tail."""
    r = run(["printf", "a\\nb"])
    assert r.tail == "a\nb"


def test_tail_is_bounded_in_bytes() -> None:
    """A huge line does not make the tail huge."""
    r = run(py("import sys; sys.stdout.write('x' * 500000 + '\\nend\\n')"),
            tail_lines=5, tail_bytes=1000)
    assert r.tail is not None and len(r.tail.encode()) <= 1000
    assert r.tail.endswith("end")


def test_tail_off_with_zero_lines() -> None:
    """tail_lines=0 captures nothing."""
    r = run(["echo", "hello"], tail_lines=0)
    assert r.tail is None


def test_tail_decodes_invalid_utf8_safely() -> None:
    """Binary output becomes replacement characters in the tail, never an error."""
    r = run(["printf", "ok\\377\\376\\n"])
    assert r.tail is not None and r.tail.startswith("ok")


def test_tail_unit_lines_are_assembled_per_stream() -> None:
    """A stdout line cut in two chunks is not split by a stderr line in between."""
    tail = _Tail(10, 1000)
    tail.feed(1, b"hel")
    tail.feed(2, b"error\n")
    tail.feed(1, b"lo\n")
    assert tail.text() == "error\nhello"


def run_driver(tmp_path: Path, argv: list[str], stdin: bytes = b"",
               **env: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([PY, "-c", DRIVER, *argv], input=stdin, capture_output=True,
                          env=driver_env(tmp_path, **env), timeout=60, check=False)


def test_large_binary_output_passes_through_unchanged(tmp_path: Path) -> None:
    """Several MB of arbitrary bytes on stdout and stderr arrive byte for byte."""
    blob = tmp_path / "blob"
    data = os.urandom(3 * 1024 * 1024) + b"\n\x00\r\n"
    blob.write_bytes(data)
    out = run_driver(tmp_path, [PY, "-c",
                                "import sys; d=open(sys.argv[1],'rb').read(); "
                                "sys.stdout.buffer.write(d); sys.stderr.buffer.write(d[::-1])",
                                str(blob)])
    assert out.returncode == 0
    assert out.stdout == data
    assert out.stderr == data[::-1]
    assert result_of(tmp_path)["tail"] is not None


def test_interleaving_is_exact_when_both_streams_share_one_file(tmp_path: Path) -> None:
    """With stdout and stderr on the same pipe (cron, journald, 2>&1) the child's order of
    writes is kept exactly, in the output and in the tail."""
    code = ("import os\n"
            "for i in range(300):\n"
            "    os.write(1 + i % 2, b'line %d\\n' % i)\n")
    out = subprocess.run([PY, "-c", DRIVER, PY, "-c", code], stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, env=driver_env(tmp_path), timeout=60,
                         check=False)
    assert out.returncode == 0
    assert out.stdout == b"".join(b"line %d\n" % i for i in range(300))
    assert result_of(tmp_path)["tail"] == "\n".join(f"line {i}" for i in range(280, 300))


def test_stdin_passes_through(tmp_path: Path) -> None:
    """The child reads jobreport's stdin."""
    payload = b"line one\nline two\n\x00\xff"
    out = run_driver(tmp_path, ["cat"], stdin=payload)
    assert out.returncode == 0 and out.stdout == payload


def test_streams_stay_separate(tmp_path: Path) -> None:
    """stdout and stderr are not merged."""
    out = run_driver(tmp_path, ["sh", "-c", "echo to-out; echo to-err >&2"])
    assert out.stdout == b"to-out\n" and out.stderr == b"to-err\n"


def test_output_is_relayed_before_the_child_ends(tmp_path: Path) -> None:
    """Output is not held back until the end (no buffering in jobreport)."""
    proc = subprocess.Popen(
        [PY, "-c", DRIVER, PY, "-c",
         "import sys, time; print('first', flush=True); time.sleep(30)"],
        stdout=subprocess.PIPE, env=driver_env(tmp_path))
    try:
        assert proc.stdout is not None
        assert _readable(proc.stdout, WAIT), "no output while the child runs"
        assert proc.stdout.readline() == b"first\n"
    finally:
        proc.terminate()
        proc.wait(20)


def test_closed_reader_gives_the_child_sigpipe(tmp_path: Path) -> None:
    """When jobreport's reader goes away the child sees a broken pipe, as without jobreport."""
    proc = subprocess.Popen([PY, "-c", DRIVER, "yes"], stdout=subprocess.PIPE,
                            env=driver_env(tmp_path))
    assert proc.stdout is not None
    assert proc.stdout.read(10) == b"y\ny\ny\ny\ny\n"
    proc.stdout.close()
    assert proc.wait(20) == 128 + signal.SIGPIPE
    assert result_of(tmp_path)["outcome"] == outcomes.SIGNAL


@pytest.fixture
def pty_pair() -> Iterator[tuple[int, int]]:
    master, slave = pty.openpty()
    try:
        yield master, slave
    finally:
        for fd in (master, slave):
            try:
                os.close(fd)
            except OSError:
                pass


def read_until(fd: int, needle: bytes, timeout: float = WAIT) -> bytes:
    buf = b""
    deadline = time.monotonic() + timeout
    while needle not in buf and time.monotonic() < deadline:
        if _readable(fd, 0.2):
            try:
                chunk = os.read(fd, 4096)
            except OSError:
                break
            if not chunk:
                break
            buf += chunk
    return buf


def test_terminal_foreground_keeps_terminal_reads_and_ctrl_c(
    tmp_path: Path, pty_pair: tuple[int, int]
) -> None:
    """In a terminal's foreground the child can read the terminal, and Ctrl-C interrupts
    the child once (outcome interrupted, 130) while jobreport survives to report it."""
    master, slave = pty_pair
    code = ("import sys, time\n"
            "line = sys.stdin.readline()\n"
            "print('got', line.strip(), flush=True)\n"
            "time.sleep(30)\n")
    proc = subprocess.Popen([PY, "-c", DRIVER, PY, "-c", code], stdin=slave, stdout=slave,
                            stderr=slave, env=driver_env(tmp_path, DRIVER_CTTY="1"))
    os.close(slave)
    os.write(master, b"hello\n")
    assert b"got hello" in read_until(master, b"got hello")
    os.write(master, b"\x03")  # Ctrl-C: SIGINT to the terminal's foreground group
    # a generous ceiling: under load (a busy core, the suite's other worker) 20 s once
    # did not suffice; the test is about the exit code, not how fast it comes
    assert proc.wait(120) == 130
    result = result_of(tmp_path)
    assert result["outcome"] == outcomes.INTERRUPTED
    assert result["tail"] is None  # a terminal is never captured


# -- resources ---------------------------------------------------------------------------


def test_cpu_seconds_counts_the_child() -> None:
    """CPU time of the child comes from the kernel's rusage."""
    r = run(py("import time\nt = time.process_time()\nwhile time.process_time() - t < 0.4: pass"))
    assert r.cpu_seconds is not None and r.cpu_seconds >= 0.35


def test_max_rss_is_the_largest_process_of_the_tree() -> None:
    """Peak RSS includes a grandchild the child waited for."""
    alloc = "x = bytearray(150 * 1024 * 1024)"
    r = run(["sh", "-c", f"{PY} -c '{alloc}'; exit 0"])
    assert r.max_rss_bytes is not None and r.max_rss_bytes >= 150 * 1024 * 1024


@pytest.mark.integration  # long child processes
def test_orphans_are_counted_as_subreaper(tmp_path: Path) -> None:
    """A grandchild orphaned during the run is reaped and counted when we are subreaper.
    (Without it, where the orphan goes depends on the machine's process tree, so nothing is
    asserted about that case.)"""
    alloc = "x = bytearray(150 * 1024 * 1024)"
    # the shell outlives the orphan, however long it takes: it waits until the orphan has
    # been reaped (by us, the subreaper, during the run), bounded to about a minute
    script = (f"({PY} -c '{alloc}' & echo $! > \"$1\"); p=$(cat \"$1\"); i=0; "
              'while kill -0 "$p" 2>/dev/null && [ $i -lt 600 ]; do sleep 0.1; i=$((i+1)); done')
    r = run(["sh", "-c", script, "sh", str(tmp_path / "orphan.pid")], subreaper=True)
    assert r.exit_code == 0
    assert r.max_rss_bytes is not None
    assert r.max_rss_bytes >= 150 * 1024 * 1024


def test_subreaper_is_restored_afterwards() -> None:
    """The calling process is not left a subreaper."""
    from jobreport.wrapper.tree import get_subreaper as _prctl_get_subreaper

    assert _prctl_get_subreaper() == 0
    run(["true"], subreaper=True)
    assert _prctl_get_subreaper() == 0


# -- environment and hooks ---------------------------------------------------------------


def test_environment_is_given_to_the_child() -> None:
    """The env mapping is the child's whole environment; PATH in it finds the command."""
    r = run(["sh", "-c", 'test "$JOBREPORT_JOB" = backup'],
            env=own_dirs(PATH=os.environ["PATH"], JOBREPORT_JOB="backup"))
    assert r.exit_code == 0


def test_on_started_gets_the_pid() -> None:
    """on_started is called once, with the child's pid."""
    started: list[int] = []
    r = run(["true"], on_started=started.append)
    assert started == [r.pid]


def test_failing_hooks_do_not_disturb_the_run() -> None:
    """An exception in on_started is swallowed."""
    def boom(*_args: object) -> None:
        raise RuntimeError("reporting broke")

    r = run(["sh", "-c", "exit 4"], on_started=boom)
    assert (r.exit_code, r.outcome) == (4, outcomes.FAILURE)


def test_inherited_descriptors_reach_the_child(tmp_path: Path) -> None:
    """A descriptor jobreport inherited as inheritable (socket activation, a lock) stays
    open in the child; jobreport's own descriptors do not leak."""
    r_fd, w_fd = os.pipe()
    own = os.open(str(tmp_path), os.O_RDONLY)
    os.set_inheritable(w_fd, True)
    try:
        r = run(py(f"import os\nos.write({w_fd}, b'hi\\n')\n"
                   f"try:\n    os.fstat({own})\nexcept OSError:\n    raise SystemExit(0)\n"
                   "raise SystemExit(9)"))
        assert r.exit_code == 0
        assert os.read(r_fd, 10) == b"hi\n"
    finally:
        for fd in (r_fd, w_fd, own):
            os.close(fd)


def test_child_runs_in_its_own_process_group_when_not_in_a_terminal(tmp_path: Path) -> None:
    """Outside a terminal's foreground the child leads a new process group."""
    out = tmp_path / "pg"
    r = run(py(f"import os; open({str(out)!r}, 'w').write(f'{{os.getpid()}} {{os.getpgrp()}}')"))
    assert r.exit_code == 0
    pid, pgrp = out.read_text().split()
    assert pid == pgrp != str(os.getpgrp())


def test_executable_found_through_path_in_env(tmp_path: Path) -> None:
    """PATH of the child's environment is searched, not only jobreport's."""
    tool = tmp_path / "bin" / "mytool"
    tool.parent.mkdir()
    tool.write_text("#!/bin/sh\nexit 7\n")
    tool.chmod(tool.stat().st_mode | stat.S_IXUSR)
    r = run(["mytool"], env=own_dirs(PATH=f"{tool.parent}:{os.environ['PATH']}"))
    assert r.exit_code == 7


def _readable(fd: object, timeout: float) -> bool:
    """Whether ``fd`` has input within ``timeout`` s (poll: no FD_SETSIZE limit, so it works
    however many descriptors the test process already holds)."""
    import selectors

    with selectors.DefaultSelector() as sel:
        sel.register(fd, selectors.EVENT_READ)  # type: ignore[arg-type]
        return bool(sel.select(timeout))
