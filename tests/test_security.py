"""Security: basic auth and TLS against a real Pushgateway (``--web.config.file`` with a
bcrypt hash and a CA made here with openssl); secrets never in argv, logs, error messages,
``jobreport check`` output or the store; an owner-only store; no shell; bounded tails.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import ssl
import stat
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from jobreport import DeliveryError, job_metrics, load_config
from jobreport.sinks.pushgateway import PushgatewaySink
from jobreport.state import GroupState
from jobreport.store.store import Store
from tests import servers
from tests.faults import SilentServer, assert_no_traceback, cli_env, run_cli

pytestmark = pytest.mark.integration  # runs `jobreport` as a process against a TLS gateway

USER = "alice"
PASSWORD = "S3cr3t-Pa55word-7f1e"  # noqa: S105 - a test secret to hunt for
TOKEN = "tok-9c2d5b8e1a7f-SECRET"  # noqa: S105
OPENSSL = shutil.which("openssl") or "/usr/bin/openssl"
SH = shutil.which("sh") or "/bin/sh"


def bcrypt_hash(password: str) -> str:
    """A bcrypt hash (cost 4, to keep the gateway quick): the bcrypt package when it is
    installed, else the C library's crypt(3) (libxcrypt supports $2b$)."""
    try:
        import bcrypt

        return str(bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=4)).decode())
    except ImportError:
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            import crypt  # Python <= 3.12

        hashed = crypt.crypt(password,
                             crypt.mksalt(crypt.METHOD_BLOWFISH, rounds=16))  # noqa: S324
        assert hashed and hashed.startswith("$2"), "no bcrypt: pip install bcrypt"
        return hashed


def openssl(*args: str, cwd: Path) -> None:
    subprocess.run([OPENSSL, *args], cwd=cwd, check=True, capture_output=True, timeout=60)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A self-signed CA and a server certificate for 127.0.0.1 signed by it."""
    d = tmp_path_factory.mktemp("pki")
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    openssl("req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.crt", "-days", "2",
            "-subj", "/CN=jobreport test CA",
            "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,keyCertSign,cRLSign", cwd=d)
    openssl("req", *ec, "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=127.0.0.1",
            cwd=d)
    (d / "ext.cnf").write_text(
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n"
        "keyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n")
    openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
            "-CAcreateserial", "-out", "server.crt", "-days", "2", "-extfile", "ext.cnf",
            cwd=d)
    # another CA, which did not sign the server's certificate
    openssl("req", "-x509", *ec, "-keyout", "other.key", "-out", "other.crt", "-days", "2",
            "-subj", "/CN=some other CA", cwd=d)
    return d


def tls_gateway(pki: Path, work: Path, *, tls: str = "", rest: str = "") -> Iterator[str]:
    """A real Pushgateway serving TLS with ``pki``'s server certificate; ``tls`` adds lines
    to ``tls_server_config`` and ``rest`` top-level lines of its --web.config.file. Yields
    its https URL, then stops it."""
    config = work / "web.yml"
    config.write_text(textwrap.dedent(f"""\
        tls_server_config:
          cert_file: {pki / 'server.crt'}
          key_file: {pki / 'server.key'}
    """) + textwrap.indent(textwrap.dedent(tls), "  ") + textwrap.dedent(rest))
    server = servers.pushgateway(work, extra=[f"--web.config.file={config}"], scheme="https")
    server.start()
    try:
        yield server.url
    finally:
        server.stop()


@pytest.fixture(scope="module")
def secure_gateway(pki: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One real Pushgateway with TLS and basic auth for the module; yields its https URL."""
    yield from tls_gateway(pki, tmp_path_factory.mktemp("secure-pg"), rest=f"""\
        basic_auth_users:
          {USER}: '{bcrypt_hash(PASSWORD)}'
    """)


def gateway_groups(url: str, pki: Path) -> list[dict[str, object]]:
    r = requests.get(url + "/api/v1/metrics", auth=(USER, PASSWORD),
                     verify=str(pki / "ca.crt"), timeout=10)
    r.raise_for_status()
    return list(r.json()["data"])


def group_value(url: str, pki: Path, job: str, metric: str) -> float | None:
    for group in gateway_groups(url, pki):
        labels = group["labels"]
        assert isinstance(labels, dict)
        if labels.get("job") == job and metric in group:
            family = group[metric]
            assert isinstance(family, dict)
            return float(family["metrics"][0]["value"])
    return None


