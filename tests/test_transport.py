"""The sinks' HTTP (``jobreport.sinks.transport``: requests with jobreport's deadline) at its
edges: kept-alive connections and a peer that drops them, answers that are not HTTP,
chunked or without end, settings HTTP cannot carry, credentials in URLs, IPv6, TLS
handshakes that never come or fail. A loopback peer that misbehaves on purpose; the real
Pushgateway elsewhere. (Proxies: tests/test_proxy.py.)"""

from __future__ import annotations

import base64
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from jobreport.config import Config, load_config
from jobreport.errors import DeliveryError
from jobreport.exposition import text
from jobreport.sinks import transport
from jobreport.sinks._peers import PeerMemory
from jobreport.sinks.pushgateway import PushgatewaySink
from jobreport.state import GroupState
from tests.conftest import Gateway

pytestmark = pytest.mark.integration  # starts loopback servers itself

OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"


class Peer:
    """A loopback peer: ``answer(request bytes) -> bytes`` for each request; after an
    answer it closes the connection when ``close_after`` is set. Counts connections."""

    def __init__(self, answer: Callable[[bytes], bytes], *, close_after: bool = False) -> None:
        self.answer = answer
        self.close_after = close_after
        self.connections = 0
        self.requests: list[bytes] = []
        self.closed = threading.Event()
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.sock.settimeout(0.1)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)

    def __enter__(self) -> Peer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)
        self.sock.close()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            self.connections += 1
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        conn.settimeout(10)
        with conn:
            buf = b""
            while not self._stop.is_set():
                try:
                    while b"\r\n\r\n" not in buf:
                        chunk = conn.recv(65536)
                        if not chunk:
                            return
                        buf += chunk
                    head, _, rest = buf.partition(b"\r\n\r\n")
                    length = 0
                    for line in head.split(b"\r\n")[1:]:
                        name, _, value = line.partition(b":")
                        if name.strip().lower() == b"content-length":
                            length = int(value)
                    while len(rest) < length:
                        rest += conn.recv(65536)
                    self.requests.append(head + b"\r\n\r\n" + rest[:length])
                    buf = rest[length:]
                    conn.sendall(self.answer(head))
                except OSError:
                    return
                if self.close_after:
                    conn.close()
                    self.closed.set()
                    return


def _config(url: str, tmp_path: Path, **settings: str) -> Config:
    values = {"budget": "5s", "timeout": "2s", **settings}
    return load_config(env={}, gateway=url, db=f"sqlite:///{tmp_path / 's.db'}",
                       instance="h1", **values)


def _sink(config: Config, tmp_path: Path) -> PushgatewaySink:
    return PushgatewaySink(config, sleep=lambda _s: None, peers=PeerMemory(tmp_path / "peers"))


BODY = text(GroupState(job="b", grouping={"job": "b"}, running=1))


def _push(sink: PushgatewaySink, budget: float = 5.0, job: str = "b",
          grouping: dict[str, str] | None = None) -> None:
    sink.push_text(job, {"instance": "h1"} if grouping is None else grouping, BODY,
                   deadline=time.monotonic() + budget)


def _get(sink: PushgatewaySink, path: str, budget: float = 5.0) -> transport.Answer:
    return sink.send("GET", sink.url + path, deadline=time.monotonic() + budget)


def test_pushes_share_one_kept_alive_connection(tmp_path: Path) -> None:
    with Peer(lambda _r: OK) as peer:
        sink = _sink(_config(peer.url, tmp_path), tmp_path)
        for _ in range(3):
            _push(sink)
    assert len(peer.requests) == 3
    assert peer.connections == 1


def test_a_connection_the_peer_closed_while_idle_is_not_reused(tmp_path: Path) -> None:
    """The peer closes after each answer without saying so: the next push sees the idle
    connection is gone and opens a new one, with no failed attempt."""
    with Peer(lambda _r: OK, close_after=True) as peer:
        sink = _sink(_config(peer.url, tmp_path), tmp_path)
        _push(sink)
        assert peer.closed.wait(10)
        _push(sink)
    assert len(peer.requests) == 2
    assert peer.connections == 2


def test_a_chunked_answer_is_read_whole(tmp_path: Path) -> None:
    body = b'# TYPE pushgateway_build_info gauge\npushgateway_build_info{version="1"} 1\n'
    chunked = (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
               + f"{len(body):x}\r\n".encode() + body + b"\r\n0\r\n\r\n")
    with Peer(lambda _r: chunked) as peer:
        sink = _sink(_config(peer.url, tmp_path), tmp_path)
        answer = _get(sink, "/metrics")
        assert sink.groups(deadline=time.monotonic() + 5) == []
    assert answer.content == body


