"""job_metrics against a real Pushgateway: the contract of docs/metrics.md, metric by metric."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from jobreport import InvalidNameError, job_metrics, load_config
from jobreport.errors import ConfigError
from tests.conftest import Gateway


@pytest.fixture
def env(gateway: Gateway, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Gateway:
    monkeypatch.setenv("JOBREPORT_GATEWAY", gateway.url)
    monkeypatch.setenv("JOBREPORT_DB", f"sqlite:///{tmp_path / 'store.db'}")
    monkeypatch.setenv("JOBREPORT_INSTANCE", "host1")
    return gateway


def test_success_pushes_every_end_metric(env: Gateway) -> None:
    """A successful block pushes outcome, timestamps, duration, size, items and gauges."""
    before = time.time()
    with job_metrics("backup", expect_every="1h", max_runtime="10m") as job:
        job.set_size(1000)
        job.set_size(2048)
        job.add_items(2)
        job.add_items(3)
        job.gauge("backup_tables", 7, help="Tables in the backup")
    s = env.samples("backup", instance="host1")
    assert s["jobreport_last_run_success"] == 1
    assert s["jobreport_last_exit_code"] == 0
    assert s['jobreport_last_outcome{outcome="success"}'] == 1
    assert sum(v for k, v in s.items() if k.startswith("jobreport_last_outcome{")) == 1
    assert s['jobreport_runs_total{outcome="success"}'] == 1
    assert s['jobreport_runs_total{outcome="failure"}'] == 0
    assert before <= s["jobreport_last_start_timestamp_seconds"] <= s[
        "jobreport_last_end_timestamp_seconds"] <= time.time()
    assert s["jobreport_last_success_timestamp_seconds"] == s[
        "jobreport_last_end_timestamp_seconds"]
    assert 0 <= s["jobreport_last_duration_seconds"] < 60
    assert s["jobreport_last_size_bytes"] == 2048  # set_size replaces
    assert s["jobreport_last_items"] == 5  # add_items accumulates
    assert s["backup_tables"] == 7
    assert s["jobreport_running"] == 0
    assert s["jobreport_expected_interval_seconds"] == 3960  # 1h + 10% grace
    assert s["jobreport_max_runtime_seconds"] == 600
    assert s['jobreport_info{version="0.1.0"}'] == 1
    assert job.outcome == "success" and job.exit_code == 0
    assert "jobreport_last_failure_timestamp_seconds" not in s


def test_failure_keeps_previous_success_and_reraises(env: Gateway) -> None:
    """A failing body re-raises unchanged; the last success timestamp survives it."""
    with job_metrics("backup"):
        pass
    first = env.samples("backup")["jobreport_last_success_timestamp_seconds"]
    err = RuntimeError("disk full")
    with pytest.raises(RuntimeError) as raised, job_metrics("backup") as job:
        raise err
    assert raised.value is err
    s = env.samples("backup")
    assert s["jobreport_last_success_timestamp_seconds"] == first
    assert s["jobreport_last_failure_timestamp_seconds"] >= first
    assert s["jobreport_last_run_success"] == 0
    assert s["jobreport_last_exit_code"] == 1
    assert s['jobreport_last_outcome{outcome="failure"}'] == 1
    assert s['jobreport_last_outcome{outcome="success"}'] == 0
    assert job.outcome == "failure"


def test_counters_count_across_runs(env: Gateway) -> None:
    """runs_total counts every run of the group in the store, by outcome."""
    for _ in range(3):
        with job_metrics("etl"):
            pass
    for _ in range(2):
        with pytest.raises(ValueError), job_metrics("etl"):
            raise ValueError
    s = env.samples("etl")
    assert s['jobreport_runs_total{outcome="success"}'] == 3
    assert s['jobreport_runs_total{outcome="failure"}'] == 2


@pytest.mark.parametrize(
    ("exc", "outcome", "code"),
    [
        (SystemExit(0), "success", 0),
        (SystemExit(None), "success", 0),
        (SystemExit(3), "failure", 3),
        (SystemExit("bye"), "failure", 1),
        (KeyboardInterrupt(), "interrupted", 130),
    ],
)
def test_system_exit_and_interrupt_outcomes(
    env: Gateway, exc: BaseException, outcome: str, code: int
) -> None:
    """SystemExit and KeyboardInterrupt map to the outcomes of docs/metrics.md and re-raise."""
    with pytest.raises(type(exc)), job_metrics("exits") as job:
        raise exc
    s = env.samples("exits")
    assert job.outcome == outcome
    assert s[f'jobreport_last_outcome{{outcome="{outcome}"}}'] == 1
    assert s["jobreport_last_exit_code"] == code


def test_decorator_gives_fresh_state_per_call(env: Gateway) -> None:
    """Each call of a decorated function is its own run; state does not leak between calls."""
    calls = []

    @job_metrics("nightly")
    def nightly(n: int) -> int:
        calls.append(n)
        return n * 2

    assert nightly(2) == 4
    assert nightly(5) == 10
    assert nightly.__name__ == "nightly"
    s = env.samples("nightly")
    assert s['jobreport_runs_total{outcome="success"}'] == 2
    assert calls == [2, 5]


def test_decorator_items_do_not_accumulate_across_calls(env: Gateway) -> None:
    """add_items inside one decorated call does not add to the next call's count."""
    decorator = job_metrics("count")
    handles = []

    def body() -> None:
        with decorator._fresh() as job:
            job.add_items(4)
            handles.append(job)

    body()
    body()
    assert env.samples("count")["jobreport_last_items"] == 4
    assert handles[0] is not handles[1]


