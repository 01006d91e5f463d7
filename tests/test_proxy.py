"""Proxies from the environment, end to end: `jobreport run` (the installed command) with
``HTTP_PROXY``/``http_proxy``, ``NO_PROXY``, proxy credentials in the proxy's URL, a proxy
that refuses connections, and HTTPS through a ``CONNECT`` tunnel, against a real
Pushgateway behind a recording loopback proxy (``tests.proxies``)."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from jobreport.store.store import Store
from tests import servers
from tests.conftest import Gateway
from tests.faults import assert_no_traceback, cli_env, run_cli
from tests.proxies import ForwardProxy
from tests.test_security import group_value, pki, secure_env, secure_gateway  # noqa: F401

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
