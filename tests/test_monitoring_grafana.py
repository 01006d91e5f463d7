"""The Grafana dashboard and provisioning: every query is valid PromQL for a real Prometheus,
and returns data once real jobreport runs have been pushed and scraped."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from jobreport import job_metrics, load_config
from jobreport.result import RunResult
from jobreport.runs import Recorder
from jobreport.spec import JobSpec
from tests import servers
from tests.monitoring_helpers import (
    MONITORING,
    load_yaml,
    prom_get,
    prom_query,
    prometheus_test_config,
    wait_for,
)

GRAFANA = MONITORING / "grafana"
DASHBOARD = GRAFANA / "dashboards" / "jobreport.json"

# What Grafana puts in place of its variables: "All" for the job and instance variables.
SUBSTITUTIONS = {
    "$__rate_interval": "1m",
    "$__interval": "15s",
    "$__range": "1h",
    "${job}": ".*",
    "$job": ".*",
    "${instance}": ".*",
    "$instance": ".*",
}
LABEL_VALUES = re.compile(r"^label_values\((?:(?P<selector>.+),\s*)?(?P<label>\w+)\)$")


def dashboard() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    return data


def panels(board: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for panel in (board or dashboard())["panels"]:
        out.append(panel)
        out.extend(panel.get("panels", []))  # collapsed rows
    return out


def substitute(expr: str, labels: tuple[str, ...] = ()) -> str:
    for var, value in SUBSTITUTIONS.items():
        expr = expr.replace(var, value)
    for label in labels:  # the variables of grouping labels: "All"
        expr = expr.replace(f"${{{label}}}", ".*").replace(f"${label}", ".*")
    assert "$" not in expr, f"unknown variable left in {expr!r}"
    return expr


def panel_queries(board: dict[str, Any] | None = None,
                  labels: tuple[str, ...] = ()) -> list[tuple[str, str]]:
    """(panel title / refId, PromQL with the variables substituted) of every panel target."""
    return [(f"{p['title']} / {t['refId']}", substitute(t["expr"], labels))
            for p in panels(board) for t in p.get("targets", [])]


def variable_queries(board: dict[str, Any] | None = None,
                     labels: tuple[str, ...] = ()) -> list[tuple[str, str]]:
    """The series selectors inside the query variables' ``label_values(...)``."""
    out = []
    for var in (board or dashboard())["templating"]["list"]:
        if var["type"] != "query":
            continue
        query = var["query"]["query"] if isinstance(var["query"], dict) else var["query"]
        m = LABEL_VALUES.match(query)
        assert m and m.group("selector"), f"variable {var['name']}: unexpected query {query!r}"
        out.append((f"variable {var['name']}", substitute(m.group("selector"), labels)))
    return out


