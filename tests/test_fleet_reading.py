"""`status`, `status --check`, `prune` and a new store's read back read a fleet's gateway
(thousands of groups) through one reading of its /metrics as it streams in: what they read
is what the gateway's own JSON API says it holds (jobreport's groups, other pushers', odd
values, labels the text format escapes, groups without an instance), and what is kept grows
with the groups, never with the answer."""

from __future__ import annotations

import http.client
import json
import math
import threading
import time
import tracemalloc
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from jobreport import load_config
from jobreport.commands.prune import stale_groups
from jobreport.commands.status import READ
from jobreport.exposition import text
from jobreport.result import RunResult
from jobreport.sinks.pushgateway import TEXT_FORMAT, PushgatewaySink, group_path
from jobreport.sinks.pushgateway_api import read_groups
from jobreport.spec import JobSpec
from jobreport.held import HeldGroup
from jobreport.state import GroupState
from tests import servers
from tests.faults import assert_no_traceback, cli_env, run_cli

pytestmark = pytest.mark.integration

#: jobreport's groups in the fleet's gateway (each one of these kinds, in turn).
N_GROUPS = 2000
KINDS = ("fine", "fine", "fine", "failed", "overdue", "running")
#: Groups of other pushers.
N_OTHERS = 120
ODD_VALUES = ('a/b', 'quote"d', "back\\slash", "new\nline", "ünï", ".", "..", "%41",
              "sp ace", "{x}", "a,b")
DAY = 86400.0
#: The jobreport group (of kind "fine") whose next push the gateway refuses.
REFUSED = (("instance", "host0001"), ("job", "job00"))


@dataclass
class Fleet:
    """A real Pushgateway holding a fleet, and what was pushed to it."""

    url: str
    #: Every jobreport grouping, keyed as read back, with the kind of state it holds.
    ours: dict[tuple[tuple[str, str], ...], str] = field(default_factory=dict)
    #: Other pushers' groups that have a problem status shows: job -> what it is.
    troubled_others: dict[str, str] = field(default_factory=dict)
    others: int = 0


def _key(grouping: dict[str, str]) -> tuple[tuple[str, str], ...]:
    return tuple(sorted(grouping.items()))


def _state(grouping: dict[str, str], kind: str, now: float) -> bytes:
    """What a jobreport run of ``kind`` leaves for ``grouping``."""
    job = grouping["job"]
    success = RunResult(ended=now - 60, duration=5.0, outcome="success", exit_code=0)
    if kind == "failed":
        state = GroupState(job=job, grouping=grouping, last_start=now - 65,
                           last_success=now - DAY / 2, last_failure=now - 60,
                           runs_total={"success": 5, "failure": 2}, consecutive_failures=2,
                           last=RunResult(ended=now - 60, duration=5.0, outcome="failure",
                                          exit_code=1))
        spec = JobSpec(job, expect_every=DAY)
    elif kind == "overdue":
        state = GroupState(job=job, grouping=grouping, last_start=now - 3 * 3600 - 5,
                           last_success=now - 3 * 3600, runs_total={"success": 3},
                           consecutive_failures=0,
                           last=RunResult(ended=now - 3 * 3600, duration=5.0,
                                          outcome="success", exit_code=0))
        spec = JobSpec(job, expect_every=3600.0)
    elif kind == "running":
        state = GroupState(job=job, grouping=grouping, running=1, last_start=now - 10,
                           last_success=now - 1000, runs_total={"success": 9},
                           consecutive_failures=0, last=success)
        spec = JobSpec(job, expect_every=DAY, max_runtime=3600.0)
    else:
        state = GroupState(job=job, grouping=grouping, last_start=now - 65,
                           last_success=now - 60, runs_total={"success": 40, "failure": 1},
                           consecutive_failures=0, last=success)
        spec = JobSpec(job, expect_every=DAY)
    state = state.held_to(spec)
    return text(state, "jobreport")


def _family_head(body: bytes, name: str) -> str:
    """The HELP and TYPE lines jobreport writes for ``name`` (another pusher's sample of a
    jobreport family must agree with them, or the gateway's /metrics breaks)."""
    return "".join(line + "\n" for line in body.decode().splitlines()
                   if line.startswith((f"# HELP {name} ", f"# TYPE {name} ")))


