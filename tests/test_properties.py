"""Property: any label value (and any job name) survives the round trip through a real
Pushgateway: it arrives exactly, in its own well-formed group, with the run's metrics.

One gateway for the whole module; examples are bounded (max_examples) and each one cleans
up its group, so the test stays within seconds.
"""

from __future__ import annotations

import json
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from jobreport import job_metrics, load_config
from jobreport.config import Config
from jobreport.sinks.pushgateway import PushgatewaySink
from tests import servers
from tests.conftest import Gateway

# Any Unicode text that can be UTF-8 encoded (no lone surrogates), up to the length
# jobreport accepts, biased toward the characters that need escaping.
_SPECIAL = st.sampled_from(["/", "\n", '"', "\\", " ", "=", "@", "%", "+", ",", "{", "}",
                            "\t", "\x00", "🎉", "é", "\u2028", "base64", "@base64"])
values = st.lists(st.one_of(_SPECIAL, st.text(st.characters(blacklist_categories=("Cs",)),
                                              max_size=20)),
                  max_size=8).map("".join).filter(lambda v: len(v) <= 1024)
job_names = values.filter(lambda v: v.strip() != "")


@pytest.fixture(scope="module")
def shared_gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    server = servers.pushgateway(tmp_path_factory.mktemp("prop-pg"),
                                 extra=["--web.enable-admin-api"]).start()
    try:
        yield Gateway(server)
    finally:
        server.stop()


@pytest.fixture(scope="module")
def config(shared_gateway: Gateway, tmp_path_factory: pytest.TempPathFactory) -> Config:
    db = tmp_path_factory.mktemp("prop-store") / "s.db"
    return load_config(env={}, gateway=shared_gateway.url, db=f"sqlite:///{db}",
                       instance="prop", budget="60s", timeout="10s")  # must land, busy or not


def delete_all(gateway: Gateway) -> None:
    req = urllib.request.Request(gateway.url + "/api/v1/admin/wipe",  # noqa: S310
                                 method="PUT")
    with urllib.request.urlopen(req, timeout=5) as r:  # noqa: S310
        assert r.status in (200, 202)


def only_group(gateway: Gateway) -> dict[str, object]:
    groups = gateway.groups()
    assert len(groups) == 1, json.dumps([g["labels"] for g in groups], ensure_ascii=False)
    return groups[0]


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture,
                                 HealthCheck.too_slow])
@given(value=values)
def test_any_label_value_round_trips(shared_gateway: Gateway, config: Config,
                                     value: str) -> None:
    """A label value, whatever its characters, reaches the gateway exactly."""
    delete_all(shared_gateway)
    with job_metrics("prop_labels", labels={"v": value}, config=config) as job:
        job.gauge("prop_gauge", 1.5)
    assert job.outcome == "success"
    group = only_group(shared_gateway)
    labels = group["labels"]
    assert isinstance(labels, dict)
    assert labels.get("v", "") == value  # the gateway drops an empty label
    assert labels["job"] == "prop_labels" and labels["instance"] == "prop"
    assert group["last_push_successful"] is True
    assert "jobreport_last_success_timestamp_seconds" in group
    assert "prop_gauge" in group


@settings(max_examples=30, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture,
                                 HealthCheck.too_slow])
@given(job=job_names)
def test_any_job_name_round_trips_and_can_be_deleted(shared_gateway: Gateway, config: Config,
                                                     job: str) -> None:
    """A job name, whatever its characters, names its group exactly, and the same escaping
    finds the group again for a delete."""
    delete_all(shared_gateway)
    with job_metrics(job, config=config):
        pass
    group = only_group(shared_gateway)
    labels = group["labels"]
    assert isinstance(labels, dict)
    assert labels["job"] == job
    PushgatewaySink(config).delete({"job": job, "instance": "prop"},
                                   deadline=time.monotonic() + 60)
    assert shared_gateway.groups_once(lambda groups: groups == []) == []


def test_the_shared_gateway_starts_empty(tmp_path: Path, shared_gateway: Gateway) -> None:
    """The wipe API the property tests rely on empties the gateway."""
    delete_all(shared_gateway)
    assert shared_gateway.groups_once(lambda groups: groups == []) == []