@pytest.fixture(scope="module")
def prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real Pushgateway and Prometheus (shipped rules, 1 s scrape and evaluation), holding
    what real jobreport runs pushed: a success with sizes and thresholds, a failure (twice),
    a run still in progress, a run with resource figures, and a scheduled run."""
    tmp = tmp_path_factory.mktemp("grafana")
    gateway = servers.pushgateway(tmp / "pushgateway").start()
    config_path = prometheus_test_config(tmp / "prometheus.yml", gateway_port=gateway.port)
    prom = servers.prometheus(tmp / "prometheus", config_path)
    try:
        prom.start()
        config = load_config(
            env={"XDG_CONFIG_HOME": str(tmp / "config")},
            gateway=gateway.url, db=f"sqlite:///{tmp / 'jobreport.db'}", instance="grafana-host",
            # every push here must land, the start of dash_running too: budgets for a busy
            # machine (a push that lands returns at once)
            budget="60s", start_budget="30s", timeout="10s",
        )
        with job_metrics("dash_backup", expect_every="1h", max_runtime="10m",
                         labels={"team": "data"}, min_size="1kB", max_shrink="50%",
                         config=config) as job:
            job.set_size(123456)
            job.add_items(42)
        with pytest.raises(RuntimeError), job_metrics("dash_failing", expect_every="1h",
                                                      config=config):
            raise RuntimeError("boom")
        reporter = Recorder(config)
        run = reporter.start(JobSpec("dash_resources", max_runtime=600.0), wait=None)
        assert reporter.finish(run, RunResult.measured(
            run.monotonic_start, outcome="success", exit_code=0, cpu_seconds=1.5,
            max_rss_bytes=2e6))
        running = Recorder(config).start(JobSpec("dash_running", max_runtime=600.0), wait=None)
        assert running.job == "dash_running"
        with job_metrics("dash_scheduled", schedule="*/5 * * * *", timezone="UTC",
                         config=config):
            pass
        wait_for("the runs in Prometheus",
                 lambda: len(prom_query(prom.url, "jobreport_last_start_timestamp_seconds")
                             ["data"]["result"]) == 5, timeout=120)
        # a second failure once Prometheus holds the first: the run counters increase, so
        # the failure ratios have a value
        with pytest.raises(RuntimeError), job_metrics("dash_failing", expect_every="1h",
                                                      config=config):
            raise RuntimeError("boom again")
        wait_for("the second failure in Prometheus",
                 lambda: prom_query(prom.url, 'jobreport_runs_total{job="dash_failing",'
                                              'outcome="failure"} == 2')["data"]["result"],
                 timeout=120)
        yield prom.url
    finally:
        prom.stop()
        gateway.stop()


def test_dashboard_has_queries_and_variables() -> None:
    """The dashboard has panels with queries and job, instance and datasource variables."""
    assert len(panel_queries()) >= 10
    names = {v["name"] for v in dashboard()["templating"]["list"]}
    assert {"datasource", "job", "instance"} <= names


def test_every_query_is_valid_promql(prometheus: str) -> None:
    """Each panel and variable query parses and evaluates in a real Prometheus (a parse
    error is a 400 with status "error")."""
    for where, expr in panel_queries() + variable_queries():
        answer = prom_query(prometheus, expr)
        assert answer["status"] == "success", f"{where}: {expr}\n{answer}"


def test_every_query_returns_data_from_real_runs(prometheus: str) -> None:
    """Against real pushed runs, every panel query returns series (metric names, labels and
    recording rules are right, not merely valid), the failed run's alert included."""

    def empty() -> list[str]:
        return [f"{where}: {expr}" for where, expr in panel_queries() + variable_queries()
                if not prom_query(prometheus, expr)["data"]["result"]]

    missing = empty()
    if missing:  # counters need two scrapes, alerts a rule evaluation
        wait_for("data for every query", lambda: not empty(), timeout=120, interval=1)


def test_variables_list_the_pushed_jobs_and_instances(prometheus: str) -> None:
    """The job and instance variables offer what was pushed."""
    jobs = prom_get(prometheus, "/api/v1/label/job/values",
                    **{"match[]": "jobreport_last_start_timestamp_seconds"})["data"]
    assert {"dash_backup", "dash_failing", "dash_running", "dash_resources"} <= set(jobs)
    instances = prom_get(prometheus, "/api/v1/label/instance/values",
                         **{"match[]": "jobreport_last_start_timestamp_seconds"})["data"]
    assert instances == ["grafana-host"]


def test_overview_table_merges_its_queries_by_label() -> None:
    """The overview table's queries drop the metric name (so the merge joins rows on the
    group labels) and every renamed column belongs to a query of the table."""
    [table] = [p for p in panels() if p["type"] == "table" and p["title"] == "Jobs"]
    refs = {t["refId"] for t in table["targets"]}
    for target in table["targets"]:
        assert target["expr"].startswith("sum without () ("), target["expr"]
        assert target["format"] == "table" and target["instant"] is True
    transformations = [t["id"] for t in table["transformations"]]
    assert transformations == ["merge", "organize"]
    renamed = table["transformations"][1]["options"]["renameByName"]
    for column in renamed:
        if column.startswith("Value #"):
            assert column.removeprefix("Value #") in refs, column
    assert "Last outcome" in renamed.values() and "Since last success" in renamed.values()


