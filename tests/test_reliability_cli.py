"""Faults around ``jobreport run`` as cron runs it (a subprocess, no terminal): the exit
code is the child's, every run is in the store and, once the gateway is back, in it.

The wrapper killed with SIGKILL mid-run (the next run closes it as ``abandoned``), a child
killed by a signal, a child that ignores SIGTERM until ``--kill-after``, gateway faults,
and 20 runs at once into one store.
"""

from __future__ import annotations

import contextlib
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from jobreport.store.store import Store
from tests import servers
from tests.conftest import Gateway
from tests.faults import (
    JOBREPORT,
    FaultProxy,
    SilentServer,
    assert_no_traceback,
    cli_env,
    run_cli,
)

# Budgets for pushes that must land, on a busy machine; a test of a gateway that never
# answers sets short ones (SHORT), which only decide how long it waits.
LIVE = {"JOBREPORT_BUDGET": "60s", "JOBREPORT_START_BUDGET": "5s", "JOBREPORT_TIMEOUT": "10s"}
SHORT = {"JOBREPORT_BUDGET": "2s", "JOBREPORT_START_BUDGET": "0.5s", "JOBREPORT_TIMEOUT": "1s"}


def env_for(url: str, tmp_path: Path, **extra: str) -> dict[str, str]:
    settings = {"JOBREPORT_GATEWAY": url, "JOBREPORT_DB": f"sqlite:///{tmp_path / 's.db'}",
                "JOBREPORT_INSTANCE": "h1", **LIVE}
    return cli_env(**{**settings, **extra})


def history(env: dict[str, str], job: str) -> list[dict[str, object]]:
    proc = run_cli(["history", "--json", "--limit", "1000", job], env)
    assert proc.returncode == 0, proc.stderr
    return list(json.loads(proc.stdout))


