"""The bodies of the remote-write and textfile sinks, and the remote-write retry rules.

The remote-write body is decoded with the same generated protobuf module and snappy; the
receivers themselves are exercised in tests/test_sinks_e2e.py. Fault sequences (503, 429,
400) come from a scripted loopback peer (``tests.scripted``), since a real receiver does not
produce them on demand.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import time
from pathlib import Path

import cramjam
import pytest

from jobreport.config import Config
from jobreport.errors import DeliveryError
from jobreport.result import CustomFamily, RunResult
from jobreport.sinks import remote_write
from jobreport.sinks._prompb import prompb_pb2
from jobreport.sinks.textfile import TextfileSink, file_name
from jobreport.spec import JobSpec
from jobreport.state import GroupState
from tests.scripted import Answer, ScriptedServer

WRITE = "/api/v1/write"
NOW = 1_700_000_000.123


def _state(**labels: str) -> GroupState:
    grouping = {"job": "backup", "instance": "host1", **labels}
    return GroupState(
        job="backup", grouping=grouping, last_start=NOW - 10, last_success=NOW,
        last=RunResult(ended=NOW, duration=10.0, outcome="success", exit_code=0,
                       custom=(CustomFamily.gauge("backup_tables", 7.0, "tables"),)),
        runs_total={"success": 3, "failure": 1},
        spec=JobSpec("backup", expect_every=90000.0, grace=0.0),
    )


def _decode(body: bytes) -> list[tuple[dict[str, str], list[tuple[float, int]]]]:
    request = prompb_pb2.WriteRequest()  # type: ignore[attr-defined]
    request.ParseFromString(bytes(cramjam.snappy.decompress_raw(body)))
    return [({lab.name: lab.value for lab in ts.labels},
             [(s.value, s.timestamp) for s in ts.samples]) for ts in request.timeseries]


def test_write_request_carries_the_whole_state_with_group_labels() -> None:
    """Every series has __name__, job, instance and the grouping labels, one sample at the
    delivery time in milliseconds; the counter keeps its _total name."""
    series = _decode(remote_write.encode(_state(team="db"), now=NOW))
    by_name = {(s[0]["__name__"], s[0].get("outcome")): s for s in series}
    labels, samples = by_name[("jobreport_last_success_timestamp_seconds", None)]
    assert labels == {"__name__": "jobreport_last_success_timestamp_seconds", "job": "backup",
                      "instance": "host1", "team": "db"}
    assert samples == [(NOW, 1_700_000_000_123)]
    assert by_name[("jobreport_runs_total", "success")][1][0][0] == 3.0
    assert by_name[("jobreport_runs_total", "failure")][1][0][0] == 1.0
    assert by_name[("jobreport_last_outcome", "success")][1][0][0] == 1.0
    assert by_name[("backup_tables", None)][1][0][0] == 7.0
    assert not any(name.endswith("_created") for name, _ in by_name)


def test_labels_are_sorted_by_name_on_the_wire() -> None:
    """The spec wants each series' labels sorted by name (``__name__`` first)."""
    request = prompb_pb2.WriteRequest()  # type: ignore[attr-defined]
    request.ParseFromString(bytes(cramjam.snappy.decompress_raw(
        remote_write.encode(_state(zone="a", app="b"), now=NOW))))
    assert len(request.timeseries) > 10
    for ts in request.timeseries:
        names = [lab.name for lab in ts.labels]
        assert names == sorted(names)
        assert names[0] == "__name__"


def test_group_label_wins_over_a_sample_label() -> None:
    """A custom sample's own ``job`` label cannot move it into another group."""
    state = _state()
    state = state._replace(
        pushed=(CustomFamily("x", "", "gauge", (("x", (("job", "other"),), 1.0),)),))
    (labels, _), = [s for s in _decode(remote_write.encode(state, now=NOW))
                    if s[0]["__name__"] == "x"]
    assert labels["job"] == "backup"


@pytest.mark.integration
def test_5xx_and_429_are_retried_then_delivered() -> None:
    """503 and 429 are retried within the budget; the headers are the spec's."""
    waits: list[float] = []
    with ScriptedServer([503, 429, 204]) as peer:
        writer = remote_write.RemoteWriteSink(Config(), peer.url + WRITE, sleep=waits.append)
        writer.write(_state(), deadline=time.monotonic() + 10.0)
    assert len(peer.requests) == 3
    assert len(waits) == 2
    last = peer.requests[-1]
    assert (last.method, last.path) == ("POST", WRITE)
    headers = last.headers
    assert headers["Content-Encoding"] == "snappy"
    assert headers["Content-Type"] == "application/x-protobuf"
    assert headers["X-Prometheus-Remote-Write-Version"] == "0.1.0"
    assert headers["User-Agent"].startswith("jobreport/")
    assert any(s[0]["__name__"] == "backup_tables" for s in _decode(last.body))


