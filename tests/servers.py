"""Start the real Debian programs (Pushgateway, Prometheus, Alertmanager, VictoriaMetrics,
vmagent, vmalert, node_exporter) on loopback.

Each server gets a free port and its own temporary data directory, is waited for until it
answers ``/-/ready`` and is stopped afterwards. Used by fixtures in conftest.py and by any
test module that needs more than one server.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tests import marks

PUSHGATEWAY = shutil.which("prometheus-pushgateway") or "/usr/bin/prometheus-pushgateway"
PROMETHEUS = shutil.which("prometheus") or "/usr/bin/prometheus"
ALERTMANAGER = shutil.which("prometheus-alertmanager") or "/usr/bin/prometheus-alertmanager"
# How long a server may take to answer /-/ready: seconds on a quiet machine, much longer
# when the machine is busy (Prometheus replays its WAL, Go start-up under load); a server
# that really does not come up is found out through its exit or this generous ceiling.
READY_TIMEOUT = 90.0


# Ports handed out by free_port() stay bound (not listening) by this process, so that no
# other program on a busy machine (the other tests, other suites, outgoing connections) can
# take one between free_port() and the server's own bind. The servers are Go programs, which
# set SO_REUSEADDR on their listeners: with SO_REUSEADDR on the holder as well, Linux lets
# them bind the held port, while a connect() meanwhile is refused as on a free port.
# Only the newest reservations are kept: a test needs its ports for its own duration, and
# each one is a descriptor of this process (select() fails on descriptors above 1023).
_held: dict[int, socket.socket] = {}
_HELD_MAX = 64


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that is free and stays reserved for this test run."""
    holder = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    with marks.reserving_a_port():  # bound, never listening: no server
        holder.bind(("127.0.0.1", 0))
    port = int(holder.getsockname()[1])
    _held[port] = holder
    while len(_held) > _HELD_MAX:  # the oldest reservations belong to finished tests
        _held.pop(next(iter(_held))).close()
    return port


@dataclass
class Server:
    """A running server process and where it listens."""

    name: str
    argv: list[str]
    port: int
    workdir: Path
    scheme: str = "http"
    #: What answers 200 once the server is ready (VictoriaMetrics: /health).
    ready_path: str = "/-/ready"
    proc: subprocess.Popen[bytes] | None = None
    log: Path = field(init=False)

    def __post_init__(self) -> None:
        self.log = self.workdir / f"{self.name}.log"

    @property
    def url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}"

    def start(self, ready_path: str | None = None, timeout: float = READY_TIMEOUT) -> Server:
        ready_path = ready_path or self.ready_path
        marks.check_server_start(self.name)
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                self.argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited early:\n{self.log.read_text()}")
            if self.scheme == "http":
                try:
                    with urllib.request.urlopen(self.url + ready_path, timeout=1) as r:
                        if r.status == 200:
                            return self
                except (urllib.error.URLError, OSError):
                    pass
            else:
                with socket.socket() as s:
                    if s.connect_ex(("127.0.0.1", self.port)) == 0:
                        return self
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"{self.name} not ready after {timeout}s:\n{self.log.read_text()}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None

    def restart(self) -> Server:
        self.stop()
        return self.start()