def wait_for(predicate: object, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return
        time.sleep(0.05)
    raise AssertionError(f"not true within {timeout}s: {predicate}")


def test_wrapper_killed_with_sigkill_is_closed_as_abandoned_by_the_next_run(
        gateway: Gateway, tmp_path: Path) -> None:
    """SIGKILL to jobreport mid-run leaves an open run; the next run of the group closes it
    as abandoned and the gateway shows it (running back to 0)."""
    env = env_for(gateway.url, tmp_path)
    db = env["JOBREPORT_DB"]
    wrapper = subprocess.Popen([JOBREPORT, "run", "--job", "victim", "--", "sleep", "60"],
                               env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE)
    try:
        wait_for(lambda: gateway.groups() and gateway.samples(
            "victim", instance="h1").get("jobreport_running") == 1)
        children = psutil.Process(wrapper.pid).children(recursive=True)
        wrapper.send_signal(signal.SIGKILL)
        wrapper.wait(10)
    finally:
        for child in children:  # the orphaned `sleep 60`
            with contextlib.suppress(psutil.Error):
                child.kill()
    assert wrapper.returncode == -signal.SIGKILL
    [open_run] = Store(db).history("victim")
    assert open_run.ended is None

    proc = run_cli(["run", "--job", "victim", "--", "true"], env)
    assert proc.returncode == 0, proc.stderr
    runs = history(env, "victim")
    assert [r["outcome"] for r in runs] == ["success", "abandoned"]
    s = gateway.samples("victim", instance="h1")
    assert s['jobreport_runs_total{outcome="abandoned"}'] == 1
    assert s['jobreport_runs_total{outcome="success"}'] == 1
    assert s["jobreport_running"] == 0
    assert s["jobreport_last_run_success"] == 1


def test_child_killed_by_a_signal(gateway: Gateway, tmp_path: Path) -> None:
    """A child that dies of SIGKILL: exit 137, outcome signal, pushed as such."""
    env = env_for(gateway.url, tmp_path)
    proc = run_cli(["run", "--job", "sig", "--", "sh", "-c", "kill -KILL $$"], env)
    assert proc.returncode == 128 + signal.SIGKILL
    assert_no_traceback(proc.stderr)
    [run] = history(env, "sig")
    assert (run["outcome"], run["exit_code"]) == ("signal", 137)
    s = gateway.samples("sig", instance="h1")
    assert s["jobreport_last_exit_code"] == 137
    assert s['jobreport_last_outcome{outcome="signal"}'] == 1


def test_child_ignoring_sigterm_is_killed_after_kill_after(
        gateway: Gateway, tmp_path: Path) -> None:
    """--timeout sends SIGTERM; a child that ignores it is SIGKILLed after --kill-after,
    with its own child: exit 124, outcome timeout, nothing left running."""
    env = env_for(gateway.url, tmp_path)
    marker = f"jobreport-stubborn-{tmp_path.name}"
    stubborn = ("import signal, subprocess, sys, time\n"
                "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
                "time.sleep(300)\n")
    # the child ignores SIGTERM and starts a grandchild that ignores it too; both carry
    # the marker in their argv so that a survivor would be found
    script = ("import subprocess, sys\n"
              "subprocess.Popen([sys.executable, '-c', sys.argv[1], sys.argv[2]])\n"
              "exec(sys.argv[1])\n")
    # the timeout leaves a busy machine time to start both before the SIGTERM, so that
    # they really ignore it and need the SIGKILL
    proc = run_cli(["run", "--job", "stubborn", "--timeout", "3s", "--kill-after", "1s", "--",
                    sys.executable, "-c", script, stubborn, marker], env, timeout=120)
    assert proc.returncode == 124
    assert_no_traceback(proc.stderr)
    leftover = [p for p in psutil.process_iter(["cmdline"])
                if marker in " ".join(p.info["cmdline"] or [])]
    assert leftover == []
    [run] = history(env, "stubborn")
    assert (run["outcome"], run["exit_code"]) == ("timeout", 124)
    s = gateway.samples("stubborn", instance="h1")
    assert s['jobreport_last_outcome{outcome="timeout"}'] == 1


@pytest.mark.integration
def test_gateway_refusing_then_flush(tmp_path: Path) -> None:
    """Gateway down: the child's code is the exit code, one warning line, the run kept;
    `jobreport flush` delivers it once the gateway is up."""
    server = servers.pushgateway(tmp_path / "pg")
    env = env_for(server.url, tmp_path, **SHORT)  # refused pushes are retried for the budget
    try:
        proc = run_cli(["run", "--job", "down", "--", "sh", "-c", "echo out; exit 5"], env)
        assert proc.returncode == 5
        assert proc.stdout == "out\n"
        assert "connection refused" in proc.stderr and "flush" in proc.stderr
        assert_no_traceback(proc.stderr)
        assert len(proc.stderr.strip().splitlines()) <= 2
        server.start()
        env.update(LIVE)
        flushed = run_cli(["flush"], env)
        assert flushed.returncode == 0, flushed.stderr
        s = Gateway(server).samples("down", instance="h1")
        assert s["jobreport_last_exit_code"] == 5
        assert s['jobreport_runs_total{outcome="failure"}'] == 1
    finally:
        server.stop()


def test_gateway_that_never_answers_with_cli(gateway: Gateway, tmp_path: Path) -> None:
    """A gateway that accepts and never answers: exit code intact, a clear warning, the run
    kept for flush."""
    with SilentServer() as silent:
        env = env_for(silent.url, tmp_path, **SHORT)
        proc = run_cli(["run", "--job", "hang", "--", "sh", "-c", "exit 4"], env)
    assert proc.returncode == 4
    assert "did not answer" in proc.stderr
    assert_no_traceback(proc.stderr)
    env.update(LIVE, JOBREPORT_GATEWAY=gateway.url)
    assert run_cli(["flush"], env).returncode == 0
    assert gateway.samples("hang", instance="h1")["jobreport_last_exit_code"] == 4


def test_400_with_cli_shows_the_gateway_text(gateway: Gateway, tmp_path: Path) -> None:
    """A 400 from the gateway: exit code intact, the gateway's text shown, not retried within
    a push; the group stays pending, so flush tries once more (and says it failed)."""
    with FaultProxy(gateway.url, [400] * 5, body="pushed metrics are invalid: test 400") as p:
        env = env_for(p.url, tmp_path)
        proc = run_cli(["run", "--job", "rejected", "--", "true"], env)
        assert proc.returncode == 0
        assert "test 400" in proc.stderr
        assert_no_traceback(proc.stderr)
        assert len([e for _, _, e in p.requests if e == 400]) <= 2
        before = len([e for _, _, e in p.requests if e == 400])
        flushed = run_cli(["flush"], env)
        assert flushed.returncode == 3 and "test 400" in flushed.stderr
        assert len([e for _, _, e in p.requests if e == 400]) == before + 1  # once, kept


def test_5xx_then_recovery_with_cli(gateway: Gateway, tmp_path: Path) -> None:
    """503, 502, 500, then the gateway: the end push lands within the budget."""
    with FaultProxy(gateway.url) as proxy:
        env = env_for(proxy.url, tmp_path)
        proxy.script = [503, 502, 500]
        proc = run_cli(["run", "--job", "flaky", "--", "sh", "-c", "exit 2"], env)
    assert proc.returncode == 2
    assert [e for _, _, e in proxy.requests if e != "forward"] == [503, 502, 500]
    s = gateway.samples("flaky", instance="h1")
    assert s["jobreport_last_exit_code"] == 2
    assert Store(env["JOBREPORT_DB"]).pending() == []


@pytest.mark.parametrize("jobs", [["same"] * 20, [f"job{i:02d}" for i in range(20)]],
                         ids=["one-job", "different-jobs"])
def test_20_runs_at_once_into_one_store(
        gateway: Gateway, tmp_path: Path, jobs: list[str]) -> None:
    """20 `jobreport run` processes at once on one SQLite store: every exit code right, no
    warning, every run in the store and in the gateway."""
    env = env_for(gateway.url, tmp_path)
    procs = [subprocess.Popen(
        [JOBREPORT, "run", "--job", job, "--", "sh", "-c", f"sleep 0.2; exit {i % 3}"],
        env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True) for i, job in enumerate(jobs)]
    results = [(p.wait(120), *p.communicate()) for p in procs]
    assert [code for code, _, _ in results] == [i % 3 for i in range(len(jobs))]
    assert [err for _, _, err in results if err] == []
    store = Store(env["JOBREPORT_DB"])
    assert len(store.history(limit=None)) == len(jobs)
    assert store.pending() == []
    total = 0.0
    for job in sorted(set(jobs)):
        s = gateway.samples(job, instance="h1")
        assert s["jobreport_running"] == 0
        total += sum(v for k, v in s.items() if k.startswith("jobreport_runs_total{"))
    assert total == len(jobs)
