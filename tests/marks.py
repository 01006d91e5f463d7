"""``pytest -m unit``: the tests that start no server and no long child process, for quick
work (CI runs everything).

A test is marked ``unit`` at collection unless it uses a fixture of :data:`SERVER_FIXTURES`
(directly or through another fixture) or carries the ``integration`` mark (set on the modules
and tests that start servers or long children themselves, or run ``jobreport`` end to end as
a process) or the ``exhaustive`` mark (the
cases of a large table beyond one per row, which the quick subset can do without). A
mis-marked test is caught
whenever it runs, not only under ``-m unit``: inside a test marked ``unit``, starting a real
server program, a loopback server (a listening socket in this process), scripts/stack.sh or
scripts/demo.sh fails at once, naming the test and what it started.
"""

from __future__ import annotations

import contextlib
import os
import socket
import sys
import threading
from collections.abc import Generator, Iterator

import pytest

#: Fixtures that start a server (a real program or a loopback stub) or a cluster.
SERVER_FIXTURES = frozenset({
    "gateway", "shared_gateway", "secure_gateway", "mtls_gateway", "later_gateway",
    "gateway_server", "prometheus", "alerting", "stack", "peer", "files", "postgres_url",
    "down_then_up",
})

#: Programs that are servers: started as children, they make a test an integration test.
SERVER_PROGRAMS = frozenset({
    "prometheus-pushgateway", "prometheus", "prometheus-alertmanager", "victoria-metrics",
    "vmagent", "vmalert", "prometheus-node-exporter", "pg_ctl", "postgres", "stack.sh",
    "demo.sh",
})


class NotAUnitTest(RuntimeError):
    """A test marked ``unit`` started a server."""


def mark(items: list[pytest.Item]) -> None:
    """Mark every collected test that is a unit test ``unit``."""
    for item in items:
        uses = set(getattr(item, "fixturenames", ()))
        marked = any(item.get_closest_marker(m) for m in ("integration", "exhaustive"))
        if not marked and not uses & SERVER_FIXTURES:
            item.add_marker(pytest.mark.unit)


class _Running:
    unit_test: str | None = None  # the node id of the unit test running now


_reserving = threading.local()  # tests.servers.free_port() binds without listening


def _refuse(what: str) -> None:
    raise NotAUnitTest(
        f"{_Running.unit_test} is marked unit but starts {what}: mark it (or its module) "
        "@pytest.mark.integration, or have it use a fixture of tests.marks.SERVER_FIXTURES")


def check_server_start(name: str) -> None:
    """Called where a server is started (tests.servers.Server.start)."""
    if _Running.unit_test is not None:
        _refuse(f"the server {name}")


@contextlib.contextmanager
def reserving_a_port() -> Iterator[None]:
    """Binds in this thread meanwhile reserve a port (tests.servers.free_port): no server."""
    _reserving.on = True
    try:
        yield
    finally:
        _reserving.on = False


def _audit(event: str, args: tuple[object, ...]) -> None:
    if _Running.unit_test is None:
        return
    if event == "socket.bind":
        sock, address = args[0], args[1]
        if getattr(_reserving, "on", False):
            return
        if isinstance(sock, socket.socket) and sock.family in (socket.AF_INET, socket.AF_INET6):
            _refuse(f"a loopback server (a socket bound to {address})")
    elif event == "subprocess.Popen":
        argv = args[1]
        words = [str(a) for a in argv] if isinstance(argv, (list, tuple)) else [str(argv)]
        for word in words[:2]:  # the program, or the script bash or python runs
            if os.path.basename(word) in SERVER_PROGRAMS:
                _refuse(f"the program {os.path.basename(word)}")


sys.addaudithook(_audit)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item: pytest.Item,
                            nextitem: pytest.Item | None) -> Generator[None, object, object]:
    """The guard is on from the first fixture a unit test sets up to its last teardown."""
    _Running.unit_test = item.nodeid if item.get_closest_marker("unit") else None
    try:
        return (yield)
    finally:
        _Running.unit_test = None