@pytest.mark.parametrize("answer", [b"garbage\r\n\r\n", b"HTTP/1.1 abc OK\r\n\r\n",
                                    b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort",
                                    b"HTTP/1.1 200 OK\r\n" + b"X: " + b"y" * 70000 + b"\r\n\r\n"])
def test_an_answer_that_is_not_http_is_one_line_and_retried(answer: bytes,
                                                            tmp_path: Path) -> None:
    with Peer(lambda _r: answer, close_after=True) as peer, \
            pytest.raises(DeliveryError) as raised:
        _push(_sink(_config(peer.url, tmp_path), tmp_path), budget=1.0)
    message = str(raised.value)
    assert "\n" not in message and message.startswith("cannot reach the Pushgateway at")
    assert raised.value.retryable
    assert len(peer.requests) >= 2  # retried within the budget


@pytest.mark.parametrize("framing", ["length", "chunked"])
def test_an_answer_without_end_is_cut(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                      framing: str) -> None:
    """An answer larger than jobreport reads (said in advance or not) is cut, not read to
    its end."""
    monkeypatch.setattr(transport, "MAX_ANSWER_BYTES", 1000)
    if framing == "length":
        big = b"HTTP/1.1 200 OK\r\nContent-Length: 5000\r\n\r\n" + b"x" * 5000
    else:
        big = (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
               + b"400\r\n" + b"x" * 1024 + b"\r\n") * 5 + b"0\r\n\r\n"
    with Peer(lambda _r: big) as peer, pytest.raises(DeliveryError, match="larger than"):
        _get(_sink(_config(peer.url, tmp_path), tmp_path), "/x", budget=1.0)


def test_a_token_http_cannot_carry_is_refused_without_showing_it(tmp_path: Path) -> None:
    with Peer(lambda _r: OK) as peer:
        config = _config(peer.url, tmp_path).with_overrides(token="s3cret\r\nX-Evil: 1")
        with pytest.raises(DeliveryError) as raised:
            _push(_sink(config, tmp_path), grouping={})
    assert "s3cret" not in str(raised.value) and "Evil" not in str(raised.value)
    assert "a header cannot be sent" in str(raised.value)
    assert "JOBREPORT_TOKEN" in str(raised.value)
    assert not raised.value.retryable
    assert peer.requests == []  # nothing injected reached the peer


def test_credentials_in_the_url_are_basic_auth_decoded(tmp_path: Path) -> None:
    with Peer(lambda _r: OK) as peer:
        url = peer.url.replace("http://", "http://us%40er:p%3Ass%2F@")
        _push(_sink(_config(url, tmp_path), tmp_path), grouping={})
    head = peer.requests[0].split(b"\r\n\r\n")[0].decode()
    token = base64.b64encode(b"us@er:p:ss/").decode()
    assert f"Authorization: Basic {token}" in head
    assert "us%40er" not in head.split("\r\n")[0]  # not in the request line


def test_an_ipv6_gateway_url_reaches_the_real_gateway(tmp_path: Path) -> None:
    """``http://[::1]:PORT``: the address is used as it is (no lookup), the Host header
    carries the brackets, and the run lands."""
    from tests import servers
    from tests.faults import cli_env, run_cli

    port = servers.free_port()
    server = servers.pushgateway(tmp_path / "pg", port=port,
                                 extra=[f"--web.listen-address=[::1]:{port}"]).start()
    try:
        env = cli_env(JOBREPORT_GATEWAY=f"http://[::1]:{port}", JOBREPORT_INSTANCE="h1",
                      JOBREPORT_DB=f"sqlite:///{tmp_path / 's.db'}", JOBREPORT_BUDGET="30s")
        proc = run_cli(["run", "--job", "six", "--", "sh", "-c", "exit 2"], env)
        assert proc.returncode == 2 and proc.stderr == "", proc.stderr
        assert Gateway(server).samples("six", instance="h1")["jobreport_last_exit_code"] == 2
    finally:
        server.stop()


def test_a_tls_handshake_that_never_comes_is_cut_at_the_budget(tmp_path: Path) -> None:
    """An https:// peer that accepts and never speaks: the handshake is inside the one
    deadline of the exchange (generous ceiling; unbounded it would wait the 30 s timeout)."""
    from tests.faults import SilentServer

    with SilentServer() as silent:
        url = silent.url.replace("http://", "https://")
        sink = _sink(_config(url, tmp_path, timeout="30s"), tmp_path)
        start = time.monotonic()
        with pytest.raises(DeliveryError) as raised:
            _push(sink, budget=1.0, grouping={})
    assert time.monotonic() - start <= 1 + 10
    assert "did not answer within" in str(raised.value), str(raised.value)
    assert raised.value.retryable


