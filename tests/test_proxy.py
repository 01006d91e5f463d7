"""Proxies from the environment, as requests reads them, end to end: `jobreport run` (the
installed command) with ``HTTP_PROXY``/``ALL_PROXY`` in either case, ``NO_PROXY`` with hosts,
suffixes and CIDR ranges, proxy credentials in the proxy's URL, a proxy that refuses
connections, HTTPS through a ``CONNECT`` tunnel (an IPv6 gateway bracketed), an https://
proxy (TLS to the proxy), and the proxies jobreport cannot use (a bad port, SOCKS), against
a real Pushgateway behind a recording loopback proxy (``tests.proxies``)."""

from __future__ import annotations

import base64
import json
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from jobreport.config import load_config
from jobreport.errors import DeliveryError
from jobreport.exposition import text
from jobreport.sinks.pushgateway import PushgatewaySink
from jobreport.state import GroupState
from jobreport.store.store import Store
from tests import servers
from tests.conftest import Gateway
from tests.faults import assert_no_traceback, cli_env, run_cli
from tests.proxies import ForwardProxy
from tests.test_security import (  # noqa: F401 (fixtures)
    PASSWORD,
    USER,
    bcrypt_hash,
    group_value,
    openssl,
    pki,
    secure_env,
    secure_gateway,
)

pytestmark = pytest.mark.integration  # starts recording proxies and servers itself

PROXY_USER, PROXY_PASSWORD = "ops", "Pr0xy-Secret-4b9e"  # a secret to hunt for
# Budgets for pushes that must land on a busy machine; SHORT ones where a push must fail.
LIVE = {"JOBREPORT_BUDGET": "60s", "JOBREPORT_START_BUDGET": "5s", "JOBREPORT_TIMEOUT": "10s"}
SHORT = {"JOBREPORT_BUDGET": "2s", "JOBREPORT_START_BUDGET": "0.5s", "JOBREPORT_TIMEOUT": "1s"}
_PROXY_VARIABLES = ("http_proxy", "https_proxy", "all_proxy", "no_proxy")


def without_proxies(env: dict[str, str]) -> dict[str, str]:
    """``env`` without any proxy setting (the machine's own must not decide a test)."""
    return {k: v for k, v in env.items() if k.lower() not in _PROXY_VARIABLES}


def env_for(gateway: str, tmp_path: Path, **extra: str) -> dict[str, str]:
    settings = {"JOBREPORT_GATEWAY": gateway, "JOBREPORT_DB": f"sqlite:///{tmp_path / 's.db'}",
                "JOBREPORT_INSTANCE": "h1", **LIVE}
    return {**without_proxies(cli_env(**settings)), **extra}


def pending_jobs(env: dict[str, str]) -> list[str]:
    return [p.job for p in Store(env["JOBREPORT_DB"]).pending()]


@pytest.mark.parametrize("variable", ["HTTP_PROXY", "http_proxy"])
def test_the_push_goes_through_the_proxy_of_the_environment(
        gateway: Gateway, tmp_path: Path, variable: str) -> None:
    """With HTTP_PROXY (or http_proxy) set, every request goes to the proxy as an absolute
    URI of the gateway, and the run lands on the gateway."""
    with ForwardProxy() as proxy:
        env = env_for(gateway.url, tmp_path, **{variable: proxy.url})
        proc = run_cli(["run", "--job", "via_proxy", "--", "sh", "-c", "exit 2"], env)
    assert proc.returncode == 2
    assert proc.stderr == ""
    assert proxy.passed, "nothing went through the proxy"
    assert all(p.target.startswith(gateway.url + "/") for p in proxy.passed), proxy.passed
    pushes = [p for p in proxy.passed if p.target.startswith(
        gateway.url + "/metrics/job/via_proxy/instance/h1")]
    assert pushes and all(p.status == 200 for p in pushes)
    assert all(p.headers["User-Agent"].startswith("jobreport/") for p in pushes)
    assert gateway.samples("via_proxy", instance="h1")["jobreport_last_exit_code"] == 2
    assert pending_jobs(env) == []


@pytest.mark.parametrize("variable", ["ALL_PROXY", "all_proxy"])
def test_all_proxy_is_the_proxy_of_every_scheme(gateway: Gateway, tmp_path: Path,
                                                variable: str) -> None:
    """ALL_PROXY (either case) alone names the proxy of an http:// gateway too."""
    with ForwardProxy() as proxy:
        env = env_for(gateway.url, tmp_path, **{variable: proxy.url})
        proc = run_cli(["run", "--job", "via_all", "--", "true"], env)
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr
    assert proxy.passed and all(p.target.startswith(gateway.url + "/") for p in proxy.passed)
    assert gateway.samples("via_all", instance="h1")["jobreport_last_exit_code"] == 0