def test_panels_are_well_formed() -> None:
    """Unique panel ids, a grid position each, and every query on the datasource variable."""
    ids = [p["id"] for p in panels()]
    assert len(ids) == len(set(ids))
    for panel in panels():
        assert {"x", "y", "w", "h"} <= set(panel["gridPos"]), panel["title"]
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        for target in panel.get("targets", []):
            assert target["datasource"]["uid"] == "${datasource}"
            assert target["refId"] and target["expr"].strip()
    for var in dashboard()["templating"]["list"]:
        if var["name"] in ("job", "instance"):
            assert var["includeAll"] and var["allValue"] == ".*"


def test_provisioning_points_at_the_dashboard_and_prometheus() -> None:
    """The datasource provisioning names a Prometheus, and the dashboard provider's path is
    where docker-compose.yml mounts the dashboards."""
    datasources = load_yaml(GRAFANA / "provisioning" / "datasources" / "jobreport.yml")
    [ds] = datasources["datasources"]
    assert ds["type"] == "prometheus" and ds["url"].startswith("http")
    providers = load_yaml(GRAFANA / "provisioning" / "dashboards" / "jobreport.yml")
    [provider] = providers["providers"]
    path = provider["options"]["path"]
    compose = load_yaml(MONITORING / "docker-compose.yml")
    mounts = compose["services"]["grafana"]["volumes"]
    assert f"./grafana/dashboards:{path}:ro" in mounts
    assert any((GRAFANA / "dashboards").glob("*.json"))


def test_a_row_per_job() -> None:
    """A row repeats for each selected job, with its last success age, outcome, next
    deadline, failure ratio, and duration and size trends, all narrowed to that job."""
    board = dashboard()
    rows = [p for p in board["panels"] if p["type"] == "row"]
    [row] = [r for r in rows if r.get("repeat")]
    assert row["repeat"] == "job" and "$job" in row["title"]
    job = next(v for v in board["templating"]["list"] if v["name"] == "job")
    assert job["multi"] and job["includeAll"], "a row repeats over the selected jobs"
    after = board["panels"][board["panels"].index(row) + 1:]
    in_row = after[: next((i for i, p in enumerate(after) if p["type"] == "row"), len(after))]
    titles = {p["title"] for p in in_row}
    assert {"Last success", "Outcome", "Next deadline", "Failure ratio", "Duration",
            "Size"} <= titles
    for panel in in_row:
        for target in panel["targets"]:
            assert 'job=~"$job"' in target["expr"], (panel["title"], target["expr"])
    deadline = next(p for p in in_row if p["title"] == "Next deadline")
    exprs = " ".join(t["expr"] for t in deadline["targets"])
    assert "jobreport_success_deadline_timestamp_seconds" in exprs
    assert "jobreport_start_deadline_timestamp_seconds" in exprs