def test_failed_handshakes_leave_no_descriptor_open(tmp_path: Path) -> None:
    """A peer that is not TLS, twenty times over: every socket of every failed handshake is
    closed (the TLS socket owns the descriptor once wrapped)."""
    import os

    with Peer(lambda _r: b"not TLS at all\r\n\r\n", close_after=True) as peer:
        url = peer.url.replace("http://", "https://")
        sink = _sink(_config(url, tmp_path), tmp_path)
        _push_or_fail(sink)  # the first one loads what TLS needs once
        before = len(os.listdir("/proc/self/fd"))
        for _ in range(20):
            _push_or_fail(sink)
        assert len(os.listdir("/proc/self/fd")) <= before + 2


def _push_or_fail(sink: PushgatewaySink) -> None:
    with pytest.raises(DeliveryError, match="TLS error|cannot reach|did not answer"):
        _push(sink, budget=0.5, grouping={})


def test_a_closed_deadline_never_shuts_a_later_exchanges_socket() -> None:
    """A deadline whose exchange is over holds nothing: when its time comes, the socket it
    watched (now another exchange's, on a kept-alive connection) is left alone; a deadline
    that passes during its exchange shuts the socket down at once."""
    from jobreport.sinks import _deadline

    a, b = socket.socketpair()
    with a, b:
        with _deadline.Deadline(time.monotonic() + 0.05) as first:
            first.watch(a)
        assert first.closed and not first.expired
        # the watchdog reaches the first deadline's time (and drops it, closed)
        bound = time.monotonic() + 30
        while any(d is first for *_, d in _deadline._watchdog._heap):
            assert time.monotonic() < bound, "the watchdog never reached the deadline"
            threading.Event().wait(0.01)
        assert not first.expired
        b.sendall(b"x")
        a.settimeout(5)
        assert a.recv(1) == b"x", "the socket still works"
        with _deadline.Deadline(time.monotonic() + 0.1) as second:
            second.watch(a)
            assert a.recv(1) == b"", "shut down by the deadline while waiting"
        assert second.expired


def test_a_kept_alive_connection_is_watched_by_each_exchange(tmp_path: Path) -> None:
    """The second push reuses the first one's connection; its own (short) deadline still
    cuts it when the peer does not answer, and the first one's has no hold on it."""
    answered = threading.Event()

    def answer(_request: bytes) -> bytes:
        if answered.is_set():
            threading.Event().wait(10)  # the second request: no answer in time
        answered.set()
        return OK

    with Peer(answer) as peer:
        sink = _sink(_config(peer.url, tmp_path, timeout="30s"), tmp_path)
        _push(sink, budget=0.5)
        start = time.monotonic()
        with pytest.raises(DeliveryError, match="did not answer within"):
            _push(sink, budget=1.0)
        took = time.monotonic() - start
    assert peer.connections == 1 and len(peer.requests) == 2  # one kept-alive connection
    assert took <= 1.0 + 5  # generous ceiling: unwatched, it would wait the peer's 10 s


def test_a_forked_child_does_not_use_its_parents_connections(tmp_path: Path) -> None:
    """A child forked after a push (a job forking workers) opens its own connection, and
    the parent's kept-alive one goes on working."""
    import os

    with Peer(lambda _r: OK) as peer:
        sink = _sink(_config(peer.url, tmp_path), tmp_path)
        _push(sink)
        pid = os.fork()
        if pid == 0:  # the child
            code = 1
            try:
                _push(sink)
                code = 0
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        _push(sink)
    assert len(peer.requests) == 3
    assert peer.connections == 2  # the parent's (twice) and the child's own


def test_kept_alive_connections_survive_many_open_descriptors(tmp_path: Path) -> None:
    """With more than 1024 descriptors open in the process (select() cannot watch those),
    a kept-alive connection is still checked and reused, not dropped each time."""
    import os
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < 1200:
        pytest.skip(f"the descriptor limit is {hard}")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, 1200), hard))
    held: list[int] = []
    try:
        while len(held) < 1100:
            held.append(os.open(os.devnull, os.O_RDONLY))
        with Peer(lambda _r: OK) as peer:
            sink = _sink(_config(peer.url, tmp_path), tmp_path)
            for _ in range(3):
                _push(sink)
        assert len(peer.requests) == 3
        assert peer.connections == 1
    finally:
        for fd in held:
            os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
