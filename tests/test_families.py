"""The families a job adds, against what the Pushgateway can take: hostile families are left
out before the push (one warning naming them), what the gateway still refuses is left out
after its 400, and either way the run's own state lands and ``JobreportPushFailing`` fires
(the gateway records a failed push for the group)."""

from __future__ import annotations

import logging
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import generate_latest
from prometheus_client.registry import Collector, CollectorRegistry

from jobreport import job_metrics, load_config
from jobreport.config import Config
from jobreport.delivery import flush
from jobreport.exposition import StateCollector
from jobreport.result import CustomFamily, RunResult
from jobreport.sinks import _families
from jobreport.sinks._families import faults, pointed_at
from jobreport.state import GroupState
from jobreport.store.store import Store
from tests import servers
from tests.conftest import Gateway
from tests.faults import assert_no_traceback
from tests.monitoring_helpers import prom_query, prometheus_test_config, wait_for


def config_for(url: str, tmp_path: Path, **settings: Any) -> Config:
    values: dict[str, Any] = {"budget": "60s", "start_budget": "5s", "timeout": "10s",
                              "db": f"sqlite:///{tmp_path / 'store.db'}"}
    values.update(settings)
    return load_config(env={}, gateway=url, instance="h1", **values)


def fam(name: str, typ: str, *samples: tuple[str, dict[str, str], float],
        help: str = "h") -> CustomFamily:
    return CustomFamily(name=name, help=help, type=typ, samples=tuple(
        (n, tuple(sorted(labels.items())), v) for n, labels, v in samples))


def state_with(*families: CustomFamily) -> GroupState:
    return GroupState(job="j", grouping={"job": "j", "instance": "h1"}, runs_total={},
                      last=RunResult(ended=1.0, duration=1.0, outcome="success", exit_code=0,
                                     custom=families))


#: Families no push may carry, by what is wrong with them.
HOSTILE: dict[str, list[CustomFamily]] = {
    "quantile abc": [fam("s", "summary", ("s", {"quantile": "abc"}, 1), ("s_sum", {}, 1))],
    "quantile out of range": [fam("s", "summary", ("s", {"quantile": "1e999"}, 1))],
    "quantile with underscore": [fam("s", "summary", ("s", {"quantile": "1_0"}, 1))],
    "quantile with a space": [fam("s", "summary", ("s", {"quantile": " 1"}, 1))],
    "quantile hex": [fam("s", "summary", ("s", {"quantile": "0x1p-2"}, 1))],
    "quantile +NaN": [fam("s", "summary", ("s", {"quantile": "+NaN"}, 1))],
    "le abc": [fam("h", "histogram", ("h_bucket", {"le": "abc"}, 1))],
    "le abc on the sum": [fam("h", "histogram", ("h_sum", {"le": "abc"}, 1))],
    "le abc, gauge histogram": [fam("h", "gaugehistogram", ("h_bucket", {"le": "x"}, 1))],
    "two families, one name": [fam("d", "gauge", ("d", {}, 1)),
                               fam("d", "gauge", ("d", {"a": "1"}, 2))],
    "series twice": [fam("d", "gauge", ("d", {}, 1), ("d", {}, 2))],
    "labels that escape to one": [fam("l", "gauge", ("l", {"a.b": "1", "a_b": "2"}, 1))],
    "empty label name": [fam("l", "gauge", ("l", {"": "1"}, 1))],
    "reserved label name": [fam("l", "gauge", ("l", {"__x": "1"}, 1))],
    "a forged jobreport series": [fam("f", "gauge", ("jobreport_running", {"x": "1"}, 5))],
    "a forged jobreport series without labels": [
        fam("f", "gauge", ("jobreport_last_success_timestamp_seconds", {}, 9e9))],
    "an info family named like jobreport's": [
        fam("jobreport", "info", ("jobreport_info", {"v": "1"}, 1))],
    "a counter named like jobreport's": [fam("jobreport", "counter", ("jobreport_total", {}, 1))],
    "the gateway's own name": [fam("push_time_seconds", "untyped",
                                   ("push_time_seconds", {}, 1))],
    "a sample of another name": [fam("mine", "gauge", ("other", {}, 1))],
    "a dotted sample name": [fam("l", "gauge", ("l.x", {}, 1))],
    "a dotted label name": [fam("l", "gauge", ("l", {"a.b": "1"}, 1))],
    "a surrogate in a label value": [fam("u", "gauge", ("u", {"a": "\udcff"}, 1))],
    "a surrogate in the help": [fam("u", "gauge", ("u", {}, 1), help="\udcff")],
    "no such type": [fam("t", "weird", ("t", {}, 1))],
    "clash with a counter's exposed name": [fam("c", "counter", ("c_total", {}, 1)),
                                            fam("c_total", "gauge", ("c_total", {}, 1))],
}