@pytest.mark.parametrize("variable", ["NO_PROXY", "no_proxy"])
def test_no_proxy_with_the_gateways_host_bypasses_the_proxy(
        gateway: Gateway, tmp_path: Path, variable: str) -> None:
    """The gateway's host (127.0.0.1) in NO_PROXY: the proxy sees nothing, the run lands."""
    with ForwardProxy() as proxy:
        env = env_for(gateway.url, tmp_path, HTTP_PROXY=proxy.url,
                      **{variable: "localhost,127.0.0.1"})
        proc = run_cli(["run", "--job", "direct", "--", "true"], env)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    assert proxy.passed == []
    assert gateway.samples("direct", instance="h1")["jobreport_last_exit_code"] == 0
    assert pending_jobs(env) == []


def test_proxy_credentials_go_as_proxy_authorization_and_never_show(
        gateway: Gateway, tmp_path: Path) -> None:
    """``user:password@`` in the proxy's URL is sent as Proxy-Authorization (the proxy
    refuses requests without it) and appears in no output of jobreport."""
    expected = "Basic " + base64.b64encode(f"{PROXY_USER}:{PROXY_PASSWORD}".encode()).decode()
    with ForwardProxy((PROXY_USER, PROXY_PASSWORD)) as proxy:
        env = env_for(gateway.url, tmp_path,
                      HTTP_PROXY=f"http://{PROXY_USER}:{PROXY_PASSWORD}@127.0.0.1:{proxy.port}")
        proc = run_cli(["run", "--job", "authed", "--", "true"], env)
        status = run_cli(["status"], env)
        history = run_cli(["history", "--json", "authed"], env)
    assert proc.returncode == 0, proc.stderr
    assert proxy.passed
    assert [p.headers["Proxy-Authorization"] for p in proxy.passed] == \
        [expected] * len(proxy.passed)
    assert all(p.status == 200 for p in proxy.passed)
    assert gateway.samples("authed", instance="h1")["jobreport_last_exit_code"] == 0
    for out in (proc, status, history):
        assert PROXY_PASSWORD not in out.stdout + out.stderr
        assert_no_traceback(out.stderr)
    assert [run["outcome"] for run in json.loads(history.stdout)] == ["success"]


def test_wrong_proxy_credentials_are_one_line_and_the_run_is_kept(
        gateway: Gateway, tmp_path: Path) -> None:
    """A proxy that refuses the credentials (407): the job's exit code, one line that does
    not show the password, the run pending for later."""
    with ForwardProxy((PROXY_USER, "the-right-one")) as proxy:
        env = env_for(gateway.url, tmp_path, **SHORT,
                      HTTP_PROXY=f"http://{PROXY_USER}:{PROXY_PASSWORD}@127.0.0.1:{proxy.port}")
        proc = run_cli(["run", "--job", "refused", "--", "sh", "-c", "exit 6"], env)
    assert proc.returncode == 6
    assert proxy.passed and {p.status for p in proxy.passed} == {407}
    assert "407" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert PROXY_PASSWORD not in proc.stderr
    assert_no_traceback(proc.stderr)
    assert pending_jobs(env) == ["refused"]


def test_a_proxy_that_refuses_connections_keeps_the_run_for_later(
        gateway: Gateway, tmp_path: Path) -> None:
    """Nothing listens where the proxy should be: the job's exit code and output are
    intact, one line says the push failed and the run is kept, without the proxy's
    password; `jobreport flush` delivers it once the proxy setting is gone."""
    closed = servers.free_port()  # nothing listens there
    env = env_for(gateway.url, tmp_path, **SHORT,
                  HTTP_PROXY=f"http://{PROXY_USER}:{PROXY_PASSWORD}@127.0.0.1:{closed}")
    proc = run_cli(["run", "--job", "no_proxy_up", "--", "sh", "-c", "echo out; exit 3"], env)
    assert proc.returncode == 3
    assert proc.stdout == "out\n"
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "connection refused" in lines[0] and "flush" in lines[0]
    assert PROXY_PASSWORD not in proc.stderr
    assert_no_traceback(proc.stderr)
    assert pending_jobs(env) == ["no_proxy_up"]
    history = run_cli(["history", "--json", "no_proxy_up"], env)
    assert [(r["outcome"], r["exit_code"]) for r in json.loads(history.stdout)] == \
        [("failure", 3)]

    direct = without_proxies(env)
    flushed = run_cli(["flush"], {**direct, **LIVE})
    assert flushed.returncode == 0, flushed.stderr
    assert gateway.samples("no_proxy_up", instance="h1")["jobreport_last_exit_code"] == 3
    assert pending_jobs(env) == []