def secure_env(url: str, pki: Path, tmp_path: Path, **extra: str) -> dict[str, str]:
    settings = {"JOBREPORT_GATEWAY": url, "JOBREPORT_USERNAME": USER,
                "JOBREPORT_PASSWORD": PASSWORD, "JOBREPORT_CA_BUNDLE": str(pki / "ca.crt"),
                "JOBREPORT_DB": f"sqlite:///{tmp_path / 'store.db'}",
                "JOBREPORT_INSTANCE": "h1",
                # budgets for pushes that must land on a busy machine (TLS hand-shakes are
                # slow there); pushes refused for credentials or certificates are not retried
                "JOBREPORT_BUDGET": "60s", "JOBREPORT_TIMEOUT": "10s",
                "JOBREPORT_START_BUDGET": "5s"}
    return cli_env(**{**settings, **extra})


# --- basic auth and TLS -------------------------------------------------------------------


def test_right_credentials_over_tls(secure_gateway: str, pki: Path, tmp_path: Path) -> None:
    """Right user, password and CA: the run is pushed over TLS with no warning."""
    proc = run_cli(["run", "--job", "secure_ok", "--", "true"],
                   secure_env(secure_gateway, pki, tmp_path))
    assert proc.returncode == 0
    assert proc.stderr == ""
    assert group_value(secure_gateway, pki, "secure_ok", "jobreport_last_run_success") == 1


def test_wrong_password_is_a_clear_error_and_the_run_waits(
        secure_gateway: str, pki: Path, tmp_path: Path) -> None:
    """A wrong password: the job's exit code stands, one clear line names the credentials
    (never the password), and a flush with the right password delivers the run."""
    wrong = "Wr0ng-Pa55-3b9a"
    env = secure_env(secure_gateway, pki, tmp_path, JOBREPORT_PASSWORD=wrong)
    proc = run_cli(["run", "--job", "secure_bad", "--", "sh", "-c", "exit 3"], env)
    assert proc.returncode == 3
    assert "401" in proc.stderr and "credentials" in proc.stderr
    assert wrong not in proc.stderr + proc.stdout
    assert_no_traceback(proc.stderr)
    assert group_value(secure_gateway, pki, "secure_bad", "jobreport_last_exit_code") is None
    flushed = run_cli(["flush"], secure_env(secure_gateway, pki, tmp_path))
    assert flushed.returncode == 0, flushed.stderr
    assert group_value(secure_gateway, pki, "secure_bad", "jobreport_last_exit_code") == 3


def test_library_wrong_password_error(secure_gateway: str, pki: Path) -> None:
    """The library's DeliveryError for refused credentials is clear and carries no
    secret."""
    config = load_config(env={"JOBREPORT_PASSWORD": "nope-a1b2c3"}, gateway=secure_gateway,
                         username=USER, ca_bundle=str(pki / "ca.crt"), timeout="10s")
    state = GroupState(job="lib", grouping={"job": "lib"}, running=0)
    from jobreport.exposition import text

    with pytest.raises(DeliveryError) as raised:  # a 401 is not retried: 60 s is a ceiling
        PushgatewaySink(config).push_text("lib", {}, text(state),
                                          deadline=time.monotonic() + 60)
    assert raised.value.status == 401 and not raised.value.retryable
    assert "nope-a1b2c3" not in str(raised.value)
    assert "JOBREPORT_PASSWORD" in str(raised.value)


def test_tls_is_verified_unless_turned_off(
        secure_gateway: str, pki: Path, tmp_path: Path) -> None:
    """Without the CA (or with the wrong one) the push fails with a clear TLS error; only
    JOBREPORT_TLS_VERIFY=false turns verification off."""
    env = secure_env(secure_gateway, pki, tmp_path)
    del env["JOBREPORT_CA_BUNDLE"]
    proc = run_cli(["run", "--job", "tls_default", "--", "true"], env)
    assert proc.returncode == 0
    assert "TLS" in proc.stderr and "certificate" in proc.stderr.lower()
    assert_no_traceback(proc.stderr)
    assert group_value(secure_gateway, pki, "tls_default", "jobreport_running") is None

    env["JOBREPORT_CA_BUNDLE"] = str(pki / "other.crt")
    proc = run_cli(["run", "--job", "tls_other_ca", "--", "true"], env)
    assert proc.returncode == 0 and "TLS" in proc.stderr
    assert group_value(secure_gateway, pki, "tls_other_ca", "jobreport_running") is None

    del env["JOBREPORT_CA_BUNDLE"]
    env["JOBREPORT_TLS_VERIFY"] = "false"
    proc = run_cli(["run", "--job", "tls_off", "--", "true"], env)
    assert proc.returncode == 0
    assert_no_traceback(proc.stderr)
    assert group_value(secure_gateway, pki, "tls_off", "jobreport_last_run_success") == 1


