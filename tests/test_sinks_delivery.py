"""The delivery rules hold for every sink: outcomes of the remote-write and textfile sinks,
the memory of an unreachable receiver, pending on rejection with a mark per sink, one sink
down delaying only that sink, and a retired group's file removed."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from jobreport.commands.delete import delete_group
from jobreport.config import load_config
from jobreport.delivery import deliver_group, flush
from jobreport.result import RunResult
from jobreport.runs import Recorder
from jobreport.sinks._peers import PeerMemory
from jobreport.sinks.base import Delivered, Rejected, RetryLater
from jobreport.sinks.remote_write import RemoteWriteSink
from jobreport.sinks.textfile import TextfileSink
from jobreport.spec import JobSpec
from jobreport.state import GroupState, group_key
from jobreport.store.store import Store
from tests import servers
from tests.faults import SilentServer
from tests.scripted import Answer, ScriptedServer

WRITE = "/api/v1/write"


def soon(seconds: float) -> float:
    """The deadline ``seconds`` from now."""
    return time.monotonic() + seconds


def _state(outcome: str = "success", **more: float) -> GroupState:
    now = time.time()
    return GroupState(
        job="backup", grouping={"job": "backup", "instance": "h"}, last_start=now - 1,
        last_success=now if outcome == "success" else None,
        last=RunResult(ended=now, duration=1.0, outcome=outcome,
                       exit_code=0 if outcome == "success" else 1),
        **more,  # type: ignore[arg-type]
    )


def _config(tmp_path: Path, **env: str):  # type: ignore[no-untyped-def]
    return load_config(env={"JOBREPORT_DB": str(tmp_path / "store.db"),
                            "JOBREPORT_INSTANCE": "h", **env})


@pytest.mark.integration
def test_remote_write_outcomes_follow_the_spec(tmp_path: Path) -> None:
    """2xx delivered, 429/5xx retry later, 400 rejected (kept pending by the caller)."""
    with ScriptedServer(default=503) as peer:
        writer = RemoteWriteSink(_config(tmp_path), peer.url + WRITE, sleep=lambda _s: None,
                              peers=PeerMemory(None))
        peer.add(204)
        assert isinstance(writer.deliver(_state(), complete=True, deadline=soon(1)), Delivered)
        assert isinstance(writer.deliver(_state(), complete=True, deadline=soon(0.5)),
                          RetryLater)
        peer.default = Answer(400, body="bad labels")
        rejected = writer.deliver(_state(), complete=True, deadline=soon(1.0))
    assert isinstance(rejected, Rejected) and rejected.status == 400
    assert "bad labels" in rejected.reason
    assert {(r.method, r.path) for r in peer.requests} == {("POST", WRITE)}
    assert peer.requests[-1].body  # the write request


def test_unreachable_receiver_costs_the_next_delivery_one_short_attempt(
        tmp_path: Path) -> None:
    """After a refused connection the memory makes the next delivery a single attempt."""
    port = servers.free_port()
    url = f"http://127.0.0.1:{port}/api/v1/write"
    peers = PeerMemory(tmp_path)
    waits: list[float] = []
    writer = RemoteWriteSink(_config(tmp_path), url, sleep=waits.append, peers=peers)
    first = writer.deliver(_state(), complete=True, deadline=soon(2.0))
    assert isinstance(first, RetryLater) and first.unreachable
    assert waits  # retried within the budget the first time
    assert peers.unreachable_since(url) is not None
    waits.clear()
    again = RemoteWriteSink(_config(tmp_path), url, sleep=waits.append, peers=PeerMemory(tmp_path))
    assert isinstance(again.deliver(_state(), complete=True, deadline=soon(10.0)), RetryLater)
    assert waits == []  # one attempt, no retry


@pytest.mark.integration
def test_rejected_write_keeps_the_group_pending_for_that_sink_only(tmp_path: Path) -> None:
    """A 400 from the receiver leaves the group pending for remote write with the error
    recorded, while the textfile sink has it delivered."""
    config = _config(tmp_path, JOBREPORT_TEXTFILE_DIR=str(tmp_path))
    store = Store(config.db)
    store.ensure_schema()
    reporter = Recorder(config, store=store, sinks=[])
    run = reporter.start(JobSpec("backup"), wait=0, delay=0)
    reporter.finish(run, RunResult.measured(run.monotonic_start, outcome="success",
                                            exit_code=0))
    key = group_key(config.grouping("backup"))
    textfile = TextfileSink(tmp_path, config.namespace)
    with ScriptedServer(default=Answer(400, body="out of order sample")) as peer:
        writer = RemoteWriteSink(config, peer.url + WRITE, sleep=lambda _s: None,
                              peers=PeerMemory(None))
        assert isinstance(deliver_group(store, writer, key, budget=1.0), Rejected)
    assert len(peer.requests) == 1
    assert isinstance(deliver_group(store, textfile, key, budget=1.0), Delivered)
    [pending] = store.pending("remote-write")
    assert pending.key == key and "out of order sample" in (pending.last_error or "")
    assert store.pending("textfile") == []
    assert textfile.path(config.grouping("backup")).exists()


@pytest.mark.integration
def test_one_sink_down_delays_only_that_sink(tmp_path: Path) -> None:
    """A receiver that never answers costs its own budget, in parallel: the textfile is
    written, the run stays pending for remote write alone, and flush later delivers only
    there."""
    textfiles = tmp_path / "textfile"
    textfiles.mkdir()
    with SilentServer() as silent:
        env = {"JOBREPORT_REMOTE_WRITE_URL": f"{silent.url}/api/v1/write",
               "JOBREPORT_TEXTFILE_DIR": str(textfiles), "JOBREPORT_BUDGET": "1",
               "JOBREPORT_TIMEOUT": "1"}
        config = _config(tmp_path, **env)
        reporter = Recorder(config)
        t0 = time.monotonic()
        run = reporter.start(JobSpec("backup"), wait=0, delay=0)
        delivered = reporter.finish(run, RunResult.measured(
            run.monotonic_start, outcome="success", exit_code=0))
        elapsed = time.monotonic() - t0
    assert not delivered
    assert elapsed < config.budget * 2 + 5  # generous ceiling: bounded, not per sink
    assert len(list(textfiles.glob("*.prom"))) == 1
    store = Store(config.db)
    assert [p.job for p in store.pending("remote-write")] == ["backup"]
    assert store.pending("textfile") == []
    vm = servers.victoria_metrics(tmp_path / "vm").start()
    try:
        config = _config(tmp_path, JOBREPORT_REMOTE_WRITE_URL=f"{vm.url}/api/v1/write",
                         JOBREPORT_TEXTFILE_DIR=str(textfiles))
        result = flush(config)
    finally:
        vm.stop()
    assert result.ok, result.failed
    assert result.by_sink == {"remote-write": (1, 1, 0), "textfile": (0, 0, 0)}


def test_textfile_without_store_keeps_what_the_file_knew(tmp_path: Path) -> None:
    """A delivery of a partial state (no store) must not drop the last success the file
    holds: the families it lacks are kept."""
    writer = TextfileSink(tmp_path)
    assert isinstance(writer.deliver(_state(), complete=True, deadline=soon(1)), Delivered)
    partial = GroupState(job="backup", grouping={"job": "backup", "instance": "h"},
                         last_failure=time.time(),
                         last=RunResult(ended=time.time(), duration=1.0, outcome="failure",
                                        exit_code=1))
    assert isinstance(writer.deliver(partial, complete=False, deadline=soon(1)), Delivered)
    text = writer.path(partial.grouping).read_text()
    assert "jobreport_last_success_timestamp_seconds{" in text
    assert 'jobreport_last_run_success{job="backup"} 0.0' in text


def test_delete_removes_the_textfile_without_a_gateway(tmp_path: Path) -> None:
    """`jobreport delete` retires the group and removes its file; no Pushgateway needed."""
    config = _config(tmp_path, JOBREPORT_TEXTFILE_DIR=str(tmp_path))
    reporter = Recorder(config)
    run = reporter.start(JobSpec("backup"), wait=0, delay=0)
    assert reporter.finish(run, RunResult.measured(run.monotonic_start, outcome="success",
                                                   exit_code=0))
    path = TextfileSink(tmp_path).path(config.grouping("backup"))
    assert path.exists()
    delete_group(config, "backup")
    assert not path.exists()
    assert Store(config.db).pending("textfile") == []


def test_a_textfile_directory_that_is_gone_is_rejected_sink_wide(tmp_path: Path) -> None:
    """A missing directory is a rejection about the sink itself (flush stops there)."""
    result = TextfileSink(tmp_path / "gone").deliver(_state(), complete=True,
                                                      deadline=soon(1))
    assert isinstance(result, Rejected) and result.sink_wide
    assert "JOBREPORT_TEXTFILE_DIR" in result.reason


@pytest.mark.parametrize("setting", ["JOBREPORT_REMOTE_WRITE_URL", "JOBREPORT_TEXTFILE_DIR"])
def test_no_sink_library_loads_before_it_is_configured(setting: str) -> None:
    """protobuf and cramjam load only for a remote-write delivery: configuring another
    sink (or none) never imports them."""
    import subprocess
    import sys

    code = ("import sys; from jobreport.config import load_config; "
            "from jobreport.sinks.configured import configured_sinks; "
            f"configured_sinks(load_config(env={{'{setting}': '/tmp/x' if 'DIR' in "
            f"'{setting}' else 'http://127.0.0.1:9/api/v1/write'}})); "
            "print(sorted(m for m in ('google.protobuf', 'cramjam') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60, check=True).stdout.strip()
    assert out == "[]"


def test_deleting_another_hosts_group_leaves_this_hosts_textfile(tmp_path: Path) -> None:
    """`jobreport delete --instance old-host` of the same job removes nothing here: the
    file name includes the instance in its hash."""
    config = _config(tmp_path, JOBREPORT_TEXTFILE_DIR=str(tmp_path))
    reporter = Recorder(config)
    run = reporter.start(JobSpec("backup"), wait=0, delay=0)
    assert reporter.finish(run, RunResult.measured(run.monotonic_start, outcome="success",
                                                   exit_code=0))
    mine = TextfileSink(tmp_path).path(config.grouping("backup"))
    other = config.with_overrides(instance="old-host")
    TextfileSink(tmp_path).write(GroupState(
        job="backup", grouping=other.grouping("backup"), last_success=time.time()))
    delete_group(other, "backup")
    assert mine.exists()
    assert not TextfileSink(tmp_path).path(other.grouping("backup")).exists()


def test_push_reaches_the_textfile_without_a_gateway(tmp_path: Path) -> None:
    """`jobreport push` values land in the group's textfile (no Pushgateway needed), and
    the group is not left pending for that sink."""
    from jobreport.commands.push import push_values
    from jobreport.result import CustomFamily

    config = _config(tmp_path, JOBREPORT_TEXTFILE_DIR=str(tmp_path))
    push_values(config, "backup", [CustomFamily.gauge("backup_tables", 7.0, "tables")])
    text = TextfileSink(tmp_path).path(config.grouping("backup")).read_text()
    assert 'backup_tables{job="backup"} 7.0' in text
    assert Store(config.db).pending("textfile") == []


def test_each_sink_declares_what_it_can_do(tmp_path: Path) -> None:
    """The commands ask for capabilities, never for a sink by name: each sink states its
    own (what the Pushgateway alone can do stays with it)."""
    from jobreport.sinks.base import (
        HoldsLocally,
        ListsGroups,
        Probes,
        RecordsFailure,
        SaysWhatItHolds,
        Sink,
    )
    from jobreport.sinks.pushgateway import PushgatewaySink

    capabilities = (SaysWhatItHolds, ListsGroups, RecordsFailure, Probes, HoldsLocally)
    config = _config(tmp_path, JOBREPORT_GATEWAY="http://127.0.0.1:9",
                     JOBREPORT_REMOTE_WRITE_URL="http://127.0.0.1:9/api/v1/write",
                     JOBREPORT_TEXTFILE_DIR=str(tmp_path))
    declared = {type(sink).__name__: {c.__name__ for c in capabilities if isinstance(sink, c)}
                for sink in (PushgatewaySink(config), RemoteWriteSink(config),
                             TextfileSink(tmp_path))}
    assert declared == {
        "PushgatewaySink": {"SaysWhatItHolds", "ListsGroups", "RecordsFailure", "Probes"},
        "RemoteWriteSink": {"Probes"},
        "TextfileSink": {"Probes", "HoldsLocally"},
    }
    for cls in (PushgatewaySink, RemoteWriteSink, TextfileSink):  # stated, not just shaped
        assert {c.__name__ for c in capabilities if c in cls.__mro__} == \
            declared[cls.__name__]
    assert all(isinstance(s, Sink) for s in (PushgatewaySink(config), TextfileSink(tmp_path)))


def test_the_sinks_of_a_process_are_kept_per_sink_settings(tmp_path: Path) -> None:
    """A process keeps its sinks per ``Config.sinks``: every field of it is the Config field
    of that name, a change to any of them makes new sinks, and a change elsewhere (labels,
    budgets) keeps them."""
    from jobreport.config import Config, SinkSettings
    from jobreport.runs import SHARED

    config = _config(tmp_path, JOBREPORT_GATEWAY="http://127.0.0.1:9")
    for name, default in SinkSettings._field_defaults.items():
        assert Config._field_defaults[name] == default, name
    sinks = SHARED.sinks_for(config)
    assert SHARED.sinks_for(config.with_overrides(labels={"team": "x"}, budget=99.0)) is sinks
    changes = {"gateway": "http://127.0.0.1:8", "remote_write_url": "http://127.0.0.1:7/w",
               "textfile_dir": str(tmp_path), "namespace": "other", "timeout": 1.0,
               "username": "u", "password": "p", "token": "t", "ca_bundle": "/x",
               "client_cert": "/y", "client_key": "/z", "tls_verify": False,
               "db": f"sqlite:///{tmp_path / 'other.db'}"}
    assert set(changes) == set(SinkSettings._fields)
    for name, value in changes.items():
        assert SHARED.sinks_for(config.with_overrides(**{name: value})) is not sinks, name


_BLOCKER = """
import importlib.abc, sys
class Blocker(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("google", "cramjam"):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None
sys.meta_path.insert(0, Blocker())
sys.argv = ["jobreport", *sys.argv[1:]]
from jobreport.cli import main
main()
"""


def test_remote_write_without_its_extra_is_one_line(tmp_path: Path) -> None:
    """Remote write configured where protobuf and cramjam cannot be imported (a plain
    install, a pinned protobuf): the command's exit code and output are its own, one line
    names the extra, the group stays pending for remote write and the other sink has it."""
    import subprocess
    import sys

    textfiles = tmp_path / "textfile"
    textfiles.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("JOBREPORT_")}
    env.update(JOBREPORT_REMOTE_WRITE_URL="http://127.0.0.1:9/api/v1/write",
               JOBREPORT_TEXTFILE_DIR=str(textfiles), JOBREPORT_INSTANCE="h",
               JOBREPORT_DB=f"sqlite:///{tmp_path / 's.db'}", JOBREPORT_BUDGET="2s",
               PYTHONPATH=str(Path(__file__).resolve().parent.parent))
    proc = subprocess.run([sys.executable, "-c", _BLOCKER, "run", "--job", "plain", "--",
                           "sh", "-c", "echo out; echo err >&2; exit 7"], env=env,
                          capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 7
    assert proc.stdout == "out\n"
    lines = proc.stderr.splitlines()
    assert lines[0] == "err" and len(lines) == 2, proc.stderr
    assert "pip install 'jobreport[remote-write]'" in lines[1], lines[1]
    assert "Traceback" not in proc.stderr
    store = Store(env["JOBREPORT_DB"])
    assert [p.job for p in store.pending("remote-write")] == ["plain"]
    assert store.pending("textfile") == []


def test_a_plain_install_does_not_need_protobuf() -> None:
    """protobuf and cramjam are the remote-write extra (a plain `pip install jobreport`
    installs neither); requests is what the sinks speak HTTP with."""
    import configparser

    setup = configparser.ConfigParser()
    setup.read(Path(__file__).resolve().parent.parent / "setup.cfg")
    required = setup["options"]["install_requires"]
    assert "protobuf" not in required and "cramjam" not in required
    assert "requests" in required
    extra = setup["options.extras_require"]["remote-write"]
    assert "protobuf" in extra and "cramjam" in extra