def test_https_goes_through_a_connect_tunnel(secure_gateway: str, pki: Path,  # noqa: F811
                                             tmp_path: Path) -> None:
    """HTTPS_PROXY and an https gateway: one CONNECT to the gateway's host:port per
    connection, TLS (checked against the private CA) and basic auth inside the tunnel,
    the run on the gateway."""
    host_port = secure_gateway.split("://", 1)[1].rstrip("/")
    with ForwardProxy() as proxy:
        env = without_proxies(secure_env(secure_gateway, pki, tmp_path))
        env["HTTPS_PROXY"] = proxy.url
        proc = run_cli(["run", "--job", "via_tunnel", "--", "sh", "-c", "exit 4"], env)
    assert proc.returncode == 4
    assert proc.stderr == ""
    assert proxy.passed, "nothing went through the proxy"
    assert {(p.method, p.target, p.status) for p in proxy.passed} == \
        {("CONNECT", host_port, 200)}
    assert group_value(secure_gateway, pki, "via_tunnel", "jobreport_last_exit_code") == 4
    assert [p.job for p in Store(env["JOBREPORT_DB"]).pending()] == []


def test_https_proxy_credentials_go_on_the_connect(secure_gateway: str, pki: Path,  # noqa: F811
                                                   tmp_path: Path) -> None:
    """With HTTPS the proxy sees only the CONNECT: its credentials go there (the
    gateway's own basic auth stays inside the tunnel). Wrong ones: one line naming the
    proxy's settings, the job's exit code, the run kept."""
    expected = "Basic " + base64.b64encode(f"{PROXY_USER}:{PROXY_PASSWORD}".encode()).decode()
    with ForwardProxy((PROXY_USER, PROXY_PASSWORD)) as proxy:
        env = without_proxies(secure_env(secure_gateway, pki, tmp_path))
        env["HTTPS_PROXY"] = f"http://{PROXY_USER}:{PROXY_PASSWORD}@127.0.0.1:{proxy.port}"
        proc = run_cli(["run", "--job", "tunnel_authed", "--", "true"], env)
        assert proc.returncode == 0 and proc.stderr == "", proc.stderr
        assert {(p.method, p.status) for p in proxy.passed} == {("CONNECT", 200)}
        assert {p.headers["Proxy-Authorization"] for p in proxy.passed} == {expected}
        assert group_value(secure_gateway, pki, "tunnel_authed",
                           "jobreport_last_exit_code") == 0
        env["HTTPS_PROXY"] = f"http://{PROXY_USER}:wrong-{PROXY_PASSWORD}@127.0.0.1:{proxy.port}"
        env.update(SHORT)
        refused = run_cli(["run", "--job", "tunnel_refused", "--", "sh", "-c", "exit 5"], env)
    assert refused.returncode == 5
    assert len(refused.stderr.strip().splitlines()) == 1, refused.stderr
    assert "the proxy in front of the Pushgateway at" in refused.stderr
    assert "refused its credentials (407" in refused.stderr
    assert "HTTPS_PROXY" in refused.stderr and PROXY_PASSWORD not in refused.stderr
    assert_no_traceback(refused.stderr)
    assert [p.job for p in Store(env["JOBREPORT_DB"]).pending()] == ["tunnel_refused"]


def test_no_proxy_with_a_cidr_range_bypasses_a_dead_proxy(gateway: Gateway,
                                                          tmp_path: Path) -> None:
    """NO_PROXY=127.0.0.0/8 covers the gateway at 127.0.0.1: the proxy (nothing listens
    there) is never tried, and the run lands at once."""
    dead = servers.free_port()
    env = env_for(gateway.url, tmp_path, HTTP_PROXY=f"http://127.0.0.1:{dead}",
                  NO_PROXY="example.org,127.0.0.0/8")
    proc = run_cli(["run", "--job", "cidr", "--", "true"], env)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    assert gateway.samples("cidr", instance="h1")["jobreport_last_exit_code"] == 0
    assert pending_jobs(env) == []


