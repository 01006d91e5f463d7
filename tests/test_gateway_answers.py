"""Odd things a gateway can hold or say: NaN and infinite values in `jobreport status`, an
answer that is not the Pushgateway's, and TLS verification turned off (the HTTP library's
own warnings stay out of the job's stderr)."""

from __future__ import annotations

import json
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, Gauge, push_to_gateway

from jobreport.config import load_config
from jobreport.commands.status import gateway_status
from tests.conftest import Gateway
from tests.faults import JOBREPORT, assert_no_traceback, cli_env, run_cli
from tests.test_security import (  # noqa: F401 (fixtures)
    group_value,
    pki,
    secure_env,
    secure_gateway,
)


def push_odd(url: str, job: str, values: dict[str, float]) -> None:
    registry = CollectorRegistry()
    for name, value in values.items():
        Gauge(name, "pushed by hand", registry=registry).set(value)
    push_to_gateway(url, job=job, registry=registry, grouping_key={"instance": "odd"})


def test_status_shows_nan_and_infinite_values_sanely(gateway: Gateway, tmp_path: Path) -> None:
    """NaN or +Inf in `jobreport_running` (or a timestamp) is no traceback: the group is
    listed with the odd value named as its problem, in the table and in --json."""
    push_odd(gateway.url, "nan_job", {"jobreport_running": float("nan"),
                                      "jobreport_last_success_timestamp_seconds": float("inf")})
    push_odd(gateway.url, "inf_job", {"jobreport_running": float("inf")})
    push_odd(gateway.url, "neg_job", {"jobreport_running": -2.0})
    env = cli_env(JOBREPORT_GATEWAY=gateway.url, JOBREPORT_DB=f"sqlite:///{tmp_path}/s.db")
    table = run_cli(["status"], env)
    assert_no_traceback(table.stdout, table.stderr)
    assert table.returncode in (0, 1), table.stderr
    for job in ("nan_job", "inf_job", "neg_job"):
        assert job in table.stdout
    assert "jobreport_running is NaN" in table.stdout
    assert "jobreport_running is +Inf" in table.stdout
    assert "jobreport_running is -2" in table.stdout
    as_json = run_cli(["status", "--json"], env)
    assert_no_traceback(as_json.stderr)
    rows = {row["job"]: row for row in json.loads(as_json.stdout)}
    assert rows["nan_job"]["running"] == 0 and not rows["nan_job"]["ok"]
    assert rows["nan_job"]["last_success"] is None

    found = gateway_status(load_config(env={}, gateway=gateway.url))
    groups = {g.job: g for g in found.groups}
    assert groups["inf_job"].running == 0
    assert any("odd value" in p for p in groups["inf_job"].problems)


def test_tls_verification_off_keeps_library_warnings_out_of_the_job_stderr(
        secure_gateway: str, pki: Path, tmp_path: Path) -> None:  # noqa: F811
    """With JOBREPORT_TLS_VERIFY=false the job's stderr holds its own output and exactly one
    line of ours, whatever an HTTP library would say about unverified requests (some warn
    once per request): checked after the run made several (its start push, a heartbeat
    the gateway shows, its end push)."""
    env = secure_env(secure_gateway, pki, tmp_path, JOBREPORT_TLS_VERIFY="false")
    del env["JOBREPORT_CA_BUNDLE"]
    release = tmp_path / "release"
    stderr = tmp_path / "stderr"
    command = (f'echo from-the-job >&2; i=0; while [ ! -e "{release}" ] && [ $i -lt 1200 ]; '
               "do sleep 0.05; i=$((i+1)); done")
    with open(stderr, "w") as err:
        proc = subprocess.Popen(
            [JOBREPORT, "run", "--job", "tls_quiet", "--heartbeat", "0.2s", "--", "sh", "-c",
             command], env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=err)
        try:
            beat = "jobreport_last_heartbeat_timestamp_seconds"
            deadline = time.monotonic() + 60
            while group_value(secure_gateway, pki, "tls_quiet", beat) is None:
                assert proc.poll() is None and time.monotonic() < deadline, "no heartbeat"
                time.sleep(0.05)
        finally:
            release.touch()
            code = proc.wait(60)
    assert code == 0
    assert group_value(secure_gateway, pki, "tls_quiet", "jobreport_last_run_success") == 1
    lines = stderr.read_text().splitlines()
    ours = [line for line in lines if "TLS verification is off" in line]
    assert len(ours) == 1, lines
    assert sorted(lines) == sorted(["from-the-job", *ours])


