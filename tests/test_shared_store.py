"""One PostgreSQL store shared by many hosts and pods (a real cluster, real Pushgateway,
concurrent ``jobreport run`` processes from simulated hosts: ``unshare --uts`` with a host
name each, a new HOME each): no run is lost or counted twice, the gateway ends with what
the store counted, and ``--lock`` holds across hosts (a PostgreSQL advisory lock held by
the wrapper's own connection)."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import psutil
import pytest

from jobreport.state import group_key
from jobreport.store.store import Store
from tests.conftest import Gateway
from tests.faults import assert_no_traceback
from tests.pods import Pods

WAIT = 120.0  # a generous ceiling on this busy 2-core machine


def wait_for(path: Path, timeout: float = WAIT) -> None:
    """Until ``path`` exists (polled, bounded)."""
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.05)


def start_held(pods: Pods, job: str, flags: Path, host: str) -> subprocess.Popen[str]:
    """A ``--lock`` run of ``job`` on ``host`` whose command touches ``flags/started``, then
    lasts until ``flags/go`` exists (at most 2 minutes)."""
    return pods.start(["run", "--job", job, "--lock", "--", "sh", "-c",
                       f'touch {flags}/started; i=0; while [ ! -e {flags}/go ] && '
                       f'[ $i -lt 2400 ]; do sleep 0.05; i=$((i+1)); done'], host=host)


def gateway_samples(gateway: Gateway, job: str) -> dict[str, float]:
    return {k.replace('{instance=""}', "").replace('instance="",', ""): v
            for k, v in gateway.samples(job).items()}


def test_pods_of_several_hosts_writing_one_store_at_once_lose_no_run(
        postgres_url: str, gateway: Gateway, tmp_path: Path) -> None:
    """Twelve runs of one job from four hosts (three pods each, all started at once, one
    group: no instance in a pod) into one PostgreSQL store: the store holds every run and
    counts each once; the gateway ends with the store's counters, failure streak and newest
    state, and nothing stays pending."""
    pods = Pods(tmp_path / "pods", JOBREPORT_GATEWAY=gateway.url, JOBREPORT_DB=postgres_url,
                JOBREPORT_BUDGET="60s")
    codes = [0, 1, 0, 2, 0, 0, 3, 0, 1, 0, 0, 4]
    started = [pods.start(["run", "--job", "fleet", "--", "sh", "-c", f"exit {code}"],
                          host=f"host{i % 4}-pod{i}") for i, code in enumerate(codes)]
    for proc, code in zip(started, codes, strict=True):
        out, err = proc.communicate(timeout=WAIT)
        assert proc.returncode == code, err
        assert_no_traceback(out, err)
        assert err == "", err
    store = Store(postgres_url)
    runs = store.history("fleet", limit=None)
    assert len(runs) == 12
    assert {r.host for r in runs} == {f"host{i % 4}-pod{i}" for i in range(12)}
    state, _ = store.group_state(group_key({"job": "fleet"}))
    assert state.runs_total == {"success": 7, "failure": 5}
    held = gateway_samples(gateway, "fleet")
    assert held['jobreport_runs_total{outcome="success"}'] == 7
    assert held['jobreport_runs_total{outcome="failure"}'] == 5
    assert held["jobreport_consecutive_failures"] == state.consecutive_failures
    assert held["jobreport_last_success_timestamp_seconds"] == state.last_success
    assert store.pending() == []


def test_lock_holds_across_hosts(postgres_url: str, gateway: Gateway, tmp_path: Path) -> None:
    """A run with --lock on one host (pod) holds the job's lock in the shared store: a run
    of the same job on another host, with its own HOME (so its own local lock file), does
    not start (exit 75, outcome skipped); once the first is over, the next one runs."""
    pods = Pods(tmp_path / "pods", JOBREPORT_GATEWAY=gateway.url, JOBREPORT_DB=postgres_url)
    flags = tmp_path / "flags"
    flags.mkdir()
    first = start_held(pods, "locked", flags, host="host-a")
    try:
        wait_for(flags / "started")
        second = pods.run(["run", "--job", "locked", "--lock", "--", "touch",
                           str(flags / "second-ran")], host="host-b")
        assert second.returncode == 75, second.stderr
        assert "already running on a host that shares the store" in second.stderr
        assert not (flags / "second-ran").exists()
    finally:
        (flags / "go").touch()
        out, err = first.communicate(timeout=WAIT)
    assert first.returncode == 0, err
    third = pods.run(["run", "--job", "locked", "--lock", "--", "true"], host="host-c")
    assert third.returncode == 0, third.stderr
    outcomes = sorted(r.outcome or "" for r in Store(postgres_url).history("locked"))
    assert outcomes == ["skipped", "success", "success"]
    held = gateway_samples(gateway, "locked")
    assert held['jobreport_runs_total{outcome="skipped"}'] == 1
    assert held['jobreport_runs_total{outcome="success"}'] == 2


def test_concurrent_pods_never_both_run_under_lock(
        postgres_url: str, gateway: Gateway, tmp_path: Path) -> None:
    """Eight pods of one job on eight hosts start at once with --lock: the commands never
    overlap (each one makes a directory that only one can hold at a time), every pod that
    did not run exits 75 and records a skipped run, and the gateway and the store agree."""
    pods = Pods(tmp_path / "pods", JOBREPORT_GATEWAY=gateway.url, JOBREPORT_DB=postgres_url,
                JOBREPORT_BUDGET="60s")
    shared = tmp_path / "shared"
    shared.mkdir()
    command = (f'mkdir {shared}/inside || touch {shared}/overlap; touch {shared}/ran-$$; '
               f'sleep 0.5; rmdir {shared}/inside')
    started = [pods.start(["run", "--job", "exclusive", "--lock", "--", "sh", "-c", command],
                          host=f"node{i}") for i in range(8)]
    codes = []
    for proc in started:
        out, err = proc.communicate(timeout=WAIT)
        assert_no_traceback(out, err)
        codes.append(proc.returncode)
    assert not (shared / "overlap").exists()
    ran = len(list(shared.glob("ran-*")))
    assert ran >= 1
    assert sorted(codes) == [0] * ran + [75] * (8 - ran)
    store = Store(postgres_url)
    outcomes = [r.outcome for r in store.history("exclusive", limit=None)]
    assert sorted(outcomes) == sorted(["success"] * ran + ["skipped"] * (8 - ran))
    held = gateway_samples(gateway, "exclusive")
    assert held['jobreport_runs_total{outcome="success"}'] == ran
    assert held.get('jobreport_runs_total{outcome="skipped"}', 0) == 8 - ran
    assert store.pending() == []


def test_a_killed_wrapper_releases_the_lock_of_the_store(
        postgres_url: str, gateway: Gateway, tmp_path: Path) -> None:
    """The store's lock is held by the wrapper's own connection, which the command does not
    inherit: when the wrapper is killed (SIGKILL, as the OOM killer does), PostgreSQL
    releases the lock with the connection, and a run on another host starts although the
    first command still runs (on its own host the local flock, which the command inherits,
    still holds; docs/containers.md says so)."""
    pods = Pods(tmp_path / "pods", JOBREPORT_GATEWAY=gateway.url, JOBREPORT_DB=postgres_url)
    flags = tmp_path / "flags"
    flags.mkdir()
    first = start_held(pods, "orphan", flags, host="host-a")
    try:
        wait_for(flags / "started")
        wrapper = psutil.Process(first.pid)  # (unshare and sh exec it: the same process)
        assert "jobreport" in " ".join(wrapper.cmdline()[:2])
        command = [c for c in wrapper.children() if c.name() == "sh"]
        assert command, "the command is not running"
        os.kill(wrapper.pid, signal.SIGKILL)
        first.wait(WAIT)
        assert command[0].is_running()
        deadline = time.monotonic() + WAIT
        while True:  # PostgreSQL ends the killed wrapper's session: the lock goes with it
            second = pods.run(["run", "--job", "orphan", "--lock", "--", "true"],
                              host="host-b")
            if second.returncode != 75 or time.monotonic() > deadline:
                break
        assert second.returncode == 0, second.stderr
    finally:
        (flags / "go").touch()


@pytest.mark.integration
def test_without_postgresql_lock_holds_on_the_host(tmp_path: Path) -> None:
    """With an SQLite store, --lock is the local flock alone (nothing else is loaded before
    the command starts), as before."""
    pods = Pods(tmp_path / "pods", kubernetes=False)
    done = pods.run(["run", "--job", "solo", "--lock", "--", "true"])
    assert done.returncode == 0, done.stderr
    assert "lock" not in done.stderr


def test_only_postgresql_stores_hold_a_lock_for_a_fleet() -> None:
    """A store that is neither SQLite nor PostgreSQL (MySQL...) has no fleet lock: --lock is
    the local flock there."""
    from jobreport.store.locks import supported

    assert supported("postgresql+psycopg://jr@127.0.0.1:5/x")
    assert supported("postgresql://jr@h/x")
    assert not supported("mysql+pymysql://u@127.0.0.1:1/x")
    assert not supported("sqlite:////tmp/x.db")


def test_one_delivery_of_a_group_at_a_time_from_a_shared_store(postgres_url: str) -> None:
    """A PostgreSQL store lets one process deliver a group to a sink at a time (so that
    the push that lands last carries the newest state): a second store connection waits
    for the lock until its deadline and is told it did not get it; another sink, or
    another group, is not held up; once released, the next one gets it."""
    one, two = Store(postgres_url), Store(postgres_url)
    key = group_key({"job": "delivered"})
    with one.delivering(key, "pushgateway", time.monotonic() + 5) as held:
        assert held
        began = time.monotonic()
        with two.delivering(key, "pushgateway", time.monotonic() + 0.5) as second:
            assert not second
        assert time.monotonic() - began >= 0.4
        with two.delivering(key, "remote-write", time.monotonic() + 5) as other_sink:
            assert other_sink
        with two.delivering(group_key({"job": "other"}), "pushgateway",
                            time.monotonic() + 5) as other_group:
            assert other_group
    with two.delivering(key, "pushgateway", time.monotonic() + 5) as after:
        assert after


def test_a_pod_that_vanished_mid_run_is_abandoned_by_the_next_locked_run(
        postgres_url: str, gateway: Gateway, tmp_path: Path) -> None:
    """A pod killed outright in the middle of a run (its node lost: the wrapper and the
    command gone at once) leaves its run open in the shared store, on a host that never
    comes back. The next run of the job under --lock holds the group's lock for every
    host, so no other run of the group can be going: it records the vanished pod's run as
    abandoned, and the gateway no longer says the job is running."""
    pods = Pods(tmp_path / "pods", JOBREPORT_GATEWAY=gateway.url, JOBREPORT_DB=postgres_url)
    flags = tmp_path / "flags"
    flags.mkdir()
    first = pods.start(["run", "--job", "vanish", "--lock", "--", "sh", "-c",
                        f'touch {flags}/started; i=0; while [ $i -lt 2400 ]; do sleep 0.05; '
                        'i=$((i+1)); done'], host="node-lost")
    wait_for(flags / "started")
    key = group_key({"job": "vanish"})
    deadline = time.monotonic() + WAIT
    while Store(postgres_url).group_state(key)[0].running != 1:  # the run is opened
        assert time.monotonic() < deadline, "the run was never opened in the store"
        time.sleep(0.05)
    wrapper = psutil.Process(first.pid)
    for process in [*wrapper.children(recursive=True), wrapper]:
        process.kill()
    first.wait(WAIT)
    second = pods.run(["run", "--job", "vanish", "--lock", "--", "true"], host="node-new")
    assert second.returncode == 0, second.stderr
    assert "on node-lost) was left open by a process that is gone" in second.stderr
    outcomes = sorted(r.outcome or "" for r in Store(postgres_url).history("vanish"))
    assert outcomes == ["abandoned", "success"]
    held = gateway_samples(gateway, "vanish")
    assert held["jobreport_running"] == 0
    assert held['jobreport_runs_total{outcome="abandoned"}'] == 1


def test_many_hosts_make_a_new_shared_store_at_once(postgres_url: str, tmp_path: Path) -> None:
    """Eight processes open one new PostgreSQL store (no tables yet) at the same moment: each
    finds it made and records its run; none falls back to pushing without history."""
    import subprocess
    import sys

    from sqlalchemy import create_engine, text

    url = postgres_url.rsplit("/", 1)[0] + "/newstore"
    admin = create_engine(postgres_url.rsplit("/", 1)[0] + "/postgres",
                          isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text("CREATE DATABASE newstore"))
    admin.dispose()
    code = ("import sys, time\n"
            "from jobreport.result import RunResult\n"
            "from jobreport.store.store import RunStart, Store\n"
            "s = Store(sys.argv[1]); now = time.time()\n"
            "s.record_run(RunStart('made', {'job': 'made'}, now, sys.argv[2]),\n"
            "             RunResult(ended=now, duration=0.0, outcome='success', exit_code=0))\n")
    procs = [subprocess.Popen([sys.executable, "-c", code, url, f"h{i}"], text=True,
                              stderr=subprocess.PIPE) for i in range(8)]
    for proc in procs:
        _, err = proc.communicate(timeout=WAIT)
        assert proc.returncode == 0, err
    state, _ = Store(url).group_state(group_key({"job": "made"}))
    assert state.runs_total == {"success": 8}


def test_locked_pods_against_a_slow_gateway_are_all_delivered(
        postgres_url: str, gateway: Gateway, tmp_path: Path) -> None:
    """Five pods of one job start at once with --lock on a shared store, against a gateway
    whose every answer takes 2 s, with the default budget (10 s): one runs, four record a
    skipped run, and every one of them is delivered (one delivery of the group at a time:
    a pod that waited finds its run carried by the delivery before it)."""
    from tests.faults import FaultProxy

    with FaultProxy(gateway.url, delay=2.0) as slow:
        pods = Pods(tmp_path / "pods", JOBREPORT_GATEWAY=slow.url, JOBREPORT_DB=postgres_url)
        started = [pods.start(["run", "--job", "slowlock", "--lock", "--", "sh", "-c",
                               "sleep 1"], host=f"node{i}") for i in range(5)]
        codes = []
        for proc in started:
            out, err = proc.communicate(timeout=WAIT)
            assert_no_traceback(out, err)
            assert "kept in the store" not in err, err
            codes.append(proc.returncode)
    ran = codes.count(0)
    assert ran >= 1 and sorted(codes) == [0] * ran + [75] * (5 - ran)
    store = Store(postgres_url)
    assert store.pending() == []
    held = gateway_samples(gateway, "slowlock")
    assert held['jobreport_runs_total{outcome="success"}'] == ran
    assert held.get('jobreport_runs_total{outcome="skipped"}', 0) == 5 - ran
