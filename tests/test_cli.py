"""The commands around `jobreport run`, through click's CliRunner (in-process), plus the
help texts every command must have."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click
import pytest
from click.testing import CliRunner, Result

from jobreport import job_metrics, load_config
from jobreport.cli import main
from jobreport.commands.check import FAIL, OK, WARN, mask_url, run_checks
from jobreport.monitoring.rules import absent_rules, selector
from tests.conftest import Gateway
from tests.gateway_text import FakeGateway, family

REPO = Path(__file__).resolve().parent.parent
COMMANDS = ("run", "push", "flush", "history", "status", "delete", "check", "rules",
            "monitoring", "prune")
#: Commands of the groups above, and the group commands themselves.
NESTED = ("monitoring export", "monitoring runbook")


def invoke(*args: str, **env: str) -> Result:
    return CliRunner().invoke(main, list(args), env=env or None, catch_exceptions=False)


@pytest.fixture(autouse=True)
def _keep_once_per_process_notices() -> Iterator[None]:
    """The recorder says "no Pushgateway configured" once per process; runs recorded here
    must not use that up for tests that check the notice."""
    from jobreport import logger

    saved = set(logger._noticed)
    yield
    logger._noticed.clear()
    logger._noticed.update(saved)


@pytest.fixture
def gw(gateway: Gateway, monkeypatch: pytest.MonkeyPatch) -> Gateway:
    monkeypatch.setenv("JOBREPORT_GATEWAY", gateway.url)
    return gateway


# -- help, examples, environment variables -----------------------------------------------


def test_the_eight_commands_exist() -> None:
    """The CLI has exactly the commands of the contract."""
    assert isinstance(main.group, click.Group)
    assert sorted(main.commands) == sorted(COMMANDS)


def command_named(name: str) -> click.Command:
    """The command ``name`` ("run", or "monitoring export" for a group's command)."""
    command: click.Command = main.group
    for word in name.split():
        assert isinstance(command, click.Group)
        command = command.commands[word]
    return command


@pytest.mark.parametrize("name", COMMANDS + NESTED)
def test_every_command_has_help_with_an_example(name: str) -> None:
    """Every command has a help text with an example of its use."""
    command = command_named(name)
    assert command.help and len(command.help.split()) >= 5
    result = invoke(*name.split(), "--help")
    assert result.exit_code == 0
    assert "Example" in result.output
    assert f"jobreport {name}" in result.output.split("Example", 1)[1]


@pytest.mark.parametrize("name", COMMANDS + NESTED)
def test_every_option_reads_and_names_an_environment_variable(name: str) -> None:
    """Each option has help text and an environment variable shown in --help."""
    command = command_named(name)
    output = invoke(*name.split(), "--help").output
    for param in command.params:
        if not isinstance(param, click.Option) or param.name == "help":
            continue
        assert param.help, f"{name} {param.opts} has no help"
        assert param.envvar and param.show_envvar, f"{name} {param.opts} has no env var"
        first = param.envvar if isinstance(param.envvar, str) else param.envvar[0]
        assert first.startswith("JOBREPORT_")
        assert first in output.replace("\n", " ").replace("  ", " ") or first in output


def test_top_level_help_lists_exit_codes() -> None:
    """`jobreport --help` documents the exit codes."""
    result = invoke("--help")
    assert result.exit_code == 0
    for code in ("124", "126", "127", "128+N", "75"):
        assert code in result.output


def test_python_dash_m_and_version() -> None:
    """`python -m jobreport` works and knows its version."""
    from jobreport import __version__

    out = subprocess.run([sys.executable, "-m", "jobreport", "--version"], capture_output=True,
                         env={**os.environ, "PYTHONPATH": str(REPO)}, timeout=60, check=False)
    assert out.returncode == 0
    assert __version__ in out.stdout.decode()


def test_cli_import_stays_light() -> None:
    """Importing the CLI (the path of `jobreport run`) loads no SQLAlchemy, requests or
    prometheus_client."""
    code = ("import sys, jobreport.cli, jobreport.wrapper.wrapper\n"
            "heavy = [m for m in ('sqlalchemy', 'requests', 'prometheus_client', 'psutil',"
            " 'tenacity') if m in sys.modules]\n"
            "print(','.join(heavy))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=60,
                         env={**os.environ, "PYTHONPATH": str(REPO)}, check=True)
    assert out.stdout.decode().strip() == ""


# -- usage and configuration errors -------------------------------------------------------


@pytest.mark.parametrize("args", [
    ["run", "--timeout", "soon", "--", "true"],
    ["run", "--label", "no-equals", "--", "true"],
    ["run", "--label", "job=x", "--", "true"],
    ["run"],
    ["history", "--outcome", "maybe"],
    ["history", "--since", "last tuesday"],
    ["push", "--job", "j"],
    ["delete"],
])
def test_usage_errors_exit_2(args: list[str]) -> None:
    """Bad options are usage errors: exit 2, a message, no traceback."""
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)