def pushgateway(
    workdir: Path,
    *,
    port: int | None = None,
    persistence: bool = False,
    extra: Sequence[str] = (),
    scheme: str = "http",
) -> Server:
    """A Pushgateway (not started yet) with its data under ``workdir``."""
    port = port or free_port()
    workdir.mkdir(parents=True, exist_ok=True)
    argv = [PUSHGATEWAY, f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn"]
    # Debian's build defaults --persistence.file to /var/lib/prometheus/pushgateway.data,
    # which every test gateway would share: always name the file, or none.
    if persistence:
        argv += [f"--persistence.file={workdir / 'pushgateway.db'}", "--persistence.interval=1s"]
    else:
        argv += ["--persistence.file="]
    argv += list(extra)
    return Server("pushgateway", argv, port, workdir, scheme=scheme)


def prometheus(workdir: Path, config: Path, *, port: int | None = None,
               extra: Sequence[str] = ()) -> Server:
    """A Prometheus (not started yet) with its TSDB under ``workdir``."""
    port = port or free_port()
    workdir.mkdir(parents=True, exist_ok=True)
    argv = [
        PROMETHEUS,
        f"--config.file={config}",
        f"--storage.tsdb.path={workdir / 'data'}",
        f"--web.listen-address=127.0.0.1:{port}",
        "--log.level=warn",
        *extra,
    ]
    return Server("prometheus", argv, port, workdir)


def alertmanager(workdir: Path, config: Path, *, port: int | None = None,
                 extra: Sequence[str] = ()) -> Server:
    """An Alertmanager (not started yet), clustering off, data under ``workdir``."""
    port = port or free_port()
    workdir.mkdir(parents=True, exist_ok=True)
    argv = [
        ALERTMANAGER,
        f"--config.file={config}",
        f"--storage.path={workdir / 'data'}",
        f"--web.listen-address=127.0.0.1:{port}",
        "--cluster.listen-address=",
        "--log.level=warn",
        *extra,
    ]
    return Server("alertmanager", argv, port, workdir)


VICTORIA_METRICS = shutil.which("victoria-metrics") or "/usr/bin/victoria-metrics"
VMAGENT = shutil.which("vmagent") or "/usr/bin/vmagent"
VMALERT = shutil.which("vmalert") or "/usr/bin/vmalert"
NODE_EXPORTER = (shutil.which("prometheus-node-exporter")
                 or "/usr/bin/prometheus-node-exporter")


def victoria_metrics(workdir: Path, *, port: int | None = None,
                     extra: Sequence[str] = ()) -> Server:
    """A single-node VictoriaMetrics (not started yet), data under ``workdir``; queries see
    samples at once (no 30 s latency offset, no result cache), so tests need not wait."""
    port = port or free_port()
    workdir.mkdir(parents=True, exist_ok=True)
    argv = [
        VICTORIA_METRICS,
        f"-storageDataPath={workdir / 'data'}",
        f"-httpListenAddr=127.0.0.1:{port}",
        "-search.latencyOffset=0s",
        "-search.disableCache",
        "-loggerLevel=WARN",
        *extra,
    ]
    return _vm(Server("victoria-metrics", argv, port, workdir))


def vmagent(workdir: Path, remote_write_url: str, *, port: int | None = None,
            extra: Sequence[str] = ()) -> Server:
    """A vmagent (not started yet) that buffers on disk under ``workdir`` and forwards to
    ``remote_write_url``, retrying every second while it is down."""
    port = port or free_port()
    workdir.mkdir(parents=True, exist_ok=True)
    argv = [
        VMAGENT,
        f"-httpListenAddr=127.0.0.1:{port}",
        f"-remoteWrite.url={remote_write_url}",
        f"-remoteWrite.tmpDataPath={workdir / 'buffer'}",
        "-remoteWrite.flushInterval=200ms",
        "-loggerLevel=WARN",
        *extra,
    ]
    return _vm(Server("vmagent", argv, port, workdir))


def vmalert(workdir: Path, rules: Sequence[Path], *, datasource: str, notifier: str,
            port: int | None = None, interval: str = "1s",
            extra: Sequence[str] = ()) -> Server:
    """A vmalert (not started yet) evaluating ``rules`` against ``datasource`` every
    ``interval``, writing recording rules' results back to it and sending alerts to the
    Alertmanager at ``notifier``."""
    port = port or free_port()
    workdir.mkdir(parents=True, exist_ok=True)
    argv = [
        VMALERT,
        f"-httpListenAddr=127.0.0.1:{port}",
        f"-datasource.url={datasource}",
        f"-notifier.url={notifier}",
        f"-remoteWrite.url={datasource}",
        f"-evaluationInterval={interval}",
        "-loggerLevel=WARN",
        *[f"-rule={p}" for p in rules],
        *extra,
    ]
    return _vm(Server("vmalert", argv, port, workdir))


def node_exporter(workdir: Path, textfile_dir: Path, *, port: int | None = None) -> Server:
    """A node_exporter (not started yet) with only the textfile collector, reading
    ``textfile_dir``."""
    port = port or free_port()
    workdir.mkdir(parents=True, exist_ok=True)
    argv = [
        NODE_EXPORTER,
        f"--web.listen-address=127.0.0.1:{port}",
        "--collector.disable-defaults",
        "--collector.textfile",
        f"--collector.textfile.directory={textfile_dir}",
        "--log.level=warn",
    ]
    server = Server("node-exporter", argv, port, workdir)
    server.ready_path = "/metrics"
    return server


def _vm(server: Server) -> Server:
    server.ready_path = "/health"
    return server


def alive(pid: int) -> bool:
    """Whether process ``pid`` runs (a zombie, exited and not reaped yet, does not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