@pytest.mark.integration
def test_other_4xx_is_not_retried_and_shows_the_receivers_text() -> None:
    """A 400 is permanent: one attempt, not retryable, the receiver's reason in the error."""
    with ScriptedServer(default=Answer(400, body="out of order sample")) as peer:
        writer = remote_write.RemoteWriteSink(Config(), peer.url + WRITE, sleep=lambda _s: None)
        with pytest.raises(DeliveryError) as info:
            writer.write(_state(), deadline=time.monotonic() + 10.0)
    assert len(peer.requests) == 1
    assert not info.value.retryable
    assert info.value.status == 400
    assert "out of order sample" in str(info.value)


@pytest.mark.integration
def test_408_is_not_retried_as_the_spec_says() -> None:
    """The remote-write spec retries 429 and 5xx only: a 408 is one attempt, rejected (the
    Pushgateway sink retries it)."""
    with ScriptedServer(default=408) as peer:
        writer = remote_write.RemoteWriteSink(Config(), peer.url + WRITE, sleep=lambda _s: None)
        with pytest.raises(DeliveryError) as info:
            writer.write(_state(), deadline=time.monotonic() + 10.0)
    assert len(peer.requests) == 1
    assert info.value.status == 408 and not info.value.retryable


@pytest.mark.integration
def test_auth_settings_apply_and_never_show() -> None:
    """The bearer token of the config goes out as Authorization, never into an error."""
    with ScriptedServer(default=401) as peer:
        writer = remote_write.RemoteWriteSink(Config(token="s3cret"), peer.url + WRITE,
                                           sleep=lambda _s: None)
        with pytest.raises(DeliveryError) as info:
            writer.write(_state(), deadline=time.monotonic() + 1.0)
    assert peer.requests[0].headers["Authorization"] == "Bearer s3cret"
    assert "s3cret" not in str(info.value)


def test_textfile_is_valid_has_no_instance_and_mode_0644(tmp_path: Path) -> None:
    """The file passes promtool check metrics, carries job and the grouping labels but no
    instance, is world-readable and leaves no temporary file behind."""
    writer = TextfileSink(tmp_path)
    path = writer.write(_state(team="db"))
    text = path.read_text()
    assert 'jobreport_last_success_timestamp_seconds{job="backup",team="db"}' in text
    assert "instance=" not in text
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert os.listdir(tmp_path) == [path.name]
    promtool = shutil.which("promtool") or "/usr/bin/promtool"
    check = subprocess.run([promtool, "check", "metrics"], input=text.encode(),
                           capture_output=True, timeout=30)
    assert check.returncode == 0, check.stderr


@pytest.mark.parametrize("value", ["../../etc/passwd", "/", "..", "a/b", "x\x00y", "."])
def test_textfile_name_never_leaves_the_directory(tmp_path: Path, value: str) -> None:
    """No label value or job name can name a path outside DIR."""
    name = file_name({"job": value, "instance": "h", "team": value})
    assert "/" not in name and name not in (".", "..") and "\x00" not in name
    assert name.endswith(".prom") and name.startswith("jobreport-")


def test_textfile_names_differ_per_group() -> None:
    """Two groups of one job differ, also by instance only: deleting another host's group
    (`jobreport delete --instance old-host`) never removes this host's file."""
    a = file_name({"job": "j", "instance": "h1", "team": "a"})
    assert a != file_name({"job": "j", "instance": "h1", "team": "b"})
    assert a != file_name({"job": "j", "instance": "h2", "team": "a"})
    assert a == file_name({"team": "a", "instance": "h1", "job": "j"})


def test_textfile_rewrite_replaces_and_remove_deletes(tmp_path: Path) -> None:
    """A new state replaces the file whole; a retired group's file is removed."""
    writer = TextfileSink(tmp_path)
    state = _state()
    path = writer.write(state)
    assert state.last is not None
    state = state._replace(last=state.last._replace(outcome="failure"))
    writer.write(state)
    assert 'jobreport_last_run_success{job="backup"} 0.0' in path.read_text()
    assert writer.files() == [path]
    assert writer.delete(state.grouping)
    assert not path.exists()
    assert not writer.delete(state.grouping)


def test_textfile_missing_directory_is_one_clear_error(tmp_path: Path) -> None:
    """A directory that does not exist is a DeliveryError naming the setting."""
    writer = TextfileSink(tmp_path / "missing")
    with pytest.raises(DeliveryError, match="JOBREPORT_TEXTFILE_DIR"):
        writer.write(_state())
