"""`jobreport prune`: lists, retires and deletes the jobreport groups whose last push is older
than a limit, against a real Pushgateway; other pushers' groups are never touched."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from jobreport.config import load_config
from jobreport.commands.prune import stale_groups
from tests.conftest import Gateway

JOBREPORT = [sys.executable, "-m", "jobreport"]


def jobreport(*argv: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*JOBREPORT, *argv], env=env, capture_output=True, text=True,
                          timeout=120, check=False)


def foreign_push(gateway: Gateway, job: str) -> None:
    """A group another pusher made (no jobreport_info)."""
    body = b"# TYPE other_metric gauge\nother_metric 1\n"
    request = urllib.request.Request(f"{gateway.url}/metrics/job/{job}/instance/old",  # noqa: S310
                                     data=body, method="PUT")
    with urllib.request.urlopen(request, timeout=5):  # noqa: S310
        pass


def push_time(gateway: Gateway, job: str, instance: str) -> float:
    [group] = [g for g in gateway.groups()
               if g["labels"].get("job") == job and g["labels"].get("instance") == instance]
    return float(group["push_time_seconds"]["metrics"][0]["value"])


def jobs_held(gateway: Gateway) -> set[tuple[str, str]]:
    return {(g["labels"]["job"], g["labels"].get("instance", "")) for g in gateway.groups()}


@pytest.fixture
def env(gateway: Gateway, tmp_path: Path) -> dict[str, str]:
    return {**os.environ, "JOBREPORT_GATEWAY": gateway.url,
            "JOBREPORT_DB": f"sqlite:///{tmp_path / 'store.db'}"}


def test_stale_groups_are_only_old_jobreport_groups(gateway: Gateway,
                                                    env: dict[str, str]) -> None:
    """Of a jobreport group and a foreign group pushed at the same time, only the jobreport
    group is stale once it is older than the limit; nothing is stale before."""
    assert jobreport("run", "--job", "gone", "--instance", "old-host", "--", "true",
                     env=env).returncode == 0
    foreign_push(gateway, "other")
    pushed = push_time(gateway, "gone", "old-host")
    config = load_config(env={"JOBREPORT_GATEWAY": gateway.url})
    day = 86400.0
    assert stale_groups(config, 30 * day, now=pushed + 29 * day) == []
    [stale] = stale_groups(config, 30 * day, now=pushed + 31 * day)
    assert stale.grouping == {"job": "gone", "instance": "old-host"}
    assert stale.last_push == pushed
    assert stale.age == pytest.approx(31 * day)


def test_prune_lists_then_retires_and_deletes(gateway: Gateway, env: dict[str, str]) -> None:
    """--dry-run lists the old group and deletes nothing; prune deletes it from the gateway
    and retires it in the store (flush does not bring it back), and leaves a fresh
    jobreport group and an old foreign group alone."""
    began = time.monotonic()
    assert jobreport("run", "--job", "gone", "--instance", "old-host", "--", "true",
                     env=env).returncode == 0
    slow = time.monotonic() - began  # what a jobreport process takes on this machine now
    foreign_push(gateway, "other")
    old = push_time(gateway, "gone", "old-host")
    # The fresh group is pushed `gap` seconds after the old one, and each prune draws its
    # line half-way between their ages: a prune that takes up to gap/2 to read its clock
    # still sees the old group as old and the fresh one as fresh. The gap grows with how
    # slow the machine is right now (4 s when quiet); the wait is on the clock, bounded.
    gap = 4.0 + 2 * slow
    limit = time.monotonic() + gap + 60
    while time.time() <= old + gap and time.monotonic() < limit:
        time.sleep(0.1)
    assert jobreport("run", "--job", "fresh", "--instance", "new-host", "--", "true",
                     env=env).returncode == 0
    fresh = push_time(gateway, "fresh", "new-host")

    def half_way() -> str:
        return f"{time.time() - (old + fresh) / 2:.2f}s"

    dry = jobreport("prune", "--older-than", half_way(), "--dry-run", env=env)
    assert dry.returncode == 0, dry.stderr
    assert "would delete group job=gone instance=old-host" in dry.stdout
    assert "fresh" not in dry.stdout and "other" not in dry.stdout
    assert ("gone", "old-host") in jobs_held(gateway)

    done = jobreport("prune", "--older-than", half_way(), env=env)
    assert done.returncode == 0, done.stderr
    assert "deleted 1 group(s)" in done.stdout
    left = {("fresh", "new-host"), ("other", "old")}
    gateway.groups_once(lambda _groups: jobs_held(gateway) == left)  # DELETE applied (202)
    assert jobs_held(gateway) == left

    flush = jobreport("flush", "--all", env=env)
    assert flush.returncode in (0, 1), flush.stderr
    assert ("gone", "old-host") not in jobs_held(gateway)

    again = jobreport("prune", "--older-than", "3s", "--json", "--dry-run", env=env)
    assert again.returncode == 0, again.stderr
    report = json.loads(again.stdout)
    assert report["dry_run"] is True
    assert all(g["job"] != "gone" for g in report["groups"])


def test_prune_needs_a_positive_age(env: dict[str, str]) -> None:
    """A zero or malformed --older-than is a usage error (exit 2) that removes nothing."""
    for value in ("0", "soon"):
        result = jobreport("prune", "--older-than", value, env=env)
        assert result.returncode == 2, result.stderr
        assert "--older-than" in result.stderr