def test_config_error_is_one_line_with_a_hint() -> None:
    """A bad setting ends a command with exit 2, the setting, its source and a hint."""
    result = CliRunner().invoke(main, ["status"], env={"JOBREPORT_GATEWAY": "ftp://x"})
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 2
    assert lines[0].startswith("jobreport: error: gateway (from env JOBREPORT_GATEWAY)")
    assert lines[1].startswith("jobreport: hint:") and "jobreport check" in lines[1]


def test_unreachable_gateway_is_exit_3() -> None:
    """A gateway nobody listens on: exit 3, one line saying so, and a hint."""
    result = CliRunner().invoke(main, ["status"], env={
        "JOBREPORT_GATEWAY": "http://127.0.0.1:1", "JOBREPORT_TIMEOUT": "0.5",
        "JOBREPORT_BUDGET": "0.5"})
    assert result.exit_code == 3
    assert "cannot reach the Pushgateway" in result.output
    assert "hint" in result.output and "Traceback" not in result.output


def test_no_gateway_is_exit_3_with_a_hint() -> None:
    """Commands that need the gateway say how to set it."""
    result = CliRunner().invoke(main, ["delete", "--job", "x"])
    assert result.exit_code == 3
    assert "JOBREPORT_GATEWAY" in result.output


# -- push, delete, status ----------------------------------------------------------------


def test_push_ad_hoc_values(gw: Gateway, monkeypatch: pytest.MonkeyPatch) -> None:
    """`push` keeps its values in the store and delivers them with the group's state: the
    group's other metrics stay, and the next run of the job keeps the values."""
    monkeypatch.setenv("JOBREPORT_INSTANCE", "h1")
    with job_metrics("backup"):
        pass
    result = invoke("push", "--job", "backup", "tables=42", 'rows{table="users"}=7')
    assert result.exit_code == 0, result.output
    assert "pushed 2 metric(s)" in result.output
    pushed = gw.samples("backup", instance="h1")
    assert (pushed["tables"], pushed['rows{table="users"}']) == (42.0, 7.0)
    assert pushed["jobreport_last_success_timestamp_seconds"] > 0
    with job_metrics("backup"):
        pass
    after = gw.samples("backup", instance="h1")
    assert (after["tables"], after['rows{table="users"}']) == (42.0, 7.0)
    assert after['jobreport_runs_total{outcome="success"}'] == 2
    result = invoke("push", "--job", "backup", "tables=1")
    assert result.exit_code == 0
    s = gw.samples("backup", instance=load_config().instance or "")
    assert s["tables"] == 1 and s["jobreport_last_run_success"] == 1


def test_push_job_from_the_wrapping_run(gw: Gateway) -> None:
    """Inside `jobreport run`, JOBREPORT_JOB names the job for `push`."""
    result = invoke("push", "--no-instance", "x=1", JOBREPORT_JOB="wrapped")
    assert result.exit_code == 0, result.output
    assert [g["labels"] for g in gw.groups()] == [{"job": "wrapped"}]
    assert gw.samples("wrapped")['x{instance=""}'] == 1.0