def _send(url: str, requests: list[tuple[str, str, bytes]], threads: int = 6) -> list[int]:
    """Each (method, path, body) on a few kept-alive connections; their statuses."""
    host, port = url.removeprefix("http://").split(":")
    todo = list(enumerate(requests))
    statuses = [0] * len(requests)
    lock = threading.Lock()

    def work() -> None:
        conn = http.client.HTTPConnection(host, int(port), timeout=60)
        while True:
            with lock:
                if not todo:
                    break
                i, (method, path, body) = todo.pop()
            conn.request(method, path, body, {"Content-Type": TEXT_FORMAT})
            answer = conn.getresponse()
            answer.read()
            statuses[i] = answer.status
        conn.close()

    workers = [threading.Thread(target=work) for _ in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(300)
    return statuses


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    """A real Pushgateway (its consistency check off, so that filling it takes seconds)
    holding N_GROUPS of jobreport's groups, with labels the text format escapes, groups
    without an instance, one whose pushes fail, and N_OTHERS groups of other pushers:
    two with a problem status shows (a failed push, a NaN in a jobreport family) and one
    whose jobreport sample carries a label of its own (not the group's own sample)."""
    server = servers.pushgateway(tmp_path_factory.mktemp("fleet"),
                                 extra=["--push.disable-consistency-check"]).start()
    try:
        found = Fleet(server.url)
        now = time.time()
        pushes: list[tuple[str, str, bytes]] = []
        for i in range(N_GROUPS):
            grouping = {"job": f"job{i % 50:02d}", "instance": f"host{i // 50:04d}"}
            if i % 10 == 1:
                grouping["db"] = "main"
            if i % 100 == 7:
                del grouping["instance"]
                grouping["job"] = f"solo{i}"
            if i < len(ODD_VALUES):
                grouping = {"job": f"odd{i}", "instance": ODD_VALUES[i], "x": ODD_VALUES[-1 - i]}
            if i == len(ODD_VALUES):
                grouping = {"job": "empty_label", "instance": "h", "x": ""}
            kind = KINDS[i % len(KINDS)]
            found.ours[_key(grouping)] = kind
            pushes.append(("PUT", group_path(grouping["job"], grouping),
                           _state(grouping, kind, now)))
        body = pushes[0][2]
        for j in range(N_OTHERS):
            pushes.append(("PUT", f"/metrics/job/other{j}/instance/x",
                           b'# TYPE other_metric gauge\nother_metric{kind="a"} 1\n'))
        running = _family_head(body, "jobreport_running")
        pushes.append(("PUT", "/metrics/job/nan_other/instance/x",
                       f"{running}jobreport_running NaN\n".encode()))
        pushes.append(("PUT", "/metrics/job/extra_other/instance/x",
                       f'{running}jobreport_running{{extra="1"}} 7\n'.encode()))
        # without the check the gateway takes a push at once (202) and applies it after
        assert set(_send(server.url, pushes)) <= {200, 202}
        found.others = N_OTHERS + 2
        _settled(server.url, lambda api: len(api) == N_GROUPS + found.others)
        # a push the gateway refuses (a sample with a timestamp: never stored, also without
        # the check) records a failed push
        stamp = int(time.time() * 1000) + 5000
        refused = [("POST", "/metrics/job/other0/instance/x", f"other_metric 2 {stamp}\n".encode()),
                   ("POST", group_path("job00", dict(REFUSED)),
                    f"jobreport_running 1 {stamp}\n".encode())]
        assert set(_send(server.url, refused, threads=1)) <= {202, 400}
        _settled(server.url, lambda api: sum(
            1 for g in api if float(g["push_failure_time_seconds"]["metrics"][0]["value"])
            > float(g["push_time_seconds"]["metrics"][0]["value"])) == 2)
        found.troubled_others = {"other0": "pushes failing", "nan_other": "odd value"}
        yield found
    finally:
        server.stop()


def _settled(url: str, done: Callable[[list[dict[str, Any]]], bool]) -> None:
    """Wait (at most a minute) until what the gateway's API lists is ``done``."""
    limit = time.monotonic() + 60
    while not done(_api(url)):
        assert time.monotonic() < limit, "the gateway did not apply the pushes"
        time.sleep(0.2)


def _api(url: str) -> list[dict[str, Any]]:
    with urllib.request.urlopen(url + "/api/v1/metrics", timeout=60) as r:  # noqa: S310
        data: list[dict[str, Any]] = json.load(r)["data"]
    return data


def _own(group: dict[str, Any], name: str) -> list[tuple[dict[str, str], float]]:
    """The samples of family ``name`` that are the group's own: their labels, less the
    labels of their own (outcome, version), are the group's (instance="" when it has none)."""
    labels = {"instance": "", **group["labels"]}
    out = []
    for metric in group.get(name, {}).get("metrics", []):
        mine = {k: v for k, v in metric["labels"].items() if k not in ("outcome", "version")}
        if mine == labels and "value" in metric:
            out.append((metric["labels"], float(metric["value"])))
    return out


def _same(a: float | None, b: float | None) -> bool:
    return a == b or (a is not None and b is not None and math.isnan(a) and math.isnan(b))


def test_the_reading_of_the_text_is_what_the_json_api_says(fleet: Fleet) -> None:
    """Every group the gateway's JSON API lists is read from /metrics with its grouping
    (escaped values exact, no instance as none), whether jobreport pushed it, each gauge of
    jobreport's, the counters, the last outcome and the gateway's push times; a jobreport
    sample with a label of its own beside the grouping is not the group's."""
    config = load_config(env={}, gateway=fleet.url)
    read = {tuple(sorted(g.grouping.items())): g
            for g in PushgatewaySink(config).groups(deadline=time.monotonic() + 120)}
    api = _api(fleet.url)
    assert len(read) == len(api) == N_GROUPS + fleet.others
    for group in api:
        held = read[tuple(sorted(group["labels"].items()))]
        assert held.jobreport == bool(_own(group, "jobreport_info")), group["labels"]
        assert _same(held.push_time, _own(group, "push_time_seconds")[0][1])
        assert _same(held.push_failure_time, _own(group, "push_failure_time_seconds")[0][1])
        gauges = {name.removeprefix("jobreport_"): found[0][1]
                  for name in group if name.startswith("jobreport_")
                  and name not in ("jobreport_runs_total", "jobreport_last_outcome",
                                   "jobreport_info")
                  and (found := _own(group, name))}
        assert gauges.keys() == held.gauges.keys(), group["labels"]
        assert all(_same(held.gauges[k], v) for k, v in gauges.items()), group["labels"]
        runs = {labels["outcome"]: v for labels, v in _own(group, "jobreport_runs_total")}
        assert dict(held.runs_total) == runs
        outcome = [labels["outcome"] for labels, v in _own(group, "jobreport_last_outcome")
                   if v == 1]
        assert held.last_outcome == (outcome[-1] if outcome else None)
    assert {k for k, g in read.items() if g.jobreport} == set(fleet.ours)
    extra = read[(("instance", "x"), ("job", "extra_other"))]
    assert not extra.jobreport and "running" not in extra.gauges


def test_status_shows_jobreport_groups_and_the_troubled_others(fleet: Fleet,
                                                                tmp_path: Path) -> None:
    """`status --json` lists every jobreport group, each judged (failed, overdue, running
    and fine as pushed; the group whose push was refused: pushes failing), and of the other
    pushers only those with a problem; the table counts the others it leaves out; `--check`
    is CRITICAL (overdue groups) with the same groups in its perfdata."""
    env = cli_env(JOBREPORT_GATEWAY=fleet.url, JOBREPORT_DB=str(tmp_path / "s.db"),
                  JOBREPORT_BUDGET="120s", JOBREPORT_TIMEOUT="60s")
    done = run_cli(["status", "--json"], env, timeout=300)
    assert done.returncode == 0, done.stderr
    rows = json.loads(done.stdout)
    ours = {_key({"job": r["job"], **r["labels"]}): r for r in rows if r["jobreport"]}
    assert set(ours) == set(fleet.ours)
    others = {r["job"]: r for r in rows if not r["jobreport"]}
    assert set(others) == set(fleet.troubled_others)
    assert "pushes failing" in others["other0"]["problems"]
    assert any("jobreport_running is NaN" in p for p in others["nan_other"]["problems"])
    for key, kind in fleet.ours.items():
        problems = ours[key]["problems"]
        if key == _key(dict(REFUSED)):
            assert "pushes failing" in problems
            continue
        expected = {"fine": [], "running": [], "failed": ["last run: failure (2 in a row)"],
                    "overdue": ["overdue"]}[kind]
        assert problems == expected, (key, problems)
        assert ours[key]["running"] == (1 if kind == "running" else 0)
    table = run_cli(["status"], env, timeout=300)
    assert_no_traceback(table.stderr)
    shown = fleet.others - len(fleet.troubled_others)
    assert f"{shown} group(s) of other pushers not shown" in table.stdout
    check = run_cli(["status", "--check"], env, timeout=300)
    assert check.returncode == 2, check.stdout[:2000]
    overdue = sum(1 for kind in fleet.ours.values() if kind == "overdue")
    assert check.stdout.startswith(f"JOBREPORT CRITICAL - {overdue} overdue, "), check.stdout[:300]
    assert f"groups={len(rows)};;;0" in check.stdout.splitlines()[0]


def test_prune_lists_only_jobreport_groups(fleet: Fleet, tmp_path: Path) -> None:
    """Once every group is older than the limit, prune lists each of jobreport's groups
    (as the library and as `prune --dry-run --json`), none of the other pushers'."""
    config = load_config(env={}, gateway=fleet.url, budget="120s")
    newest = max(g.push_time or 0 for g in PushgatewaySink(config).groups(
        deadline=time.monotonic() + 120, keep=()))
    stale = stale_groups(config, 30 * DAY, now=newest + 31 * DAY)
    assert {_key(g.grouping) for g in stale} == set(fleet.ours)
    assert stale_groups(config, 30 * DAY, now=newest + 29 * DAY) == []
    limit = time.monotonic() + 30
    while time.time() < newest + 1.5 and time.monotonic() < limit:  # the limit below: 1s
        time.sleep(0.1)
    env = cli_env(JOBREPORT_GATEWAY=fleet.url, JOBREPORT_DB=str(tmp_path / "s.db"),
                  JOBREPORT_BUDGET="120s", JOBREPORT_TIMEOUT="60s")
    done = run_cli(["prune", "--older-than", "1s", "--dry-run", "--json"], env, timeout=300)
    assert done.returncode == 0, done.stderr
    listed = json.loads(done.stdout)["groups"]
    assert {_key({"job": g["job"], **g["labels"]}) for g in listed} == set(fleet.ours)


def _traced(read: Any) -> tuple[Any, int]:
    tracemalloc.start()
    try:
        found = read()
        return found, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_what_is_kept_grows_with_the_groups_not_with_the_answer(fleet: Fleet) -> None:
    """Reading the fleet's gateway (some 2.3 KB of answer a group) keeps under 2.5 KB a
    group for status (the values it judges) and under 1.5 KB a group for prune (whether
    jobreport pushed it, and its push times): the answer is never held (the JSON API,
    parsed whole, held 37 KB a group)."""
    sink = PushgatewaySink(load_config(env={}, gateway=fleet.url))
    groups = N_GROUPS + fleet.others
    with urllib.request.urlopen(fleet.url + "/metrics", timeout=60) as r:  # noqa: S310
        answer = len(r.read())
    assert answer > 1500 * groups
    found, peak = _traced(lambda: sink.groups(deadline=time.monotonic() + 120, keep=READ))
    assert len(found) == groups
    assert peak < 2500 * groups, peak / groups
    found, peak = _traced(lambda: sink.groups(deadline=time.monotonic() + 120, keep=()))
    assert all(not g.gauges for g in found)
    assert peak < 1500 * groups, peak / groups


def test_a_job_s_own_series_cost_nothing_to_keep() -> None:
    """A fleet whose groups also hold 200 series of the jobs' own families (not jobreport's)
    keeps what one without them keeps: the reading keeps values, never lines."""

    def answer(extra: int) -> Iterator[bytes]:
        for i in range(3000):
            labels = f'instance="h{i}",job="j{i % 40}"'
            lines = [f"jobreport_{n}{{{labels}}} {i}.5\n" for n in sorted(READ)]
            lines += [f'jobreport_info{{{labels},version="1"}} 1\n',
                      f"push_time_seconds{{{labels}}} 1.7e9\n"]
            lines += [f'own_{n}{{{labels},table="t{n}"}} 1\n' for n in range(extra)]
            yield "".join(lines).encode()
        yield b'pushgateway_build_info{version="1.5.1"} 1\n'

    def peak(extra: int) -> int:
        found, traced = _traced(lambda: read_groups(answer(extra), "jobreport", keep=READ))
        assert len(found) == 3000 and all(isinstance(g, HeldGroup) for g in found)
        return int(traced)

    plain, busy = peak(0), peak(200)
    assert busy < plain * 1.1 + 200_000, (plain, busy)