@pytest.mark.integration
def test_a_gateway_answer_of_nonsense_is_not_an_empty_gateway(tmp_path: Path) -> None:
    """``{"status":"success","data":[1,"x",null]}`` from /api/v1/metrics is not "no
    groups": `jobreport status` exits 3 asking whether this is a Pushgateway."""
    from tests.scripted import Answer, ScriptedServer

    nonsense = Answer(200, body='{"status":"success","data":[1,"x",null]}',
                      headers={"Content-Type": "application/json"})
    with ScriptedServer(default=nonsense) as peer:
        env = cli_env(JOBREPORT_GATEWAY=peer.url, JOBREPORT_DB=f"sqlite:///{tmp_path}/s.db")
        proc = run_cli(["status"], env)
    assert proc.returncode == 3, proc.stdout + proc.stderr
    assert "holds no groups" not in proc.stdout
    assert "is this a Pushgateway?" in proc.stderr
    assert_no_traceback(proc.stderr)


@pytest.mark.integration
@pytest.mark.parametrize("body", [
    # another server's own metrics (Prometheus' /metrics): the text format, no groups
    "# HELP go_goroutines Goroutines.\n# TYPE go_goroutines gauge\ngo_goroutines 8\n"
    'prometheus_build_info{version="2.45.3"} 1\n',
    "",
])
def test_another_server_s_metrics_are_not_an_empty_gateway(body: str, tmp_path: Path) -> None:
    """/metrics in the text format without the Pushgateway's own metric (Prometheus' or an
    exporter's, an empty answer) is not "no groups": `status` exits 3, `prune` lists
    nothing and says why, both asking whether this is a Pushgateway."""
    from tests.scripted import Answer, ScriptedServer

    answer = Answer(200, body=body, headers={"Content-Type": "text/plain; version=0.0.4"})
    with ScriptedServer(default=answer) as peer:
        env = cli_env(JOBREPORT_GATEWAY=peer.url, JOBREPORT_DB=f"sqlite:///{tmp_path}/s.db")
        status = run_cli(["status"], env)
        prune = run_cli(["prune", "--older-than", "1d", "--dry-run"], env)
    for done in (status, prune):
        assert done.returncode == 3, done.stdout + done.stderr
        assert "is this a Pushgateway?" in done.stderr
        assert_no_traceback(done.stderr)
    assert "holds no groups" not in status.stdout


@pytest.mark.integration
def test_a_gateway_whose_metrics_are_broken_is_unknown(tmp_path: Path) -> None:
    """A gateway without its consistency check takes two groups whose families clash, and
    then answers every /metrics with 500 (Prometheus cannot scrape it either): `status
    --check` is UNKNOWN with the gateway's own reason, and `delete` still removes the
    group that broke it, after which status reads the gateway again."""
    from tests import servers

    server = servers.pushgateway(tmp_path / "gw",
                                 extra=["--push.disable-consistency-check"]).start()
    try:
        gateway = Gateway(server)
        for job, kind in (("a", "gauge"), ("b", "counter")):
            body = f"# TYPE clash {kind}\nclash 1\n".encode()
            request = urllib.request.Request(f"{server.url}/metrics/job/{job}", data=body,
                                             method="PUT")
            with urllib.request.urlopen(request, timeout=10):  # noqa: S310
                pass
        gateway.groups_once(lambda groups: len(groups) == 2)
        env = cli_env(JOBREPORT_GATEWAY=server.url, JOBREPORT_DB=f"sqlite:///{tmp_path}/s.db",
                      JOBREPORT_BUDGET="2s", JOBREPORT_NO_INSTANCE="1")
        done = run_cli(["status", "--check"], env)
        assert done.returncode == 3, done.stdout
        assert done.stdout.startswith("JOBREPORT UNKNOWN - cannot read the Pushgateway")
        assert "500" in done.stdout and "clash" in done.stdout, done.stdout
        assert run_cli(["delete", "--job", "b"], env).returncode == 0
        gateway.groups_once(lambda groups: len(groups) == 1)
        again = run_cli(["status", "--check"], env)
        assert again.returncode == 0, again.stdout
    finally:
        server.stop()


def test_push_error_is_the_deprecated_name_of_delivery_error() -> None:
    """``jobreport.PushError`` still catches what a sink raises, with a deprecation
    warning pointing at ``DeliveryError``."""
    import warnings

    import jobreport

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        alias = jobreport.PushError
    assert alias is jobreport.DeliveryError
    assert [w.category for w in caught] == [DeprecationWarning]
    assert "DeliveryError" in str(caught[0].message)
