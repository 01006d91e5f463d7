"""What the tests of decorated functions share (test_async, test_generators): a real
Pushgateway and a store of the test's own in the environment, and the runs recorded."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from jobreport.runs.background import ENDS
from jobreport.store.read_rows import RunRecord
from jobreport.store.store import Store
from tests.conftest import Gateway


@pytest.fixture
def env(gateway: Gateway, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Gateway]:
    monkeypatch.setenv("JOBREPORT_GATEWAY", gateway.url)
    monkeypatch.setenv("JOBREPORT_DB", f"sqlite:///{tmp_path / 'store.db'}")
    monkeypatch.setenv("JOBREPORT_INSTANCE", "host1")
    yield gateway
    assert ENDS.drain(), "an end of a run was still being reported"


def runs(tmp_path: Path, job: str) -> list[RunRecord]:
    """The job's runs in the store, oldest first (after every end handed off is done)."""
    assert ENDS.drain()
    return list(reversed(Store(f"sqlite:///{tmp_path / 'store.db'}").history(job, limit=100)))