def test_label_values_arrive_intact(env: Gateway) -> None:
    """Grouping label values with /, spaces, unicode and empty strings reach the gateway."""
    labels = {"path": "/var/backups/db one", "site": "Zürich ☃", "empty": "", "plus": "a+b%"}
    with job_metrics("backup/nightly", labels=labels):
        pass
    groups = [g for g in env.groups() if g["labels"].get("job") == "backup/nightly"]
    assert len(groups) == 1
    got = groups[0]["labels"]
    for k, v in labels.items():
        if v:
            assert got[k] == v
        else:
            assert got.get(k, "") == ""
    assert got["instance"] == "host1"


def test_same_job_two_instances_kept_apart(
    env: Gateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same job on two hosts lands in two groups; one's failure leaves the other alone."""
    with job_metrics("sync"):
        pass
    monkeypatch.setenv("JOBREPORT_INSTANCE", "host2")
    with pytest.raises(OSError), job_metrics("sync"):
        raise OSError("boom")
    assert env.samples("sync", instance="host1")["jobreport_last_run_success"] == 1
    assert env.samples("sync", instance="host2")["jobreport_last_run_success"] == 0


def test_no_instance(env: Gateway, monkeypatch: pytest.MonkeyPatch) -> None:
    """JOBREPORT_NO_INSTANCE drops the instance grouping label."""
    monkeypatch.setenv("JOBREPORT_NO_INSTANCE", "true")
    with job_metrics("global"):
        pass
    [group] = [g for g in env.groups() if g["labels"]["job"] == "global"]
    assert "instance" not in group["labels"] or group["labels"]["instance"] == ""


def test_register_any_prometheus_metric(env: Gateway) -> None:
    """A prometheus_client metric registered on the handle joins the end push."""
    from prometheus_client import CollectorRegistry, Counter, Gauge

    registry = CollectorRegistry()
    with job_metrics("train") as job:
        loss = job.register(Gauge("train_loss", "Loss", registry=registry))
        loss.set(0.25)
        rows = job.register(Counter("train_rows", "Rows", ["split"], registry=registry))
        rows.labels("test").inc(12)
    s = env.samples("train")
    assert s["train_loss"] == 0.25
    assert s['train_rows_total{split="test"}'] == 12


def test_heartbeat_pushed_while_running(env: Gateway) -> None:
    """With heartbeat set, a liveness timestamp is pushed while the body runs."""
    with job_metrics("long", heartbeat=0.2):
        deadline = time.monotonic() + 10
        seen = None
        while time.monotonic() < deadline:
            groups = [g for g in env.groups() if g["labels"]["job"] == "long"]
            if groups and "jobreport_last_heartbeat_timestamp_seconds" in groups[0]:
                seen = groups[0]
                break
            time.sleep(0.1)
        assert seen is not None, "no heartbeat within 10 s"
        running = env.samples("long")["jobreport_running"]
    assert running == 1
    assert env.samples("long")["jobreport_running"] == 0


@pytest.mark.parametrize(
    ("call", "error"),
    [
        (lambda: job_metrics(""), InvalidNameError),
        (lambda: job_metrics("ok", labels={"0bad": "x"}), InvalidNameError),
        (lambda: job_metrics("ok", labels={"job": "x"}), InvalidNameError),
        (lambda: job_metrics("ok", labels={"instance": "x"}), InvalidNameError),
        (lambda: job_metrics("ok", expect_every="soon"), ConfigError),
        (lambda: job_metrics("ok", heartbeat=0), ConfigError),
    ],
)
def test_invalid_names_raise_before_the_body(call: object, error: type[Exception]) -> None:
    """Programming errors raise a JobReportError subclass before anything runs."""
    with pytest.raises(error):
        call()  # type: ignore[operator]


def test_invalid_gauge_name_fails_the_body(env: Gateway) -> None:
    """A gauge in jobreport's namespace or with a bad name is refused with InvalidNameError."""
    with pytest.raises(InvalidNameError), job_metrics("g") as job:
        job.gauge("jobreport_last_items", 1)
    with pytest.raises(InvalidNameError), job_metrics("g") as job:
        job.gauge("has space", 1)


def test_gateway_down_never_breaks_the_body(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Refused connections: the body runs, returns normally, and a one-line warning says so."""
    from tests.servers import free_port

    monkeypatch.setenv("JOBREPORT_GATEWAY", f"http://127.0.0.1:{free_port()}")
    monkeypatch.setenv("JOBREPORT_DB", f"sqlite:///{tmp_path / 's.db'}")
    monkeypatch.setenv("JOBREPORT_BUDGET", "1s")
    ran = []
    with job_metrics("offline") as job:
        ran.append(1)
    assert ran == [1] and job.outcome == "success"
    warnings = [r for r in caplog.records if r.levelname == "WARNING"]
    assert any("cannot reach the Pushgateway" in r.getMessage() for r in warnings)
    assert all("\n" not in r.getMessage() for r in warnings)
    assert all(r.exc_info is None for r in warnings)


def test_bad_environment_setting_does_not_stop_the_job(
    env: Gateway, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A bad JOBREPORT_* value is environmental: warned about, the body still runs."""
    monkeypatch.setenv("JOBREPORT_TIMEOUT", "forever")
    with job_metrics("tolerant") as job:
        pass
    assert job.outcome == "success"
    assert env.samples("tolerant")["jobreport_last_run_success"] == 1
    assert any("JOBREPORT_TIMEOUT" in r.getMessage() for r in caplog.records)


def test_explicit_config_object(gateway: Gateway, tmp_path: Path) -> None:
    """A Config passed in is used as is (no environment needed)."""
    config = load_config(env={}, gateway=gateway.url, db=str(tmp_path / "x.db"),
                         instance="cfg")
    with job_metrics("explicit", config=config):
        pass
    assert gateway.samples("explicit", instance="cfg")["jobreport_last_run_success"] == 1


def test_inside_jobreport_run_for_the_same_job_adds_to_its_run(
    env: Gateway, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Under `jobreport run --job J`, job_metrics("J") writes its figures to the wrapper's
    metrics file instead of reporting a second run; other jobs report as usual."""
    metrics_file = tmp_path / "metrics.prom"
    monkeypatch.setenv("JOBREPORT_JOB", "wrapped")
    monkeypatch.setenv("JOBREPORT_METRICS_FILE", str(metrics_file))
    with pytest.raises(ValueError), job_metrics("wrapped") as job:
        job.set_size(10)
        job.add_items(3)
        job.gauge("wrapped_tables", 4, help="Tables")
        raise ValueError("the body's exception still goes through")
    text = metrics_file.read_text()
    assert "jobreport_last_size_bytes 10.0" in text
    assert "jobreport_last_items 3.0" in text
    assert "wrapped_tables 4.0" in text
    assert [g for g in env.groups() if g["labels"]["job"] == "wrapped"] == []
    with job_metrics("other"):
        pass
    assert env.samples("other")["jobreport_last_run_success"] == 1


def test_current_job_gives_the_decorated_function_its_handle(env: Gateway) -> None:
    """current_job() reaches the handle from inside a decorated function, nested blocks see
    their own, and outside of one it raises a clear error."""
    from jobreport import JobReportError, current_job

    @job_metrics("deco")
    def train() -> None:
        current_job().gauge("deco_accuracy", 0.93)
        current_job().add_items(5)
        with job_metrics("inner"):
            current_job().set_size(7)
        current_job().add_items(1)

    train()
    s = env.samples("deco")
    assert s["deco_accuracy"] == 0.93
    assert s["jobreport_last_items"] == 6
    assert env.samples("inner")["jobreport_last_size_bytes"] == 7
    with pytest.raises(JobReportError, match="inside a job_metrics block"):
        current_job()


def test_unexpected_errors_are_one_line_warnings(
    env: Gateway, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A bug inside reporting never prints a traceback into the job's output."""
    import logging

    from jobreport.runs import Recorder

    def broken(*args: object, **kwargs: object) -> bool:
        raise RuntimeError("simulated bug")

    monkeypatch.setattr(Recorder, "finish", broken)
    logger = logging.getLogger("jobreport")
    monkeypatch.setattr(logger, "propagate", False)  # fall back to logging's last resort
    with job_metrics("buggy") as job:
        pass
    err = capsys.readouterr().err
    assert job.outcome == "success"
    assert "simulated bug" in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


def test_a_reset_ends_the_start_thread_once_its_queue_is_done() -> None:
    """SHARED.reset() (between tests, or a process that starts over) leaves no start thread
    behind, and what was queued before still runs."""
    import threading
    import time

    from jobreport.runs import SHARED

    done: list[int] = []
    for i in range(20):
        SHARED.starts.submit(done.append, i)
        SHARED.reset()
    deadline = time.monotonic() + 30  # (the threads start soon, not at once)
    while len(done) < 20 or any(t.name == "jobreport-start" for t in threading.enumerate()):
        assert time.monotonic() < deadline, (
            f"{len(done)} of 20 starts ran; start threads: "
            f"{sum(t.name == 'jobreport-start' for t in threading.enumerate())}")
        time.sleep(0.01)
    assert sorted(done) == list(range(20))