def test_push_refuses_bad_values(gw: Gateway) -> None:
    """Bad NAME=VALUE pairs and jobreport's own names are usage errors; nothing is pushed."""
    result = CliRunner().invoke(main, ["push", "--job", "j", "ok=1", "x=abc",
                                       "jobreport_last_items=3"])
    assert result.exit_code == 2
    assert "'abc' is not a number" in result.output
    assert gw.groups() == []


def test_delete_removes_the_group_and_flush_does_not_bring_it_back(gw: Gateway) -> None:
    """`delete` removes the group; a later flush does not push it again."""
    config = load_config(gateway="http://127.0.0.1:1", budget=0.2, timeout=0.2)
    with job_metrics("retired", config=config):
        pass  # recorded, not delivered
    result = invoke("delete", "--job", "retired")
    assert result.exit_code == 0, result.output
    assert "deleted group job=retired" in result.output
    assert invoke("flush").output.strip() == "nothing to deliver"
    assert gw.groups() == []


def test_status_problems_first_and_json(gw: Gateway) -> None:
    """`status` lists groups with a problem first: a failed last run, an overdue job."""
    with job_metrics("fine", expect_every="1h"):
        pass
    with pytest.raises(RuntimeError), job_metrics("broken"):
        raise RuntimeError("boom")
    result = invoke("status")
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].split() [:2] == ["JOB", "INSTANCE"]
    assert lines[1].startswith("broken") and "last run: failure" in lines[1]
    assert lines[2].startswith("fine") and lines[2].endswith("ok")
    data = json.loads(invoke("status", "--json").output)
    assert [(g["job"], g["problems"]) for g in data] == [
        ("broken", ["last run: failure"]), ("fine", [])]
    assert data[1]["expected_interval_seconds"] == 3960
    assert 0 <= data[1]["last_success_age_seconds"] < 60


def test_status_of_an_empty_gateway(gw: Gateway) -> None:
    """An empty gateway says so."""
    result = invoke("status")
    assert result.exit_code == 0 and "holds no groups" in result.output


def test_status_problem_rules() -> None:
    """Overdue, never succeeded, running too long and failing pushes are problems."""
    from jobreport.commands.status import gateway_status

    now = 100_000.0
    groups = [
        {"labels": {"job": "overdue", "instance": "a"},
         "jobreport_last_success_timestamp_seconds": family(now - 7200),
         "jobreport_expected_interval_seconds": family(3600)},
        {"labels": {"job": "never", "instance": "a"},
         "jobreport_last_start_timestamp_seconds": family(now - 7200),
         "jobreport_expected_interval_seconds": family(3600)},
        {"labels": {"job": "stuck", "instance": "a"},
         "jobreport_running": family(1),
         "jobreport_last_start_timestamp_seconds": family(now - 600),
         "jobreport_max_runtime_seconds": family(60)},
        {"labels": {"job": "pushfail", "instance": "a"},
         "push_time_seconds": family(now - 100), "push_failure_time_seconds": family(now - 5)},
        {"labels": {"job": "skipped", "instance": "a"},
         "jobreport_last_outcome": {"metrics": [
             {"labels": {"outcome": "skipped"}, "value": "1"},
             {"labels": {"outcome": "success"}, "value": "0"}]}},
        {"labels": {"job": "fresh", "instance": "a"},
         "jobreport_last_success_timestamp_seconds": family(now - 10),
         "jobreport_expected_interval_seconds": family(3600),
         "push_time_seconds": family(now - 10), "push_failure_time_seconds": family(0)},
    ]
    result = gateway_status(load_config(), sinks=[FakeGateway(groups)],  # type: ignore[list-item]
                            now=now).groups
    problems = {g.job: g.problems for g in result}
    assert problems == {
        "overdue": ("overdue",),
        "never": ("overdue: never succeeded",),
        "stuck": ("running too long",),
        "pushfail": ("pushes failing",),
        "skipped": (),
        "fresh": (),
    }
    assert [g.job for g in result][-2:] == ["fresh", "skipped"]


