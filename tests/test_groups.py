"""No input makes a push land in another group: every job name, instance and label value
that a URL path would rewrite (``.``, ``..``, ``%``, ``/``, empty...) reaches a real
Pushgateway exactly, in its own group, and no other group changes.
"""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from jobreport import job_metrics, load_config
from jobreport.config import Config
from jobreport.sinks.pushgateway import group_path
from tests import servers
from tests.conftest import Gateway

# the pieces that trip URL paths, mixed with any text
_TRICKY = st.sampled_from([".", "..", "/", "%", "%2F", "%2e", "%25", "@base64", "base64",
                           " ", "+", "=", "?", "#", ";", "\\", "é", "🎉", "\n", "job",
                           "instance", "metrics", "=="])
_TEXT = st.lists(st.one_of(_TRICKY, st.text(st.characters(blacklist_categories=("Cs",)),
                                            max_size=6)),
                 max_size=5).map("".join)
_JOB = _TEXT.filter(lambda v: v.strip() != "")


@pytest.fixture(scope="module")
def shared_gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    server = servers.pushgateway(tmp_path_factory.mktemp("groups-pg")).start()
    try:
        yield Gateway(server)
    finally:
        server.stop()


@pytest.fixture(scope="module")
def config(shared_gateway: Gateway, tmp_path_factory: pytest.TempPathFactory) -> Config:
    db = tmp_path_factory.mktemp("groups-store") / "s.db"
    return load_config(env={}, gateway=shared_gateway.url, db=f"sqlite:///{db}",
                       instance="neighbour", budget="60s", timeout="10s")  # must land


def identity(labels: dict[str, str]) -> str:
    """A group's identity: its labels, empty ones left out (as the Pushgateway does)."""
    return json.dumps({k: v for k, v in sorted(labels.items()) if v != ""},
                      ensure_ascii=False)


def snapshot(gateway: Gateway) -> dict[str, dict[str, Any]]:
    """Every group, keyed by identity; the rest of its JSON is what must not change."""
    with urllib.request.urlopen(gateway.url + "/api/v1/metrics", timeout=5) as r:  # noqa: S310
        data = json.load(r)["data"]
    groups = {identity(g["labels"]): g for g in data}
    assert len(groups) == len(data), "two groups with the same labels"
    return groups


@pytest.mark.parametrize(("value", "encoded"), [
    (".", "/v@base64/Lg=="), ("..", "/v@base64/Li4="), ("%2F", "/v@base64/JTJG"),
    ("", "/v@base64/="), ("a/b", "/v@base64/YS9i"), ("plain-1.2_x", "/v/plain-1.2_x"),
])
def test_values_a_path_would_rewrite_go_base64(value: str, encoded: str) -> None:
    """`.`, `..`, `%`, `/` and empty values go @base64; plain ones stay readable."""
    assert group_path("j", {"v": value}).endswith(encoded)


@pytest.mark.parametrize("job", [".", "..", "%2e%2e", "a/../b"])
def test_a_job_named_dot_or_dotdot_gets_its_own_group(job: str, shared_gateway: Gateway,
                                                      config: Config) -> None:
    """A job named `.` or `..` (or what decodes to it) lands in its own group, delivered."""
    before = snapshot(shared_gateway)
    with job_metrics(job, config=config) as run:
        pass
    assert run.outcome == "success"
    after = snapshot(shared_gateway)
    own = identity({"job": job, "instance": "neighbour"})
    assert own in after
    assert {k: v for k, v in after.items() if k != own} == {
        k: v for k, v in before.items() if k != own}
    assert after[own]["last_push_successful"] is True


def test_the_neighbours_stay_untouched(shared_gateway: Gateway, config: Config) -> None:
    """The groups a wrong path would hit (job `x`, the parent of a dotted path) are there
    for the property to protect: pushes to `x/..`-like names never touch them."""
    with job_metrics("x", config=config):
        pass
    with job_metrics("x", labels={"v": "a"}, config=config):
        pass
    before = snapshot(shared_gateway)
    for job, value in (("x/..", "a"), ("x", "a/.."), ("x", "."), ("x", "..")):
        with job_metrics(job, labels={"v": value}, config=config):
            pass
    after = snapshot(shared_gateway)
    for key in (identity({"job": "x", "instance": "neighbour"}),
                identity({"job": "x", "instance": "neighbour", "v": "a"})):
        assert after[key] == before[key]
    assert len(after) == len(before) + 4


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(job=_JOB, instance=_TEXT, value=_TEXT)
def test_each_push_lands_in_exactly_its_own_group(shared_gateway: Gateway, config: Config,
                                                  job: str, instance: str,
                                                  value: str) -> None:
    """Whatever the job name, instance and label value: after the run, the gateway holds the
    group with exactly these labels (delivered), and every other group is as it was."""
    before = snapshot(shared_gateway)
    with job_metrics(job, labels={"v": value},
                     config=config.with_overrides(instance=instance)) as run:
        run.gauge("groups_probe", 1.0)
    assert run.outcome == "success"
    after = snapshot(shared_gateway)
    own = identity({"job": job, "instance": instance, "v": value})
    assert own in after, f"{own} not among {sorted(after)}"
    assert after[own]["last_push_successful"] is True
    assert "groups_probe" in after[own]
    assert {k: v for k, v in after.items() if k != own} == {
        k: v for k, v in before.items() if k != own}
    assert len(after) - len(before) in (0, 1)