@pytest.fixture
def named_gateway(monkeypatch: pytest.MonkeyPatch, gateway: Gateway) -> str:
    """The gateway's URL under a name (gw.jobreport.test) this process resolves to
    127.0.0.1; the proxy variables are this test's own."""
    real = socket.getaddrinfo

    def resolve(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        return real("127.0.0.1" if host == "gw.jobreport.test" else host, port, *args,
                    **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", resolve)
    for name in list(os.environ):
        if name.lower() in _PROXY_VARIABLES:
            monkeypatch.delenv(name)
    return gateway.url.replace("127.0.0.1", "gw.jobreport.test")


def _push(url: str, tmp_path: Path, budget: float = 30.0) -> None:
    config = load_config(env={}, gateway=url, db=f"sqlite:///{tmp_path / 's.db'}",
                         instance="h1", timeout="10s")
    PushgatewaySink(config).push_text(
        "suffix", {"instance": "h1"}, text(GroupState(job="suffix", grouping={})),
        deadline=time.monotonic() + budget)


def test_no_proxy_with_a_host_suffix_bypasses_the_proxy(
        named_gateway: str, monkeypatch: pytest.MonkeyPatch, gateway: Gateway,
        tmp_path: Path) -> None:
    """NO_PROXY=.jobreport.test covers gw.jobreport.test: the push goes direct, past a
    proxy that nothing listens at."""
    monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{servers.free_port()}")
    monkeypatch.setenv("NO_PROXY", ".jobreport.test")
    _push(named_gateway, tmp_path)
    assert gateway.samples("suffix", instance="h1")["jobreport_running"] == 0


def test_an_https_proxy_is_spoken_to_over_tls(gateway: Gateway, pki: Path,  # noqa: F811
                                              tmp_path: Path) -> None:
    """HTTP_PROXY=https://...: the connection to the proxy is TLS (checked against
    JOBREPORT_CA_BUNDLE), so the proxy's credentials never travel in clear; the proxy
    (which speaks nothing but TLS) forwards the push, and the run lands."""
    expected = "Basic " + base64.b64encode(f"{PROXY_USER}:{PROXY_PASSWORD}".encode()).decode()
    with ForwardProxy((PROXY_USER, PROXY_PASSWORD),
                      tls=(pki / "server.crt", pki / "server.key")) as proxy:
        assert proxy.url.startswith("https://")
        env = env_for(gateway.url, tmp_path, JOBREPORT_CA_BUNDLE=str(pki / "ca.crt"),
                      HTTP_PROXY=f"https://{PROXY_USER}:{PROXY_PASSWORD}@127.0.0.1:"
                                 f"{proxy.port}")
        proc = run_cli(["run", "--job", "tls_proxy", "--", "sh", "-c", "exit 2"], env)
    assert proc.returncode == 2
    assert proc.stderr == "", proc.stderr
    assert proxy.passed, "nothing reached the proxy over TLS"
    assert {p.headers["Proxy-Authorization"] for p in proxy.passed} == {expected}
    assert all(p.status == 200 for p in proxy.passed)
    assert gateway.samples("tls_proxy", instance="h1")["jobreport_last_exit_code"] == 2
    assert pending_jobs(env) == []


@pytest.fixture(scope="module")
def ipv6_gateway(pki: Path, tmp_path_factory: pytest.TempPathFactory  # noqa: F811
                 ) -> Iterator[str]:
    """A real Pushgateway with TLS (a certificate for ::1 signed by the test CA) and basic
    auth, on [::1] (and 127.0.0.1, for checking); yields ``https://[::1]:PORT``."""
    work = tmp_path_factory.mktemp("pg6")
    (work / "ext.cnf").write_text(
        "subjectAltName=IP:::1,IP:127.0.0.1\nbasicConstraints=CA:FALSE\n"
        "keyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n")
    openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
            "-keyout", "six.key", "-out", "six.csr", "-subj", "/CN=::1", cwd=work)
    openssl("x509", "-req", "-in", "six.csr", "-CA", str(pki / "ca.crt"), "-CAkey",
            str(pki / "ca.key"), "-CAcreateserial", "-out", "six.crt", "-days", "2",
            "-extfile", "ext.cnf", cwd=work)
    web = work / "web.yml"
    web.write_text(f"tls_server_config:\n  cert_file: {work / 'six.crt'}\n"
                   f"  key_file: {work / 'six.key'}\n"
                   f"basic_auth_users:\n  {USER}: '{bcrypt_hash(PASSWORD)}'\n")
    port = servers.free_port()
    server = servers.pushgateway(work, port=port, scheme="https", extra=[
        f"--web.config.file={web}", f"--web.listen-address=[::1]:{port}"]).start()
    try:
        yield f"https://[::1]:{port}"
    finally:
        server.stop()


def test_an_ipv6_gateway_gets_a_bracketed_connect(ipv6_gateway: str, pki: Path,  # noqa: F811
                                                  tmp_path: Path) -> None:
    """An https://[::1]:PORT gateway behind HTTPS_PROXY: the proxy is asked for
    ``CONNECT [::1]:PORT`` (brackets: a bare ::1:PORT names no host), TLS inside the tunnel
    checks the gateway's certificate for ::1, and the run lands."""
    port = ipv6_gateway.rsplit(":", 1)[1]
    with ForwardProxy() as proxy:
        env = without_proxies(secure_env(ipv6_gateway, pki, tmp_path))
        env["HTTPS_PROXY"] = proxy.url
        proc = run_cli(["run", "--job", "six_tunnel", "--", "sh", "-c", "exit 6"], env)
    assert proc.returncode == 6
    assert proc.stderr == "", proc.stderr
    assert {(p.method, p.target, p.status) for p in proxy.passed} == \
        {("CONNECT", f"[::1]:{port}", 200)}
    held = group_value(f"https://127.0.0.1:{port}", pki, "six_tunnel",
                       "jobreport_last_exit_code")
    assert held == 6


@pytest.mark.parametrize(("variable", "proxy", "said"), [
    ("HTTP_PROXY", "http://127.0.0.1:99999", "has no usable port"),
    ("http_proxy", "http://u:Pr0xy-Secret-4b9e@127.0.0.1:port", "has no usable port"),
    ("ALL_PROXY", "socks5://127.0.0.1:1080", "is a SOCKS proxy, which jobreport does not use"),
])
def test_a_proxy_jobreport_cannot_use_is_one_line(gateway: Gateway, tmp_path: Path,
                                                  variable: str, proxy: str,
                                                  said: str) -> None:
    """A proxy URL with a bad port (never taken as port 80) or a SOCKS proxy: the job's
    exit code and output stand, one line names the proxy (its password masked) and the
    variable, and the run waits in the store."""
    env = env_for(gateway.url, tmp_path, **SHORT, **{variable: proxy})
    proc = run_cli(["run", "--job", "unusable", "--", "sh", "-c", "echo out; exit 4"], env)
    assert proc.returncode == 4 and proc.stdout == "out\n"
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert said in lines[0] and f"({variable})" in lines[0], lines[0]
    assert PROXY_PASSWORD not in proc.stderr
    assert_no_traceback(proc.stderr)
    assert pending_jobs(env) == ["unusable"]


def test_a_non_ascii_host_through_a_proxy(monkeypatch: pytest.MonkeyPatch,
                                          tmp_path: Path) -> None:
    """A gateway host with non-ASCII letters, through a proxy: the proxy is asked for its
    IDNA name, the error is the proxy's answer (not a header problem blaming
    JOBREPORT_TOKEN), and twenty such pushes leave no socket open."""
    for name in list(os.environ):
        if name.lower() in _PROXY_VARIABLES:
            monkeypatch.delenv(name)
    with ForwardProxy() as proxy:
        monkeypatch.setenv("HTTP_PROXY", proxy.url)
        config = load_config(env={"JOBREPORT_TOKEN": "tok-1"},
                             gateway="http://gätewäy.invalid:9091",
                             db=f"sqlite:///{tmp_path / 's.db'}", instance="h1",
                             timeout="5s")
        sink = PushgatewaySink(config, sleep=lambda _s: None)
        body = text(GroupState(job="idn", grouping={}))

        def push() -> DeliveryError:
            with pytest.raises(DeliveryError) as raised:
                sink.push_text("idn", {"instance": "h1"}, body,
                               deadline=time.monotonic() + 0.5)
            return raised.value

        first = push()
        before = len(os.listdir("/proc/self/fd"))
        for _ in range(20):
            push()
        after = len(os.listdir("/proc/self/fd"))
    assert "JOBREPORT_TOKEN" not in str(first) and "header" not in str(first)
    assert "502" in str(first), str(first)
    assert proxy.passed and all(p.target.startswith("http://xn--gtewy-")
                                for p in proxy.passed), proxy.passed
    assert after <= before + 2