def test_check_reports_auth_without_the_secret(
        secure_gateway: str, pki: Path, tmp_path: Path) -> None:
    """`jobreport check` reaches the gateway with the credentials and never prints them;
    with a wrong password it says so and exits 1."""
    secret_file = tmp_path / "password"
    secret_file.write_text(PASSWORD + "\n")
    env = secure_env(secure_gateway, pki, tmp_path)
    del env["JOBREPORT_PASSWORD"]
    env["JOBREPORT_PASSWORD_FILE"] = str(secret_file)
    ok = run_cli(["check"], env)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert PASSWORD not in ok.stdout + ok.stderr
    secret_file.write_text("not-the-password-5d4c\n")
    bad = run_cli(["check"], env)
    assert bad.returncode == 1
    assert "401" in bad.stdout + bad.stderr or "credentials" in bad.stdout + bad.stderr
    assert "not-the-password-5d4c" not in bad.stdout + bad.stderr
    assert_no_traceback(ok.stderr, bad.stderr)


# --- secrets never leak --------------------------------------------------------------------

_SCAN = textwrap.dedent("""
    import os, sys
    secrets = sys.argv[1:]
    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmdline = f.read().decode(errors="replace")
        except OSError:
            continue
        if any(s in cmdline for s in secrets):
            found.append(pid)
    print("LEAKS:" + ",".join(found))
""")


@pytest.mark.integration
def test_secrets_in_no_process_argv_output_or_file(tmp_path: Path) -> None:
    """With a password, a token and a gateway URL with user:password, against a gateway
    that never answers: no process's argv, nothing jobreport printed (run, flush, history,
    check, status) and no file it wrote holds a secret."""
    state = tmp_path / "state"
    url_secret = "UrlPa55-e6f7"  # noqa: S105
    with SilentServer() as silent:
        gateway = silent.url.replace("http://", f"http://bob:{url_secret}@")
        env = cli_env(JOBREPORT_GATEWAY=gateway, JOBREPORT_PASSWORD=PASSWORD,
                      JOBREPORT_TOKEN=TOKEN, JOBREPORT_USERNAME=USER,
                      JOBREPORT_BUDGET="1s", JOBREPORT_START_BUDGET="0.3s",
                      JOBREPORT_TIMEOUT="1s", XDG_STATE_HOME=str(state))
        secrets = [PASSWORD, TOKEN, url_secret]
        # the scanner gets the secrets reversed, so that its own argv holds none of them
        scan = _SCAN.replace("secrets = sys.argv[1:]",
                             "secrets = [s[::-1] for s in sys.argv[1:]]")
        run = run_cli(["run", "--job", "leaky", "--", sys.executable, "-c", scan,
                       *[s[::-1] for s in secrets]], env)
        assert run.returncode == 0, run.stderr
        assert "LEAKS:\n" in run.stdout, run.stdout  # no process had a secret in its argv
        outputs = {"run": run.stdout + run.stderr}
        for args in (["flush"], ["history", "--json"], ["history", "leaky"], ["check"],
                     ["status"]):
            proc = run_cli(args, env, timeout=60)
            outputs[" ".join(args)] = proc.stdout + proc.stderr
            assert_no_traceback(proc.stderr)
        assert "did not answer" in run.stderr
    for secret in secrets:
        leaks = {cmd: text for cmd, text in outputs.items() if secret in text}
        assert not leaks, f"{secret!r} printed by jobreport {sorted(leaks)}: {leaks}"
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert any(p.name == "jobreport.db" for p in files)
    for path in files:
        data = path.read_bytes()
        for secret in secrets:
            assert secret.encode() not in data, f"{secret!r} in {path}"