def test_status_retires_the_groups_of_hosts_that_are_gone() -> None:
    """As the shipped rules do: a group with retire_after whose last start is older than
    that while another instance of the job started later is retired (no problems, shown so,
    `--check` passes); the newest group, one without retire_after, one whose other instance
    differs in another label too, and a job alone are not."""
    from jobreport.commands.status import gateway_status
    from jobreport.cli.formatting import status_table

    now = 100_000.0

    def group(job: str, instance: str, start: float, retire: float | None = None,
              **labels: str) -> dict[str, Any]:
        found: dict[str, Any] = {
            "labels": {"job": job, "instance": instance, **labels},
            "jobreport_last_start_timestamp_seconds": family(start),
            "jobreport_last_success_timestamp_seconds": family(start + 1),
            "jobreport_expected_interval_seconds": family(600)}
        if retire is not None:
            found["jobreport_retire_after_seconds"] = family(retire)
        return found

    groups = [
        group("fleet", "old", now - 7200, 3600), group("fleet", "new", now - 60, 3600),
        group("plain", "old", now - 7200), group("plain", "new", now - 60),
        group("alone", "gone", now - 7200, 3600),
        group("other", "old", now - 7200, 3600, db="a"),
        group("other", "new", now - 60, 3600, db="b"),
    ]
    result = gateway_status(load_config(), sinks=[FakeGateway(groups)],  # type: ignore[list-item]
                            now=now).groups
    retired = {(g.job, g.instance) for g in result if g.retired}
    assert retired == {("fleet", "old")}
    [old] = [g for g in result if (g.job, g.instance) == ("fleet", "old")]
    assert old.problems == () and old.to_json()["retired"] is True
    assert "retired: a later instance runs on" in status_table(result)
    troubled = {(g.job, g.instance) for g in result if g.problems}
    assert troubled == {("plain", "old"), ("alone", "gone"), ("other", "old")}


# -- history and flush -------------------------------------------------------------------


def test_history_table_filters_and_json() -> None:
    """`history` shows runs newest first; --outcome, --since, JOB and --limit filter."""
    config = load_config()
    with job_metrics("alpha", config=config) as job:
        job.set_size(2048)
        job.add_items(3)
    with pytest.raises(ValueError), job_metrics("beta", config=config):
        raise ValueError("x")
    table = invoke("history")
    assert table.exit_code == 0, table.output
    lines = table.output.splitlines()
    assert lines[0].split()[:3] == ["ID", "STARTED", "JOB"]
    assert "beta" in lines[1] and "failure" in lines[1]
    assert "alpha" in lines[2] and "2.0 KiB" in lines[2] and "success" in lines[2]
    data = json.loads(invoke("history", "--json").output)
    assert [r["job"] for r in data] == ["beta", "alpha"]
    assert [r["job"] for r in json.loads(invoke("history", "--json", "alpha").output)] == [
        "alpha"]
    only_failed = json.loads(invoke("history", "--json", "--outcome", "failure").output)
    assert [r["job"] for r in only_failed] == ["beta"]
    assert len(json.loads(invoke("history", "--json", "--limit", "1").output)) == 1
    assert json.loads(invoke("history", "--json", "--since", "1h").output) == data
    tomorrow = time.strftime("%Y-%m-%d", time.localtime(time.time() + 86400))
    assert json.loads(invoke("history", "--json", "--since", tomorrow).output) == []
    assert "no runs recorded for job gamma" in invoke("history", "gamma").output


def test_history_of_one_run_and_a_missing_one() -> None:
    """`history --run ID` shows one run; an unknown id is a one-line error, exit 1."""
    with job_metrics("solo", config=load_config()) as job:
        job.gauge("tables", 3)
    run_id = json.loads(invoke("history", "--json").output)[0]["id"]
    shown = invoke("history", "--run", str(run_id))
    assert shown.exit_code == 0
    assert "solo" in shown.output and "tables" in shown.output
    as_json = json.loads(invoke("history", "--run", str(run_id), "--json").output)
    assert as_json["id"] == run_id
    missing = CliRunner().invoke(main, ["history", "--run", "9999"])
    assert missing.exit_code == 1
    assert missing.output.startswith("jobreport: error: no run 9999")


