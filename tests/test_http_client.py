"""The sinks' HTTP client (``jobreport.sinks._http``, on ``http.client``) at its edges: kept-
alive connections and a peer that drops them, answers that are not HTTP, chunked or without
end, settings HTTP cannot carry, credentials in URLs, and the proxy the environment names.
A loopback peer that misbehaves on purpose; the real Pushgateway elsewhere."""

from __future__ import annotations

import base64
import contextlib
import socket
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from jobreport.config import Config, load_config
from jobreport.errors import PushError
from jobreport.exposition import registry_for
from jobreport.records import GroupState
from jobreport.sinks import _http, _proxy
from jobreport.sinks._peers import PeerMemory
from jobreport.sinks.pushgateway import Sender
from tests.conftest import Gateway

pytestmark = pytest.mark.integration  # starts servers itself

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


def _sender(config: Config, tmp_path: Path) -> Sender:
    return Sender(config, sleep=lambda _s: None, peers=PeerMemory(tmp_path / "peers"))


def _registry() -> object:
    return registry_for(GroupState(job="b", grouping={"job": "b"}, running=1))


def test_pushes_share_one_kept_alive_connection(tmp_path: Path) -> None:
    with Peer(lambda _r: OK) as peer:
        sender = _sender(_config(peer.url, tmp_path), tmp_path)
        for _ in range(3):
            sender.push("b", {"instance": "h1"}, _registry())  # type: ignore[arg-type]
    assert len(peer.requests) == 3
    assert peer.connections == 1


def test_a_connection_the_peer_closed_while_idle_is_not_reused(tmp_path: Path) -> None:
    """The peer closes after each answer without saying so: the next push sees the idle
    connection is gone and opens a new one, with no failed attempt."""
    with Peer(lambda _r: OK, close_after=True) as peer:
        sender = _sender(_config(peer.url, tmp_path), tmp_path)
        sender.push("b", {"instance": "h1"}, _registry())  # type: ignore[arg-type]
        assert peer.closed.wait(10)
        sender.push("b", {"instance": "h1"}, _registry())  # type: ignore[arg-type]
    assert len(peer.requests) == 2
    assert peer.connections == 2


def test_a_chunked_answer_is_read_whole(tmp_path: Path) -> None:
    body = b'{"status":"success","data":[]}'
    chunked = (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
               + f"{len(body):x}\r\n".encode() + body + b"\r\n0\r\n\r\n")
    with Peer(lambda _r: chunked) as peer:
        response = _sender(_config(peer.url, tmp_path), tmp_path).get("/api/v1/metrics")
    assert response.json() == {"status": "success", "data": []}


@pytest.mark.parametrize("answer", [b"garbage\r\n\r\n", b"HTTP/1.1 abc OK\r\n\r\n",
                                    b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort",
                                    b"HTTP/1.1 200 OK\r\n" + b"X: " + b"y" * 70000 + b"\r\n\r\n"])
def test_an_answer_that_is_not_http_is_one_line_and_retried(answer: bytes,
                                                            tmp_path: Path) -> None:
    with Peer(lambda _r: answer, close_after=True) as peer, pytest.raises(PushError) as raised:
        _sender(_config(peer.url, tmp_path, budget="1s"), tmp_path).push(
            "b", {"instance": "h1"}, _registry())  # type: ignore[arg-type]
    message = str(raised.value)
    assert "\n" not in message and message.startswith("cannot reach the Pushgateway at")
    assert raised.value.retryable
    assert len(peer.requests) >= 2  # retried within the budget


def test_an_answer_without_end_is_cut(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_http, "MAX_ANSWER_BYTES", 1000)
    big = b"HTTP/1.1 200 OK\r\nContent-Length: 5000\r\n\r\n" + b"x" * 5000
    with Peer(lambda _r: big) as peer, pytest.raises(PushError, match="larger than"):
        _sender(_config(peer.url, tmp_path, budget="1s"), tmp_path).get("/x")


def test_a_token_http_cannot_carry_is_refused_without_showing_it(tmp_path: Path) -> None:
    with Peer(lambda _r: OK) as peer:
        config = _config(peer.url, tmp_path)
        config = Config(**{**config.__dict__, "token": "s3cret\r\nX-Evil: 1"})
        with pytest.raises(PushError) as raised:
            _sender(config, tmp_path).push("b", {}, _registry())  # type: ignore[arg-type]
    assert "s3cret" not in str(raised.value) and "Evil" not in str(raised.value)
    assert "a header cannot be sent" in str(raised.value)
    assert not raised.value.retryable
    assert peer.requests == []  # nothing injected reached the peer


def test_credentials_in_the_url_are_basic_auth_decoded(tmp_path: Path) -> None:
    with Peer(lambda _r: OK) as peer:
        url = peer.url.replace("http://", "http://us%40er:p%3Ass%2F@")
        _sender(_config(url, tmp_path), tmp_path).push(
            "b", {}, _registry())  # type: ignore[arg-type]
    head = peer.requests[0].split(b"\r\n\r\n")[0].decode()
    token = base64.b64encode(b"us@er:p:ss/").decode()
    assert f"Authorization: Basic {token}" in head
    assert "us%40er" not in head.split("\r\n")[0]  # not in the request line