def test_the_deadline_and_the_outcome_of_a_job(prometheus: str) -> None:
    """The row's outcome says which outcome the last run had; its next deadline is the
    last success plus the interval for a job with --expect-every, the success and start
    deadlines for a scheduled job (in milliseconds, as Grafana's dateTimeFromNow wants)."""
    by_title = {p["title"]: p for p in panels()}

    def values(title: str, job: str) -> list[dict[str, Any]]:
        expr = by_title[title]["targets"][0]["expr"].replace("$job", job)
        result: list[dict[str, Any]] = prom_query(prometheus, substitute(expr))["data"]["result"]
        return result

    [failed] = values("Outcome", "dash_failing")
    assert failed["metric"]["outcome"] == "failure" and failed["value"][1] == "0"
    [ok] = values("Outcome", "dash_backup")
    assert ok["metric"]["outcome"] == "success" and ok["value"][1] == "1"
    [deadline] = values("Next deadline", "dash_backup")
    success = prom_query(prometheus, 'jobreport_last_success_timestamp_seconds'
                                     '{job="dash_backup"}')["data"]["result"][0]["value"][1]
    interval = prom_query(prometheus, 'jobreport_expected_interval_seconds'
                                      '{job="dash_backup"}')["data"]["result"][0]["value"][1]
    assert float(deadline["value"][1]) == (float(success) + float(interval)) * 1000
    assert deadline["metric"]["deadline"] == "success due"

    scheduled = {d["metric"]["deadline"]: float(d["value"][1])
                 for d in values("Next deadline", "dash_scheduled")}
    for kind, metric in (("success due", "success"), ("start due", "start")):
        pushed = prom_query(prometheus, f'jobreport_{metric}_deadline_timestamp_seconds'
                                        '{job="dash_scheduled"}')["data"]["result"]
        assert scheduled[kind] == float(pushed[0]["value"][1]) * 1000, kind


def test_export_adds_a_variable_per_grouping_label(prometheus: str, tmp_path: Path) -> None:
    """The exported dashboard for jobs with a grouping label has a variable for it that
    lists its values, and every query, narrowed by it, still returns data."""
    from jobreport.config import load_config
    from jobreport.monitoring.export import DASHBOARD, export_files

    path = tmp_path / "jobreport.toml"
    path.write_text('[jobs.dash_backup]\nexpect_every = "1h"\nlabels = { team = "data" }\n')
    config = load_config(config_file=str(path))
    board = json.loads(export_files(config)[DASHBOARD])
    names = [v["name"] for v in board["templating"]["list"]]
    assert names.index("team") == names.index("instance") + 1
    [team] = [v for v in board["templating"]["list"] if v["name"] == "team"]
    match = LABEL_VALUES.match(team["query"]["query"])
    assert match and match.group("label") == "team"
    values = prom_get(prometheus, "/api/v1/label/team/values",
                      **{"match[]": substitute(match.group("selector"))})["data"]
    assert values == ["data"]
    queries = panel_queries(board, ("team",))
    assert all('team=~".*"' in expr for _, expr in queries if 'job=~".*"' in expr)
    missing = [f"{where}: {expr}" for where, expr in queries + variable_queries(board, ("team",))
               if not prom_query(prometheus, expr)["data"]["result"]]
    assert missing == []
    narrowed = [expr.replace('team=~".*"', 'team="data"') for _, expr in queries]
    assert prom_query(prometheus, narrowed[0])["data"]["result"]


def test_size_against_its_typical_value(prometheus: str) -> None:
    """The Size panel draws the size, its typical value (dashed) and the size below which
    JobreportJobOutputTooSmall fires: the larger of --min-size and (1 - --max-shrink) times
    the typical size; Duration draws the typical duration beside the duration."""
    by_title = {p["title"]: p for p in panels()}
    size = by_title["Size"]
    exprs = [t["expr"] for t in size["targets"]]
    assert any("jobreport_typical_size_bytes" in e and "max_shrink" not in e for e in exprs)
    assert {o["matcher"]["options"] for o in size["fieldConfig"]["overrides"]} == {
        ".* typical$", ".* too small below$"}
    by_legend = {}
    for target in size["targets"]:
        expr = substitute(target["expr"].replace("$job", "dash_backup"))
        [series] = prom_query(prometheus, expr)["data"]["result"]
        by_legend[target["legendFormat"]] = float(series["value"][1])
    assert by_legend == {"{{instance}}": 123456.0, "{{instance}} typical": 123456.0,
                         "{{instance}} too small below": 61728.0}
    duration = by_title["Duration"]
    assert any("jobreport_typical_duration_seconds" in t["expr"] for t in duration["targets"])