def test_flush_delivers_pending_runs(gateway: Gateway) -> None:
    """Runs recorded while no gateway was configured are delivered by `flush`."""
    for _ in range(3):
        with job_metrics("later", config=load_config()):
            pass
    result = invoke("flush", "--gateway", gateway.url)
    assert result.exit_code == 0, result.output
    assert "delivered 1 group(s) carrying 3 run(s)" in result.output
    assert gateway.samples("later")['jobreport_runs_total{outcome="success"}'] == 3
    assert invoke("flush", "--gateway", gateway.url).output.strip() == "nothing to deliver"


def test_flush_all_restores_a_gateway_that_lost_its_data(gateway: Gateway) -> None:
    """`flush --all` pushes every known group again, delivered or not."""
    with job_metrics("kept", config=load_config(gateway=gateway.url)):
        pass
    gateway.restart()  # no persistence: the gateway forgot everything
    assert gateway.groups() == []
    assert invoke("flush", "--gateway", gateway.url).output.strip() == "nothing to deliver"
    result = invoke("flush", "--all", "--gateway", gateway.url)
    assert result.exit_code == 0, result.output
    assert "delivered 1 group(s)" in result.output
    assert gateway.samples("kept")["jobreport_last_run_success"] == 1


def test_flush_with_the_gateway_down_exits_3() -> None:
    """A failed flush names the group and exits 3."""
    with job_metrics("later", config=load_config()):
        pass
    result = CliRunner().invoke(main, ["flush"], env={
        "JOBREPORT_GATEWAY": "http://127.0.0.1:1", "JOBREPORT_BUDGET": "0.3",
        "JOBREPORT_TIMEOUT": "0.3"})
    assert result.exit_code == 3
    assert "flush of job later failed: cannot reach the Pushgateway" in result.output
    assert "1 group(s) not delivered" in result.output


# -- check -------------------------------------------------------------------------------


def test_check_all_good(gw: Gateway, tmp_path: Path) -> None:
    """With a reachable gateway and a fresh store `check` exits 0 and names its sources."""
    result = invoke("check", "--db", str(tmp_path / "x.db"))
    assert result.exit_code == 0, result.output
    out = result.output
    assert "[env JOBREPORT_GATEWAY]" in out
    assert f"db: sqlite:///{tmp_path / 'x.db'}  [flag]" in out
    assert "Pushgateway 1.5.1" in out
    assert "schema: version" in out


def test_check_masks_secrets(gw: Gateway, tmp_path: Path) -> None:
    """Passwords and tokens never appear; the database password is masked."""
    secret_file = tmp_path / "token"
    secret_file.write_text("tok-very-secret\n")
    result = invoke("check", JOBREPORT_PASSWORD="pw-very-secret", JOBREPORT_USERNAME="me",
                    JOBREPORT_TOKEN_FILE=str(secret_file))
    assert "pw-very-secret" not in result.output and "tok-very-secret" not in result.output
    assert "password: set (hidden)" in result.output
    assert mask_url("postgresql://u:hunter2@db/x") == "postgresql://u:***@db/x"


def test_check_fails_without_gateway_and_with_a_bad_setting() -> None:
    """No gateway, or a bad value, makes `check` exit 1 and say what is wrong."""
    result = CliRunner().invoke(main, ["check"], env={"JOBREPORT_TIMEOUT": "soon"})
    assert result.exit_code == 1
    assert "FAIL timeout:" in result.output and "[env JOBREPORT_TIMEOUT]" in result.output
    assert "FAIL configured: no Pushgateway set" in result.output