@pytest.fixture
def no_proxy_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[pytest.MonkeyPatch]:
    for name in ("http_proxy", "https_proxy", "all_proxy", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)
    yield monkeypatch


@pytest.mark.parametrize(("env", "base", "expected"), [
    ({}, "http://gw:9091", None),
    ({"HTTP_PROXY": "http://p:3128"}, "http://gw:9091", ("p", 3128, "")),
    ({"http_proxy": "p:8080"}, "http://gw:9091", ("p", 8080, "")),
    ({"HTTPS_PROXY": "http://p:3128"}, "http://gw:9091", None),
    ({"HTTPS_PROXY": "http://p:3128"}, "https://gw", ("p", 3128, "")),
    ({"ALL_PROXY": "http://p:3128"}, "https://gw", ("p", 3128, "")),
    ({"HTTP_PROXY": "http://p:3128", "NO_PROXY": "gw"}, "http://gw:9091", None),
    ({"HTTP_PROXY": "http://p:3128", "no_proxy": ".example.org"}, "http://gw.example.org",
     None),
    ({"HTTP_PROXY": "http://p:3128", "NO_PROXY": "*"}, "http://gw", None),
    ({"HTTP_PROXY": "http://u:p%40ss@p:3128"}, "http://gw",
     ("p", 3128, "Basic " + base64.b64encode(b"u:p@ss").decode())),
])
def test_the_proxy_the_environment_names(no_proxy_env: pytest.MonkeyPatch, env: dict[str, str],
                                         base: str, expected: object) -> None:
    for name, value in env.items():
        no_proxy_env.setenv(name, value)
    assert _proxy.proxy_for(base) == expected


def test_a_push_goes_through_the_proxy_to_the_real_gateway(
        no_proxy_env: pytest.MonkeyPatch, gateway: Gateway, tmp_path: Path) -> None:
    """An http:// gateway behind HTTP_PROXY: the request line is the absolute URL, the
    proxy's credentials go as Proxy-Authorization, and the push lands."""
    import http.client
    from urllib.parse import urlsplit

    def forward(head: bytes) -> bytes:
        line = head.split(b"\r\n")[0].decode()
        method, url, _ = line.split(" ")
        parts = urlsplit(url)
        body = peer.requests[-1].split(b"\r\n\r\n", 1)[1]
        conn = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=10)
        with contextlib.closing(conn):
            conn.request(method, parts.path, body=body,
                         headers={"Content-Type": "text/plain; version=0.0.4"})
            answer = conn.getresponse()
            data = answer.read()
        return (f"HTTP/1.1 {answer.status} {answer.reason}\r\n"
                f"Content-Length: {len(data)}\r\n\r\n").encode() + data

    with Peer(forward) as peer:
        no_proxy_env.setenv("HTTP_PROXY", peer.url.replace("http://", "http://pu:pp%21@"))
        _sender(_config(gateway.url, tmp_path), tmp_path).push(
            "proxied", {"instance": "h1"}, _registry())  # type: ignore[arg-type]
    line = peer.requests[0].split(b"\r\n")[0].decode()
    assert line.startswith(f"PUT {gateway.url}/metrics/job/proxied/instance/h1 ") or \
        line.startswith(f"POST {gateway.url}/metrics/job/proxied/instance/h1 ")
    auth = base64.b64encode(b"pu:pp!").decode()
    assert f"Proxy-Authorization: Basic {auth}".encode() in peer.requests[0]
    assert gateway.samples("proxied", instance="h1")["jobreport_running"] == 1


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
    import time

    from tests.faults import SilentServer

    with SilentServer() as silent:
        url = silent.url.replace("http://", "https://")
        sender = _sender(_config(url, tmp_path, budget="1s", timeout="30s"), tmp_path)
        start = time.monotonic()
        with pytest.raises(PushError) as raised:
            sender.push("b", {}, _registry())  # type: ignore[arg-type]
    assert time.monotonic() - start <= 1 + 10
    assert "did not answer within" in str(raised.value), str(raised.value)
    assert raised.value.retryable


def test_failed_handshakes_leave_no_descriptor_open(tmp_path: Path) -> None:
    """A peer that is not TLS, twenty times over: every socket of every failed handshake is
    closed (the TLS socket owns the descriptor once wrapped)."""
    import os

    with Peer(lambda _r: b"not TLS at all\r\n\r\n", close_after=True) as peer:
        url = peer.url.replace("http://", "https://")
        sender = _sender(_config(url, tmp_path, budget="0.5s"), tmp_path)
        before = len(os.listdir("/proc/self/fd"))
        for _ in range(20):
            with pytest.raises(PushError, match="TLS error|cannot reach|did not answer"):
                sender.push("b", {}, _registry())  # type: ignore[arg-type]
        assert len(os.listdir("/proc/self/fd")) <= before + 2
