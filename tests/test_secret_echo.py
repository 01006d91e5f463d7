"""A peer that echoes the request's credentials in its 400 (issue 24 item 2): a
remote-write receiver or a gateway quoting the Authorization header, a proxy quoting
Proxy-Authorization. Whatever the credential (basic auth from the settings or from the
URL, a bearer token, a proxy's user and password) and however the echo encodes it, no form
of it reaches the run's stderr, ``status``, ``check``, ``history``, ``flush`` or the store.
Each through the real ``jobreport`` command."""

from __future__ import annotations

import base64
import json
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import quote, quote_plus

import pytest

from tests.faults import assert_no_traceback, cli_env, run_cli
from tests.scripted import LoopbackHTTP, QuietHandler, read_body

pytestmark = pytest.mark.integration  # an echoing peer on loopback, jobreport end to end

USER = "ops"
PASSWORD = "Pä:ss@w0rd-42/x"  # noqa: S105 - non-ASCII, ":", "@", "/": a test secret
SHORT = "pw"  # too short to mask alone: its basic-auth pair is masked
TOKEN = "tök-9c2d@5b8e:SECRET"  # noqa: S105

#: How the echo writes each credential header back.
ECHOES: dict[str, Callable[[str], str]] = {
    "as sent": lambda v: v,
    "percent-encoded, lower-case hex": lambda v: quote_plus(v).replace("%2B", "%2b"),
    "json": lambda v: json.dumps({"error": "bad header", "value": v}),
    "base64 of the line": lambda v: base64.b64encode(v.encode("latin-1")).decode(),
}


class Echo:
    """Answers every request 400 with its credential headers in one encoding."""

    def __init__(self, echo: Callable[[str], str]) -> None:
        class Handler(QuietHandler):
            def _handle(self) -> None:
                read_body(self.rfile, self.headers)
                said = [f"{name}: {value}" for name, value in self.headers.items()
                        if name.lower() in ("authorization", "proxy-authorization")]
                payload = ("invalid request; " + echo(" ".join(said) or "no credentials")
                           ).encode()
                self.send_response(400)
                self.send_header("Content-Type", "text/plain; charset=utf-8")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST = do_PUT = do_DELETE = _handle

        self.http = LoopbackHTTP(Handler)
        self.url = self.http.url

    def __enter__(self) -> Echo:
        self.http.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.http.stop()


def forms(secret: str) -> set[str]:
    """Every form the secret could leak in."""
    out = {secret, quote(secret, safe=""), quote_plus(secret), json.dumps(secret)[1:-1]}
    for value in (secret.encode(), secret.encode("latin-1", "ignore")):
        b64 = base64.b64encode(value).decode()
        out |= {b64.rstrip("="), base64.urlsafe_b64encode(value).decode().rstrip("=")}
    return {f for f in out if len(f) >= 4}


@pytest.fixture(params=sorted(ECHOES))
def echo(request: pytest.FixtureRequest) -> Iterator[Echo]:
    with Echo(ECHOES[request.param]) as server:
        yield server


CASES = ["remote write, basic auth", "remote write, credentials in the URL",
         "gateway, bearer token", "gateway, short password", "proxy credentials"]


def _setup(case: str, echo: Echo) -> tuple[dict[str, str], list[str], set[str]]:
    """(the environment, the sink options, the secrets to hunt for) of ``case``."""
    secrets: set[str]
    if case == "remote write, basic auth":
        env = {"JOBREPORT_USERNAME": USER, "JOBREPORT_PASSWORD": PASSWORD}
        return env, ["--remote-write", echo.url + "/api/v1/write"], \
            forms(PASSWORD) | forms(f"{USER}:{PASSWORD}")
    if case == "remote write, credentials in the URL":
        url = echo.url.replace("://", f"://{USER}:{quote(PASSWORD, safe='')}@")
        return {}, ["--remote-write", url + "/api/v1/write"], \
            forms(PASSWORD) | forms(f"{USER}:{PASSWORD}")
    if case == "gateway, bearer token":
        return {"JOBREPORT_TOKEN": TOKEN}, ["--gateway", echo.url], forms(TOKEN)
    if case == "gateway, short password":
        env = {"JOBREPORT_USERNAME": USER, "JOBREPORT_PASSWORD": SHORT}
        secrets = forms(f"{USER}:{SHORT}")
        return env, ["--gateway", echo.url], secrets
    proxy = echo.url.replace("://", f"://proxy-user:{quote(PASSWORD, safe='')}@")
    return ({"HTTP_PROXY": proxy, "http_proxy": proxy, "NO_PROXY": "", "no_proxy": ""},
            ["--gateway", "http://127.0.0.1:9"], forms(PASSWORD)
            | forms(f"proxy-user:{PASSWORD}"))


@pytest.mark.parametrize("case", CASES)
def test_no_echoed_credential_is_shown_or_kept(case: str, echo: Echo,
                                               tmp_path: Path) -> None:
    """The run, status, check, history and flush print no form of the credential, and the
    store keeps none, while each says that the peer rejected the request."""
    settings, sink, secrets = _setup(case, echo)
    env = cli_env(JOBREPORT_DB=str(tmp_path / "store.db"), **settings)
    shown: list[str] = []
    run = run_cli(["run", "--job", "echoed", *sink, "--", "true"], env)
    assert run.returncode == 0, run.stderr
    assert "400" in run.stderr, run.stderr
    for args in (["status"], ["status", "--json"], ["check"], ["history"],
                 ["history", "--json"], ["flush"]):
        done = run_cli([*args, *sink], env) if args[0] != "history" else run_cli(args, env)
        assert_no_traceback(done.stdout, done.stderr)
        shown += [done.stdout, done.stderr]
    text = "\n".join([run.stdout, run.stderr, *shown, _store_text(tmp_path / "store.db")])
    assert "invalid request" in text  # the echo itself was seen, and kept
    leaked = sorted(s for s in secrets if s in text)
    assert not leaked, f"{leaked} in:\n{text}"


def _store_text(path: Path) -> str:
    """Every value the store holds, as text."""
    with sqlite3.connect(path) as db:
        return "\n".join(db.iterdump())