def test_check_reports_unreachable_gateway_and_pending_runs() -> None:
    """An unreachable gateway fails; undelivered runs are a warning naming `flush`, in the
    gateway's section (each sink says what it has not received)."""
    config = load_config(gateway="http://127.0.0.1:1", timeout=0.3, budget=0.3)
    with job_metrics("pending", config=config):
        pass
    report = run_checks(config)
    by_name = {(c.section, c.name): c for c in report.checks}
    assert by_name[("pushgateway", "reachable")].status == FAIL
    assert by_name[("pushgateway", "pending")].status == WARN
    assert "jobreport flush" in by_name[("pushgateway", "pending")].detail
    assert by_name[("store", "writable")].status == OK
    assert not report.ok


def test_check_unwritable_store(tmp_path: Path) -> None:
    """A store nobody can write is reported."""
    if os.geteuid() == 0:
        # root writes anything; an unusable URL stands in for an unwritable store
        report = run_checks(load_config(db="sqlite:////proc/nope/x.db"))
    else:  # pragma: no cover - depends on the user running the tests
        directory = tmp_path / "ro"
        directory.mkdir()
        directory.chmod(0o500)
        report = run_checks(load_config(db=str(directory / "x.db")))
    assert any(c.section == "store" and c.status == FAIL for c in report.checks)


# -- rules -------------------------------------------------------------------------------

PROMTOOL = shutil.which("promtool") or "/usr/bin/promtool"


def write_config(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "jobreport.toml"
    path.write_text(text)
    return path


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([PROMTOOL, *args], capture_output=True, text=True, timeout=60,
                          check=False)


def test_rules_pass_promtool_and_its_unit_tests(tmp_path: Path) -> None:
    """The generated guards pass `promtool check rules` and the monitoring unit tests
    written for the example file."""
    config = write_config(tmp_path, '[jobs.backup]\nexpect_every = "24h"\n'
                                    '[jobs.analysis]\nlabels = { team = "data" }\n')
    result = invoke("rules", "--config", str(config))
    assert result.exit_code == 0, result.output
    rules_file = tmp_path / "generated.yml"
    rules_file.write_text(result.output)
    checked = promtool("check", "rules", str(rules_file))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "2 rules found" in checked.stdout
    unit = (REPO / "monitoring/tests/jobreport-absent.test.yml").read_text()
    unit = unit.replace("../rules/jobreport-absent.example.yml", str(rules_file))
    test_file = tmp_path / "absent.test.yml"
    test_file.write_text(unit)
    tested = promtool("test", "rules", str(test_file))
    assert tested.returncode == 0, tested.stdout + tested.stderr


def test_rules_escape_awkward_names(tmp_path: Path) -> None:
    """Quotes, backslashes, spaces and unicode in job names and labels stay valid."""
    config = write_config(tmp_path, '[jobs."we\\"ird \\\\ jöb"]\n'
                                    'labels = { path = "/var/a b" }\n[jobs.plain]\n')
    result = invoke("rules", "--config", str(config))
    rules_file = tmp_path / "r.yml"
    rules_file.write_text(result.output)
    checked = promtool("check", "rules", str(rules_file))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert selector({"job": 'a"b'}) == '{job="a\\"b"}'


def test_rules_without_jobs_is_a_valid_empty_file(tmp_path: Path) -> None:
    """No configured jobs: a notice on stderr and a rules file promtool accepts."""
    result = CliRunner().invoke(main, ["rules"])
    assert result.exit_code == 0
    assert "no [jobs.NAME] sections" in result.output
    text = absent_rules(load_config())
    rules_file = tmp_path / "empty.yml"
    rules_file.write_text(text)
    assert promtool("check", "rules", str(rules_file)).returncode == 0


def test_rules_for_named_jobs_and_namespace(tmp_path: Path) -> None:
    """--job picks the jobs; the configured namespace names the metrics."""
    result = invoke("rules", "--job", "one", JOBREPORT_NAMESPACE="acme")
    assert result.exit_code == 0
    assert 'absent(acme_last_end_timestamp_seconds{job="one"})' in result.output
    assert 'absent(acme_running{job="one"})' in result.output
