"""Shared fixtures: a real Pushgateway per test; every test's own HOME, XDG directories,
TMPDIR and store (tests/isolation.py); the ``unit`` mark and its guard (tests/marks.py); a
throwaway PostgreSQL cluster per test module that asks for one (``postgres_url``)."""

from __future__ import annotations

import glob
import json
import os
import shutil
import subprocess
import tempfile
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


def _pg_bin(name: str) -> str:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    assert found, f"{name} not found: install Debian's postgresql (scripts/bootstrap.sh test)"
    return found[-1]


@pytest.fixture(scope="module")
def postgres_url() -> Iterator[str]:
    """A PostgreSQL cluster of our own on a free loopback port, trust auth, removed after."""
    # not under pytest's tmp dir: that is private to root, and the server runs as postgres
    root = Path(tempfile.mkdtemp(prefix="jobreport-pg-"))
    data = root / "data"
    as_user: list[str] = []
    if os.geteuid() == 0:  # PostgreSQL refuses to run as root
        shutil.chown(root, "postgres")
        as_user = ["runuser", "-u", "postgres", "--"]
    subprocess.run([*as_user, _pg_bin("initdb"), "-D", str(data), "-A", "trust", "-U", "jr",
                    "--no-sync"], check=True, capture_output=True)
    port = servers.free_port()
    log = root / "pg.log"
    subprocess.run(
        [*as_user, _pg_bin("pg_ctl"), "-D", str(data), "-l", str(log), "-w", "-t", "60",
         "-o", f"-h 127.0.0.1 -p {port} -k {root} -F", "start"],
        check=True, capture_output=True,
    )
    try:
        subprocess.run(
            [*as_user, _pg_bin("createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "jr",
             "jobreport"], check=True, capture_output=True,
        )
        yield f"postgresql+psycopg://jr@127.0.0.1:{port}/jobreport"
    finally:
        subprocess.run([*as_user, _pg_bin("pg_ctl"), "-D", str(data), "-m", "fast", "stop"],
                       capture_output=True, check=False)
        shutil.rmtree(root, ignore_errors=True)
