"""Shared fixtures: a real Pushgateway per test; every test's own HOME, XDG directories,
TMPDIR and store (tests/isolation.py); the ``unit`` mark and its guard (tests/marks.py)."""

from __future__ import annotations

import json
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, settings

from tests import marks, servers
from tests.isolation import _session_isolation, isolated_env  # noqa: F401 (fixtures)
from tests.marks import pytest_runtest_protocol  # noqa: F401 (hook)

# Hypothesis times each example (200 ms by default) and checks that generating data is not
# "too slow": both are speed assumptions that a busy machine breaks at random. Properties
# are about values, not speed.
settings.register_profile("jobreport", deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("jobreport")


class Gateway:
    """A running Pushgateway with helpers to read back what it holds."""

    def __init__(self, server: servers.Server) -> None:
        self.server = server

    @property
    def url(self) -> str:
        return self.server.url

    def groups(self) -> list[dict[str, Any]]:
        """The gateway's ``/api/v1/metrics`` data: one entry per group."""
        with urllib.request.urlopen(self.url + "/api/v1/metrics", timeout=5) as r:
            return list(json.load(r)["data"])

    def groups_once(self, done: Callable[[list[dict[str, Any]]], bool],
                    timeout: float = 30.0) -> list[dict[str, Any]]:
        """The groups once ``done(groups)`` holds, or as they are after ``timeout`` seconds
        (for the assertion to show). The Pushgateway applies a DELETE, and an admin wipe,
        after it has answered 202: a read right after one may still show the group, the
        more so on a busy machine. (A push is applied before it is answered.)"""
        deadline = time.monotonic() + timeout
        groups = self.groups()
        while not done(groups) and time.monotonic() < deadline:
            time.sleep(0.05)
            groups = self.groups()
        return groups

    def metrics_text(self) -> str:
        with urllib.request.urlopen(self.url + "/metrics", timeout=5) as r:
            return str(r.read().decode())

    def samples(self, job: str, **labels: str) -> dict[str, float]:
        """Every sample of the one group matching ``job`` and ``labels``, keyed by
        ``name`` or ``name{k="v",...}`` (grouping labels left out)."""
        found = [g for g in self.groups() if _matches(g["labels"], job, labels)]
        assert len(found) == 1, f"expected one group for {job} {labels}, got {len(found)}"
        group = found[0]
        out: dict[str, float] = {}
        for name, family in group.items():
            if name in ("labels", "last_push_successful"):
                continue
            for m in family["metrics"]:
                extra = {
                    k: v for k, v in m.get("labels", {}).items() if k not in group["labels"]
                }
                key = name
                if extra:
                    key += "{" + ",".join(f'{k}="{v}"' for k, v in sorted(extra.items())) + "}"
                out[key] = float(m["value"])
        return out

    def restart(self) -> None:
        self.server.restart()


def _matches(group_labels: dict[str, str], job: str, labels: dict[str, str]) -> bool:
    if group_labels.get("job") != job:
        return False
    return all(group_labels.get(k) == v for k, v in labels.items())


@pytest.fixture
def gateway(tmp_path: Path) -> Iterator[Gateway]:
    """A fresh real Pushgateway on a free loopback port."""
    server = servers.pushgateway(tmp_path / "pushgateway").start()
    try:
        yield Gateway(server)
    finally:
        server.stop()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    marks.mark(items)
