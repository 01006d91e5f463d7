"""A Pushgateway that holds a fleet's groups, for the benchmarks of reading one group back
and of what a gateway costs at 1,000 and 10,000 groups (no benchmark here).

Each group is what a successful run of ``jobreport run --expect-every 1d`` leaves
(jobreport's own exposition): 28 series, and the 2 the gateway adds. Filling pushes through
``--push.disable-consistency-check`` and a persistence file, then the gateway is restarted
as configured (by default with the check, as users run it), loading what it held: a default
gateway takes ever longer for each push as it grows (the check compares every push with all
it holds), which would make filling 10,000 groups take an hour.
"""

from __future__ import annotations

import http.client
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit

from _common import ROOT, clean_env  # noqa: F401 - ROOT puts the checkout on sys.path

from jobreport.exposition import text
from jobreport.result import RunResult
from jobreport.sinks.pushgateway import TEXT_FORMAT, group_path
from jobreport.spec import JobSpec
from jobreport.state import GroupState

SERIES = 28


def grouping(i: int) -> dict[str, str]:
    """The grouping of the ``i``-th group of the fleet: a job on one of its hosts."""
    return {"job": f"job{i % 100:03d}", "instance": f"host{i // 100:05d}"}


def body(i: int, now: float | None = None) -> bytes:
    """The push of the ``i``-th group: a success a minute ago, 28 series."""
    now = time.time() if now is None else now
    g = grouping(i)
    state = GroupState(job=g["job"], grouping=g, last_start=now - 65, last_success=now - 60,
                       runs_total={"success": 40 + i % 7, "failure": i % 3},
                       consecutive_failures=0,
                       last=RunResult(ended=now - 60, duration=5.0, outcome="success",
                                      exit_code=0))
    state.hold_to(JobSpec(g["job"], expect_every=86400.0))
    return text(state, "jobreport")


def count_series(data: bytes) -> int:
    return sum(1 for line in data.decode().splitlines() if line and not line.startswith("#"))


def push_all(url: str, indices: Sequence[int], threads: int = 8) -> None:
    """PUT each group of ``indices`` (a few connections at once, kept alive)."""
    parts = urlsplit(url)
    now = time.time()
    todo = list(indices)
    lock = threading.Lock()

    def work() -> None:
        conn = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=60)
        while True:
            with lock:
                if not todo:
                    break
                i = todo.pop()
            g = grouping(i)
            conn.request("PUT", group_path(g["job"], g), body(i, now),
                         {"Content-Type": TEXT_FORMAT})
            answer = conn.getresponse()
            answer.read()
            if answer.status // 100 != 2:
                raise RuntimeError(f"push {i}: {answer.status}")
        conn.close()

    workers = [threading.Thread(target=work) for _ in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()


def rss_mib(pid: int) -> float:
    """The resident memory of process ``pid``, in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


@contextmanager
def fleet_gateway(workdir: Path, groups: int, *,
                  extra: Sequence[str] = ()) -> Iterator[tuple[str, int]]:
    """A real Pushgateway holding ``groups`` groups (URL, pid), started with ``extra``."""
    from tests import servers

    workdir.mkdir(parents=True, exist_ok=True)
    port = servers.free_port()
    filler = servers.pushgateway(workdir, port=port, persistence=True,
                                 extra=["--push.disable-consistency-check"]).start()
    try:
        push_all(filler.url, range(groups))
    finally:
        filler.stop()  # writes the persistence file
    server = servers.pushgateway(workdir, port=port, persistence=True, extra=extra)
    server.start(timeout=600)
    try:
        assert server.proc is not None
        yield server.url, server.proc.pid
    finally:
        server.stop()


def environment(**settings: str) -> dict[str, str]:
    env = clean_env()
    env.update(settings)
    return env