def test_store_file_and_directory_are_owner_only(tmp_path: Path) -> None:
    """The default store's directory is 0700 and its files (with WAL and SHM) 0600, even
    under a permissive umask."""
    state = tmp_path / "state"
    env = cli_env(XDG_STATE_HOME=str(state), JOBREPORT_INSTANCE="h1")
    proc = subprocess.run([SH, "-c", 'umask 000 && exec "$@"', "sh",
                           str(Path(sys.executable).parent / "jobreport"), "run", "--job",
                           "perm", "--", "true"], env=env, capture_output=True, text=True,
                          timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr
    directory = state / "jobreport"
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    db_files = [p for p in directory.iterdir() if p.name.startswith("jobreport.db")]
    assert db_files
    for path in db_files:
        assert stat.S_IMODE(path.stat().st_mode) & 0o077 == 0, f"{path}: {oct(path.stat().st_mode)}"


def test_library_store_is_owner_only(tmp_path: Path) -> None:
    """job_metrics with no settings: the default store is private too."""
    old = os.umask(0)
    try:
        with job_metrics("perm_lib"):
            pass
    finally:
        os.umask(old)
    directory = Path(os.environ["XDG_STATE_HOME"]) / "jobreport"
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    for path in directory.iterdir():
        assert stat.S_IMODE(path.stat().st_mode) & 0o077 == 0, path


# --- no shell, bounded tails --------------------------------------------------------------


def test_command_is_never_passed_through_a_shell(tmp_path: Path) -> None:
    """Shell syntax in the command is just text: no expansion, no second command."""
    marker = tmp_path / "pwned"
    env = cli_env(JOBREPORT_DB=f"sqlite:///{tmp_path / 's.db'}", JOBREPORT_INSTANCE="h1")
    echo = run_cli(["run", "--job", "noshell", "--", "echo", "$(id)", "*", f";touch {marker}",
                    "`id`", "$HOME"], env)
    assert echo.returncode == 0
    assert echo.stdout == f"$(id) * ;touch {marker} `id` $HOME\n"
    one = run_cli(["run", "--job", "noshell", "--", f"true; touch {marker}"], env)
    assert one.returncode == 127  # a program of that name does not exist
    assert not marker.exists()
    assert_no_traceback(one.stderr)


def test_output_tail_kept_in_the_store_is_bounded(tmp_path: Path) -> None:
    """10 MB of output in few, very long lines: the tail in the store stays small."""
    db = f"sqlite:///{tmp_path / 's.db'}"
    env = cli_env(JOBREPORT_DB=db, JOBREPORT_INSTANCE="h1")
    flood = "import sys\nfor _ in range(10): sys.stdout.write('x' * 1_000_000 + '\\n')\n" \
            "for i in range(1000): print('line', i)\n"
    proc = run_cli(["run", "--job", "flood", "--", sys.executable, "-c", flood], env)
    assert proc.returncode == 0
    assert len(proc.stdout) > 10_000_000  # the output itself passes through untouched
    [record] = Store(db).history("flood")
    assert record.result is not None and record.result.tail is not None
    assert len(record.result.tail.encode()) <= 64 * 1024
    assert "line 999" in record.result.tail
    shown = run_cli(["history", "--json", "flood"], env)
    assert len(json.loads(shown.stdout)[0]["tail"].encode()) <= 64 * 1024
    assert (tmp_path / "s.db").stat().st_size < 2 * 1024 * 1024


def _handshake(url: str, cafile: Path, name: str) -> str:
    """A TLS handshake with the gateway at ``url``, verifying its certificate with
    ``cafile`` for the host ``name``; the TLS version agreed."""
    port = int(url.rsplit(":", 1)[1])
    context = ssl.create_default_context(cafile=str(cafile))
    with socket.create_connection(("127.0.0.1", port), timeout=30) as raw, \
            context.wrap_socket(raw, server_hostname=name) as tls:
        return str(tls.version())


def test_the_tls_tests_premises_hold(secure_gateway: str, pki: Path) -> None:
    """What the TLS tests rely on, so that their failures (and passes) mean what they say:
    the gateway's certificate verifies against ca.crt for 127.0.0.1 and localhost; not
    against other.crt (the wrong CA of test_tls_is_verified_unless_turned_off), and not for
    another name."""
    for name in ("127.0.0.1", "localhost"):
        assert _handshake(secure_gateway, pki / "ca.crt", name).startswith("TLSv1.")
    with pytest.raises(ssl.SSLCertVerificationError, match="unable to get local issuer"):
        _handshake(secure_gateway, pki / "other.crt", "127.0.0.1")
    with pytest.raises(ssl.SSLCertVerificationError, match="mismatch"):
        _handshake(secure_gateway, pki / "ca.crt", "gateway.example.org")