#: Families any push may carry (the Pushgateway takes each of them).
FINE: dict[str, CustomFamily] = {
    "gauge": fam("g", "gauge", ("g", {"a": "x y/z"}, 1.5)),
    "NaN value": fam("g", "gauge", ("g", {}, float("nan"))),
    "counter": fam("c", "counter", ("c_total", {}, 3), ("c_created", {}, 1)),
    "counter kept as the metrics file names it": fam("c_total", "counter", ("c_total", {}, 3)),
    "summary": fam("s", "summary", ("s", {"quantile": "0.5"}, 1), ("s", {"quantile": "NaN"}, 1),
                   ("s", {"quantile": "+Inf"}, 1), ("s_sum", {}, 2), ("s_count", {}, 3)),
    "histogram": fam("h", "histogram", ("h_bucket", {"le": "1e3"}, 1),
                     ("h_bucket", {"le": "+Inf"}, 2), ("h_sum", {}, 2), ("h_count", {}, 2)),
    "info": fam("build", "info", ("build_info", {"v": "1"}, 1)),
    "unicode label value": fam("u", "gauge", ("u", {"a": "é\n\"\\"}, 1)),
    "quantile in a gauge is just a label": fam("q", "gauge", ("q", {"quantile": "abc"}, 1)),
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_a_hostile_family_is_found(case: str) -> None:
    """Each hostile family is named, with what is wrong; a fine family beside it is not."""
    good = fam("good_gauge", "gauge", ("good_gauge", {}, 5))
    found = faults(state_with(*HOSTILE[case], good), "jobreport")
    assert found and set(found) <= {f.name for f in HOSTILE[case]}, found
    assert all(why for why in found.values())


@pytest.mark.parametrize("case", sorted(FINE))
def test_a_fine_family_passes(case: str) -> None:
    assert faults(state_with(FINE[case]), "jobreport") == {}


def test_a_configured_namespace_is_protected_too() -> None:
    forged = fam("acme_running", "gauge", ("acme_running", {"x": "1"}, 5))
    assert faults(state_with(forged), "acme") != {}
    assert faults(state_with(forged), "jobreport") == {}


def _put(gateway: Gateway, body: bytes) -> int:
    request = urllib.request.Request(gateway.url + "/metrics/job/probe", data=body,
                                     method="PUT")
    try:
        with urllib.request.urlopen(request, timeout=10) as r:
            return int(r.status)
    except urllib.error.HTTPError as e:
        return e.code


def _body(state: GroupState) -> bytes:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(StateCollector(state, "jobreport"))
    return generate_latest(registry)


def test_what_the_real_gateway_refuses_is_found_first(gateway: Gateway) -> None:
    """Every hostile family the real Pushgateway refuses (400) is one ``faults`` finds, and
    every fine family is one it takes: the client-side check agrees with the gateway (a
    few hostile ones it takes, such as forged jobreport series, are refused on purpose)."""
    refused = []
    for case, families in HOSTILE.items():
        try:
            body = _body(state_with(*families))
        except (UnicodeEncodeError, ValueError):
            refused.append(case)  # cannot even be written: it would break every push
            assert faults(state_with(*families), "jobreport"), case
            continue
        if _put(gateway, body) == 400:
            refused.append(case)
            assert faults(state_with(*families), "jobreport"), case
    assert len(refused) >= 15, refused  # the table exercises the gateway's refusals
    for case, family in FINE.items():
        assert _put(gateway, _body(state_with(family))) == 200, case


class _Hostile(Collector):
    """A parse error, a forged jobreport series and a fine gauge."""

    def collect(self) -> Iterator[Metric]:
        summary = Metric("bad_latency", "latency", "summary")
        summary.add_sample("bad_latency", {"quantile": "abc"}, 1.0)
        summary.add_sample("bad_latency_sum", {}, 1.0)
        yield summary
        forged = Metric("forger", "forged", "gauge")
        forged.add_sample("jobreport_last_success_timestamp_seconds", {"x": "1"}, 9e9)
        yield forged
        yield GaugeMetricFamily("good_gauge", "fine", value=5.0)


def _one_warning(caplog: pytest.LogCaptureFixture, *names: str) -> str:
    lines = [r.getMessage() for r in caplog.records
             if r.levelno >= logging.WARNING and any(n in r.getMessage() for n in names)]
    assert len(lines) == 1, lines
    assert all(n in lines[0] for n in names), lines
    assert "\n" not in lines[0]
    return lines[0]


def test_hostile_families_are_left_out_before_the_push(
        gateway: Gateway, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """The real gateway never sees the hostile families: the run's state and the fine gauge
    land, one warning names the families left out, the group stays pending with the error
    recorded, and the gateway records a failed push (JobreportPushFailing)."""
    config = config_for(gateway.url, tmp_path)
    with caplog.at_level(logging.WARNING, logger="jobreport"), \
            job_metrics("hostile", config=config) as job:
        job.register(_Hostile())
    assert job.outcome == "success"
    line = _one_warning(caplog, "bad_latency", "forger")
    assert "left out the families of job hostile" in line
    assert_no_traceback(caplog.text)
    s = gateway.samples("hostile", instance="h1")
    assert s['jobreport_last_outcome{outcome="success"}'] == 1
    assert s['jobreport_runs_total{outcome="success"}'] == 1
    assert s["good_gauge"] == 5
    assert not any(k.startswith("bad_latency") or "x=" in k for k in s), s
    assert s["jobreport_last_success_timestamp_seconds"] < 9e9
    assert s["push_failure_time_seconds"] > s["push_time_seconds"]
    [pending] = Store(config.db).pending()
    assert "bad_latency" in (pending.last_error or "")
    # flush keeps it so (still left out, still failing) until the job stops sending them
    assert flush(config).groups == 1
    again = gateway.samples("hostile", instance="h1")
    assert again["push_failure_time_seconds"] > again["push_time_seconds"]
    assert again["good_gauge"] == 5
    # the next run without them: delivered, the alert resolves
    with job_metrics("hostile", config=config):
        pass
    fixed = gateway.samples("hostile", instance="h1")
    assert fixed["push_time_seconds"] > fixed["push_failure_time_seconds"]
    assert fixed['jobreport_runs_total{outcome="success"}'] == 2
    assert Store(config.db).pending() == []


def test_an_unparseable_body_the_gateway_refuses_still_records_a_failure(
        gateway: Gateway, tmp_path: Path, caplog: pytest.LogCaptureFixture,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Without the client-side check, the gateway answers a parse error that names no
    family (``text format parsing error in line N``): the family owning that line is left
    out, the rest lands, and the gateway records a failed push, which it does not do for a
    parse error by itself."""
    monkeypatch.setattr(_families, "faults", lambda state, namespace: {})
    config = config_for(gateway.url, tmp_path, namespace="acme")
    with caplog.at_level(logging.WARNING, logger="jobreport"), \
            job_metrics("unparsed", config=config) as job:
        job.register(_BadOnly())
    line = _one_warning(caplog, "bad_latency")
    assert "rejected the families bad_latency of job unparsed" in line
    assert "parsing error" in line
    s = gateway.samples("unparsed", instance="h1")
    assert s['acme_last_outcome{outcome="success"}'] == 1
    assert s["good_gauge"] == 5
    assert not any(k.startswith("bad_latency") for k in s)
    assert s["push_failure_time_seconds"] > s["push_time_seconds"]
    [pending] = Store(config.db).pending()
    assert "bad_latency" in (pending.last_error or "")


class _BadOnly(Collector):
    def collect(self) -> Iterator[Metric]:
        yield GaugeMetricFamily("good_gauge", "fine", value=5.0)
        summary = Metric("bad_latency", "latency", "summary")
        summary.add_sample("bad_latency", {"quantile": "abc"}, 1.0)
        yield summary


def test_the_line_of_a_parse_error_points_at_its_family() -> None:
    state = state_with(fam("good", "gauge", ("good", {}, 1)),
                       fam("s", "summary", ("s", {"quantile": "abc"}, 1)))
    body = _body(state).decode().splitlines()
    line = next(i for i, text in enumerate(body, 1) if 'quantile="abc"' in text)
    reason = f"text format parsing error in line {line}: expected float"
    assert pointed_at(state, reason, "jobreport") == ("s",)
    # named in the text, as a whole word only ("s" is in "pushed metrics ...")
    assert pointed_at(state, 'collected metric "good" was collected before',
                      "jobreport") == ("good",)


def test_without_a_store_the_push_still_leaves_them_out(
        gateway: Gateway, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """The POST of a run without a store leaves the hostile families out the same way."""
    config = config_for(gateway.url, tmp_path, db=f"sqlite:///{tmp_path}/missing/dir/x.db")
    (tmp_path / "missing").write_text("a file where the store's directory would be")
    with caplog.at_level(logging.WARNING, logger="jobreport"), \
            job_metrics("nostore", config=config) as job:
        job.register(_Hostile())
    assert job.outcome == "success"
    _one_warning(caplog, "bad_latency", "forger")
    s = gateway.samples("nostore", instance="h1")
    assert s["good_gauge"] == 5
    assert s['jobreport_last_outcome{outcome="success"}'] == 1
    assert not any(k.startswith("bad_latency") for k in s)
    assert s["push_failure_time_seconds"] > s["push_time_seconds"]


def test_push_failing_fires_in_a_real_prometheus(
        gateway: Gateway, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The shipped JobreportPushFailing fires for a group whose body the gateway could not
    parse and for one whose families were left out before the push, and stays silent for
    a fine group."""
    config = config_for(gateway.url, tmp_path)
    prom_config = prometheus_test_config(tmp_path / "prometheus.yml", gateway_port=gateway.server.port)
    prometheus = servers.prometheus(tmp_path / "prometheus", prom_config).start()
    try:
        with job_metrics("checked", config=config) as job:
            job.register(_Hostile())
        with job_metrics("fine", config=config) as job:
            job.gauge("fine_gauge", 1)
        with monkeypatch.context() as m:
            m.setattr(_families, "faults", lambda state, namespace: {})
            with job_metrics("unparsed", config=config) as job:
                job.register(_BadOnly())

        def firing() -> set[str] | None:
            result = prom_query(prometheus.url,
                                'ALERTS{alertname="JobreportPushFailing",alertstate="firing"}')
            jobs = {r["metric"]["job"] for r in result["data"]["result"]}
            return jobs if {"checked", "unparsed"} <= jobs else None

        jobs = wait_for("JobreportPushFailing for both groups", firing, timeout=120)
        assert "fine" not in jobs
    finally:
        prometheus.stop()


def test_the_warning_stays_one_safe_line() -> None:
    """Names that are not metric names are quoted (no newline or terminal control reaches
    the warning), long reasons are cut, and past five families only their number is said."""
    from jobreport.sinks._families import listing

    text = listing({"evil\n\x1b[31mname": "x" * 5000, "fine_name": "bad"})
    assert "\n" not in text and "\x1b" not in text
    assert "fine_name (bad)" in text and len(text) < 800
    many = listing({f"f{i}": "bad" for i in range(1000)})
    assert many.endswith("; and 995 more") and many.count("(bad)") == 5
    # the fault texts themselves quote what they show
    found = faults(state_with(fam("ok", "gauge", ("ok", {"a\nb": "1"}, 1)),
                              fam("s", "summary", ("s", {"quantile": "\x1b[2J"}, 1))),
                   "jobreport")
    assert all("\n" not in why and "\x1b" not in why for why in found.values()), found


def test_jobreport_run_with_a_hostile_metrics_file(gateway: Gateway, tmp_path: Path) -> None:
    """Through a real `jobreport run`: a summary with a bad quantile in the metrics file is
    left out with one warning naming it; the command's exit code and output are intact, its
    run and its good gauge land, and the gateway records the failure."""
    from tests.faults import cli_env, run_cli

    env = cli_env(JOBREPORT_GATEWAY=gateway.url, JOBREPORT_DB=f"sqlite:///{tmp_path}/s.db",
                  JOBREPORT_INSTANCE="h1")
    script = ('printf \'# TYPE lat summary\\nlat{quantile="abc"} 1\\nlat_sum 1\\n'
              'tables 42\\n\' >> "$JOBREPORT_METRICS_FILE"; echo out; exit 3')
    ran = run_cli(["run", "--job", "mf", "--", "sh", "-c", script], env)
    assert ran.returncode == 3 and ran.stdout == "out\n"
    warned = [line for line in ran.stderr.splitlines() if "lat (" in line]
    assert len(warned) == 1 and "quantile label 'abc' is not a number" in warned[0], \
        ran.stderr
    assert_no_traceback(ran.stderr)
    s = gateway.samples("mf", instance="h1")
    assert s["tables"] == 42 and s["jobreport_last_exit_code"] == 3
    assert not any(k.startswith("lat") for k in s)
    assert s["push_failure_time_seconds"] > s["push_time_seconds"]
