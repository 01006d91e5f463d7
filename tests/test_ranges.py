"""Every number a user types is held to its documented range at the door (issue 24 item 3):
out of range is exit 2 (or the door's own error) naming the range, before anything runs;
settings that cannot work together are refused with the reason; a number the store cannot
hold never loses a run. Each through the real command where there is one."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from jobreport import ConfigError, InvalidNameError, job_metrics, load_config
from jobreport.spec import JobSpec
from tests.conftest import Gateway
from tests.faults import assert_no_traceback, cli_env, run_cli

pytestmark = pytest.mark.integration  # jobreport end to end as a process

DIGITS_25 = "1234567890123456789012345"


def _strict_json(text: str) -> object:
    """JSON as a strict parser reads it: NaN and Infinity are not JSON."""
    def refuse(word: str) -> object:
        raise ValueError(f"{word} is not JSON")
    return json.loads(text, parse_constant=refuse)


@pytest.mark.parametrize(("args", "env", "said"), [
    (["--alert-after-failures", DIGITS_25], {}, "1 to 10000"),
    ([], {"JOBREPORT_ALERT_AFTER_FAILURES": DIGITS_25}, "1 to 10000"),
    (["--alert-after-failures", "0"], {}, "1 to 10000"),
    (["--tail", "10001"], {}, "0 to 10000"),
    (["--tail", "-1"], {}, "0 to 10000"),
    (["--timeout", "1e400"], {}, "not a duration"),
    (["--timeout", "101y"], {}, "100y"),
    (["--timeout", "0s"], {}, "more than 0s"),
    (["--kill-after", "101y"], {}, "0s to 100y"),
    (["--heartbeat", "0"], {}, "more than 0s"),
    (["--expect-every", "0s"], {}, "more than 0s"),
    (["--grace", "99999999999999999999y"], {}, "100y"),
    (["--max-runtime", "nan"], {}, "not a duration"),
    ([], {"JOBREPORT_MIN_RUNTIME": "-1s"}, "not a duration"),
    ([], {"JOBREPORT_TIMEOUT": "0"}, "JOBREPORT_TIMEOUT: '0' is out of range: more than 0s"),
    ([], {"JOBREPORT_TIMEOUT": "2h"}, "at most 1h"),
    ([], {"JOBREPORT_BUDGET": "1e400"}, "JOBREPORT_BUDGET"),
    ([], {"JOBREPORT_START_BUDGET": "5m"}, "0s to 1m"),
    ([], {"JOBREPORT_KEEP_RUNS": DIGITS_25}, "JOBREPORT_KEEP_RUNS: '1234567890123456789012345'"
                                             " is out of range: 0 to 1000000000"),
    ([], {"JOBREPORT_KEEP_DAYS": "-1"}, "JOBREPORT_KEEP_DAYS"),
    (["--timezone", "leapseconds"], {}, "not a time zone"),
    (["--timezone", "zone1970.tab"], {}, "IANA"),
    (["--schedule", "0 0 30 2 *"], {}, "never"),
    (["--min-runtime", "2h", "--max-runtime", "1h"], {}, "must be shorter"),
    (["--min-runtime", "2h", "--timeout", "1h"], {}, "must be shorter than --timeout"),
    (["--expect-every", "1h", "--grace", "2h"], {}, "longer than --expect-every"),
    (["--schedule", "@hourly", "--grace", "90m"], {}, "shortest gap"),
    ([], {"JOBREPORT_SCHEDULE": "@daily", "JOBREPORT_GRACE": "2d"}, "shortest gap"),
])
def test_out_of_range_is_exit_2_before_anything_runs(args: list[str], env: dict[str, str],
                                                     said: str, tmp_path: Path) -> None:
    """The value is refused with its range (or the reason), exit 2, and the command that
    would leave a trace never ran: no file, no run in the store."""
    trace = tmp_path / "trace"
    settings = cli_env(JOBREPORT_DB=str(tmp_path / "s.db"), **env)
    done = run_cli(["run", "--job", "ranged", *args, "--", "touch", str(trace)], settings)
    assert_no_traceback(done.stderr)
    assert done.returncode == 2, done.stderr
    assert said in done.stderr, done.stderr
    assert not trace.exists()
    assert not (tmp_path / "s.db").exists() or "ranged" not in run_cli(
        ["history"], settings).stdout


@pytest.mark.parametrize(("setting", "value", "said"), [
    ("timeout", "0", "more than 0s, at most 1h"),
    ("timeout", "61m", "more than 0s, at most 1h"),
    ("budget", "1e400", "not a duration"),
    ("budget", "2h", "0s to 1h"),
    ("start_budget", "90s", "0s to 1m"),
])
def test_settings_are_held_to_their_ranges_at_every_door(setting: str, value: str, said: str,
                                                         tmp_path: Path) -> None:
    """The environment, the config file and a Python keyword refuse the same value with
    the range; `check` names it."""
    variable = f"JOBREPORT_{setting.upper()}"
    with pytest.raises(ConfigError, match=said):
        load_config(env={variable: value})
    with pytest.raises(ConfigError, match=said):
        load_config(env={}, **{setting: value})
    config = tmp_path / "jobreport.toml"
    config.write_text(f'{setting} = "{value}"\n')
    with pytest.raises(ConfigError, match=said):
        load_config(env={"JOBREPORT_CONFIG": str(config)})
    done = run_cli(["check"], cli_env(**{variable: value}))
    assert done.returncode == 1 and said in done.stdout, done.stdout


def test_history_numbers_are_held_to_their_ranges(tmp_path: Path) -> None:
    """--limit of 25 digits and a --since no clock can hold are usage errors naming why."""
    env = cli_env(JOBREPORT_DB=str(tmp_path / "s.db"))
    done = run_cli(["history", "--limit", DIGITS_25], env)
    assert done.returncode == 2 and "1<=x<=1000000000" in done.stderr
    for since, said in (("0001-01-01", "out of range"), ("101y", "0s to 100y")):
        done = run_cli(["history", "--since", since], env)
        assert done.returncode == 2 and said in done.stderr, done.stderr


def test_the_metrics_file_holds_figures_and_values_to_their_ranges(tmp_path: Path) -> None:
    """A size of 1e400, a negative count, a value beyond a 64-bit float: each line is
    skipped with a warning naming the range, and the run keeps its outcome and the rest;
    NaN and +Inf spelled out are values like any other, and `history --json` stays JSON."""
    env = cli_env(JOBREPORT_DB=str(tmp_path / "s.db"))
    lines = ("jobreport_last_size_bytes 1e400\njobreport_last_items -5\nbig 1e400\n"
             "kept_nan NaN\nkept_inf +Inf\nkept 42\n")
    done = run_cli(["run", "--job", "mf", "--", "sh", "-c",
                    f"printf '{lines}' >> \"$JOBREPORT_METRICS_FILE\"; exit 3"], env)
    assert done.returncode == 3
    assert "line 1:" in done.stderr and "64-bit float" in done.stderr
    assert "line 2:" in done.stderr and "0 to 2^63" in done.stderr
    assert "line 3:" in done.stderr
    [run] = _strict_json(run_cli(["history", "--json"], env).stdout)  # type: ignore[misc]
    assert (run["outcome"], run["size"], run["items"]) == ("failure", None, None)
    values = {f["name"]: f["samples"][0][2] for f in run["metrics"]}
    assert values == {"kept_nan": "NaN", "kept_inf": "+Inf", "kept": 42.0}


def test_push_holds_its_values_to_their_ranges(gateway: Gateway, tmp_path: Path) -> None:
    """`jobreport push` refuses 1e400 and the run's own figures (each said once), exit 2,
    and pushes nothing."""
    env = cli_env(JOBREPORT_DB=str(tmp_path / "s.db"), JOBREPORT_GATEWAY=gateway.url)
    done = run_cli(["push", "--job", "p", "big=1e400", "jobreport_last_items=3",
                    "jobreport_x=1"], env)
    assert done.returncode == 2, done.stderr
    assert "64-bit float" in done.stderr and "a run's own figures" in done.stderr
    assert done.stderr.count("is reserved") == 1, done.stderr
    assert not any(g["labels"].get("job") == "p" for g in gateway.groups())
    done = run_cli(["push", "--job", "p", "fine=+Inf", "nan=NaN"], env)
    assert done.returncode == 0, done.stderr


def test_python_numbers_out_of_range_never_lose_a_run(tmp_path: Path) -> None:
    """A block's exit code beyond 32 bits, a gauge beyond a float, a size beyond 2^63: the
    API refuses what it can at the call, and the run is recorded whatever the number."""
    config = load_config(env={}, db=str(tmp_path / "s.db"), instance="h1")
    with pytest.raises(SystemExit), job_metrics("exits", config=config):
        raise SystemExit(10**30)
    with job_metrics("figures", config=config) as job:
        with pytest.raises(InvalidNameError, match="64-bit float"):
            job.gauge("huge", 10**400)
        with pytest.raises(InvalidNameError, match=r"0 to 2\^63"):
            job.set_size(10**30)
        job.gauge("infinite", math.inf)
    from jobreport.result import RunResult
    from jobreport.store.rows import RunStart
    from jobreport.store.store import Store

    store = Store(config.db)
    spec = JobSpec("raw", alert_after_failures=10**30)  # made without its door
    store.record_run(RunStart("raw", {"job": "raw"}, 1.0, "h1", spec=spec),
                     RunResult(ended=2.0, duration=1.0, outcome="failure", exit_code=10**30,
                               size=10**400))
    # the same spec given at the end of a run opened first (what the command wrote to the
    # metrics file, laid over its start's spec): the end's writer holds it to its columns too
    run_id = store.open_run(RunStart("late", {"job": "late"}, 1.0, "h1"))
    store.close_run(run_id, RunResult(ended=2.0, duration=1.0, outcome="success",
                                      exit_code=0),
                    spec=JobSpec("late", alert_after_failures=10**30, min_size=10**400))
    runs = {r.job: r for r in store.history()}
    assert runs["exits"].exit_code == 255
    assert runs["figures"].result is not None
    assert runs["raw"].result is not None and runs["raw"].result.size == math.inf
    late = runs["late"]
    assert late.outcome == "success" and late.spec is not None
    assert late.spec.min_size == math.inf
    raw_spec = runs["raw"].spec
    assert raw_spec is not None
    assert late.spec.alert_after_failures == raw_spec.alert_after_failures
