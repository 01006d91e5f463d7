"""Bad input: names that are invalid, empty, very long or unicode; label values with ``/``,
newlines, quotes and emoji; metric values NaN, infinite, negative, huge; a malformed
``JOBREPORT_METRICS_FILE``; bad durations and URLs. Each gets a clear error or is encoded
correctly: never a traceback, never a corrupted group in the gateway.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path
from typing import Any

import pytest

from jobreport import ConfigError, InvalidNameError, job_metrics, load_config
from jobreport.config import Config
from tests.conftest import Gateway
from tests.faults import assert_no_traceback, cli_env, run_cli


@pytest.fixture
def config(gateway: Gateway, tmp_path: Path) -> Config:
    return load_config(env={}, gateway=gateway.url, db=f"sqlite:///{tmp_path / 's.db'}",
                       instance="h1", budget="60s", timeout="10s")  # must land, busy or not


def assert_groups_intact(gateway: Gateway) -> None:
    """Every group the gateway holds has a job label and a successful last push."""
    for group in gateway.groups():
        assert group["labels"].get("job"), group["labels"]
        assert group["last_push_successful"] is True, group


# --- names --------------------------------------------------------------------------------

BAD_JOBS: list[Any] = ["", "   ", "x" * 2000, None, 42, b"bytes"]
BAD_LABEL_NAMES = ["", "1abc", "a-b", "a b", "__reserved", "job", "instance", "naïve", "é"]
BAD_METRIC_NAMES = ["", "1abc", "a-b", "a b", "__x", "jobreport_mine", "push_time_seconds",
                    "ünicode", "x" * 0 + "with.dot"]


@pytest.mark.parametrize("job", BAD_JOBS, ids=repr)
def test_bad_job_names_raise_before_the_body(job: Any, config: Config,
                                             gateway: Gateway) -> None:
    """An invalid job name raises InvalidNameError at once; the body never runs."""
    ran = []
    with pytest.raises(InvalidNameError) as raised, job_metrics(job, config=config):
        ran.append(True)
    assert ran == []
    assert "job name" in str(raised.value) and len(str(raised.value)) < 200
    assert gateway.groups() == []


@pytest.mark.parametrize("name", BAD_LABEL_NAMES)
def test_bad_label_names_raise(name: str, config: Config, gateway: Gateway) -> None:
    with pytest.raises(InvalidNameError) as raised:
        job_metrics("labels", labels={name: "v"}, config=config)
    assert "label name" in str(raised.value)
    assert gateway.groups() == []


@pytest.mark.parametrize("name", BAD_METRIC_NAMES)
def test_bad_metric_names_raise_inside_the_body(name: str, config: Config,
                                                gateway: Gateway) -> None:
    """job.gauge() with a bad name raises InvalidNameError in the body; the run is then a
    failure like any other exception, and the group stays well formed."""
    with pytest.raises(InvalidNameError), job_metrics("metrics", config=config) as job:
        job.gauge(name, 1)
    assert job.outcome == "failure"
    s = gateway.samples("metrics", instance="h1")
    assert s["jobreport_last_exit_code"] == 1
    assert_groups_intact(gateway)


@pytest.mark.parametrize("job", ["sauvegarde-é", "备份", "backup 🚀", "a/b", "with space",
                                 "x" * 1024, "dots.and-dashes"])
def test_unusual_but_valid_job_names_are_encoded(job: str, config: Config,
                                                 gateway: Gateway) -> None:
    """Unicode, slashes, spaces and 1024 characters: the group arrives under that exact
    job name."""
    with job_metrics(job, config=config):
        pass
    [group] = gateway.groups()
    assert group["labels"]["job"] == job
    assert gateway.samples(job, instance="h1")["jobreport_last_run_success"] == 1


@pytest.mark.parametrize("value", ["a/b", "/", "//", "line\nbreak", 'quote"s', "back\\slash",
                                   "emoji 🎉", "", " padded ", "=", "%2F", "@base64", "tab\t",
                                   "€" * 300])
def test_label_values_round_trip(value: str, config: Config, gateway: Gateway) -> None:
    """Any label value reaches the gateway exactly, in its own group."""
    with job_metrics("values", labels={"where": value}, config=config):
        pass
    groups = gateway.groups()
    assert len(groups) == 1
    assert groups[0]["labels"].get("where", "") == value
    assert_groups_intact(gateway)


def test_too_long_label_value_is_refused(config: Config) -> None:
    with pytest.raises(InvalidNameError) as raised:
        job_metrics("values", labels={"where": "x" * 5000}, config=config)
    assert "longer than" in str(raised.value)
    assert len(str(raised.value)) < 200  # the value is not echoed whole


# --- values -------------------------------------------------------------------------------


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf, -1.0, 0.0, 1e308, -1e308,
                                   5e-324, 2**63, 2**70])
def test_gauge_values_are_pushed_exactly(value: float, config: Config,
                                         gateway: Gateway) -> None:
    """NaN, infinities, negative, huge and tiny values arrive as themselves."""
    with job_metrics("values", config=config) as job:
        job.gauge("odd_value", value)
    got = gateway.samples("values", instance="h1")["odd_value"]
    if math.isnan(value):
        assert math.isnan(got)
    else:
        assert got == float(value)
    assert_groups_intact(gateway)


@pytest.mark.parametrize("value", ["12", None, True, [1], object()],
                         ids=["str", "None", "True", "list", "object"])
def test_non_numbers_are_refused(value: Any, config: Config) -> None:
    with pytest.raises(InvalidNameError), job_metrics("values", config=config) as job:
        job.set_size(value)
    with pytest.raises(InvalidNameError), job_metrics("values", config=config) as job:
        job.gauge("g", value)


def test_nan_size_and_items_are_refused(config: Config) -> None:
    with pytest.raises(InvalidNameError), job_metrics("values", config=config) as job:
        job.set_size(math.nan)
    with pytest.raises(InvalidNameError), job_metrics("values", config=config) as job:
        job.add_items(math.nan)


def test_huge_and_negative_size(config: Config, gateway: Gateway) -> None:
    """A size or item count out of its range (0 to 2^63) is refused at the call, naming
    the range; a negative increment may correct a count, not take it below 0 (issue 24)."""
    with job_metrics("values", config=config) as job:
        for bad in (2**80, -1, math.inf, 10**400):
            with pytest.raises(InvalidNameError, match=r"0 to 2\^63"):
                job.set_size(bad)
        job.add_items(5)
        job.add_items(-2)
        with pytest.raises(InvalidNameError, match=r"0 to 2\^63"):
            job.add_items(-4)
        job.set_size(2**40)
    s = gateway.samples("values", instance="h1")
    assert s["jobreport_last_size_bytes"] == float(2**40)
    assert s["jobreport_last_items"] == 3


# --- durations and URLs -------------------------------------------------------------------

BAD_DURATIONS = ["", "abc", "-5s", "5x", "1h1h", "1m1h", "nan", "inf", "1e400", "5 s s"]


@pytest.mark.parametrize("value", BAD_DURATIONS)
def test_bad_durations_in_the_library(value: str) -> None:
    with pytest.raises(ConfigError) as raised:
        job_metrics("d", expect_every=value)
    assert "expect_every" in str(raised.value)
    with pytest.raises(ConfigError) as raised:
        load_config(env={"JOBREPORT_BUDGET": value or "x"})
    assert "JOBREPORT_BUDGET" in str(raised.value)


@pytest.mark.parametrize("url", ["ftp://host:9091", "http://", "http://host:99999",
                                 "http://host:port", "http://host/?q=1", "http://host/#f",
                                 "file:///etc/passwd", "javascript:alert(1)"])
def test_bad_gateway_urls(url: str) -> None:
    """A bad URL is a ConfigError naming the setting; with strict=False it means "no
    gateway" and a warning, never a crash."""
    with pytest.raises(ConfigError) as raised:
        load_config(env={"JOBREPORT_GATEWAY": url})
    assert "gateway" in str(raised.value)
    assert load_config(env={"JOBREPORT_GATEWAY": url}, strict=False).gateway is None


def test_job_runs_with_a_bad_gateway_url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                         caplog: pytest.LogCaptureFixture) -> None:
    """job_metrics with a bad URL in the environment still runs the body and keeps the run."""
    monkeypatch.setenv("JOBREPORT_GATEWAY", "ftp://nope")
    monkeypatch.setenv("JOBREPORT_DB", f"sqlite:///{tmp_path / 's.db'}")
    ran = []
    with job_metrics("badurl") as job:
        ran.append(True)
    assert ran == [True] and job.outcome == "success"
    assert "gateway" in caplog.text
    assert_no_traceback(caplog.text)


# --- the CLI ------------------------------------------------------------------------------


def cli(tmp_path: Path, gateway: Gateway | None = None, **extra: str) -> dict[str, str]:
    settings = {"JOBREPORT_DB": f"sqlite:///{tmp_path / 's.db'}", "JOBREPORT_INSTANCE": "h1"}
    if gateway is not None:
        settings["JOBREPORT_GATEWAY"] = gateway.url
    return cli_env(**{**settings, **extra})


@pytest.mark.parametrize("args", [
    ["run", "--timeout", "abc", "--", "true"],
    ["run", "--expect-every", "-1h", "--", "true"],
    ["run", "--kill-after", "1x", "--", "true"],
    ["run", "--label", "no-equals", "--", "true"],
    ["run", "--label", "1bad=x", "--", "true"],
    ["run", "--label", "instance=x", "--", "true"],
    ["run", "--job", "", "--", "true"],
    ["run", "--job", "x" * 5000, "--", "true"],
    ["run", "--tail", "-1", "--", "true"],
    ["run", "--"],
    ["history", "--since", "yesterday-ish"],
    ["history", "--limit", "0"],
    ["flush", "--gateway", "ftp://x"],
], ids=lambda a: " ".join(a)[:40])
def test_cli_bad_arguments_give_one_clear_line(args: list[str], tmp_path: Path,
                                               gateway: Gateway) -> None:
    """Usage errors exit 2 with a short message and no traceback; nothing is pushed."""
    proc = run_cli(args, cli(tmp_path, gateway))
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    assert_no_traceback(proc.stderr)
    assert proc.stderr.strip()
    assert len(proc.stderr) < 2000
    assert gateway.groups() == []


@pytest.mark.parametrize("args", [
    ["--gateway", "ftp://x"], ["--gateway", "http://host:99999"], ["--db", " "],
    ["--config", "/nonexistent/jobreport.toml"], ["--remote-write", "gopher://x"],
    ["--textfile-dir", "x" * 300],
], ids=lambda a: " ".join(a)[:40])
def test_run_refuses_a_bad_setting_typed_as_a_flag(args: list[str], tmp_path: Path) -> None:
    """A setting typed as a flag of `run` is held to its converter before the command
    starts: exit 2 naming the flag, nothing run (the same value in the environment only
    warns, below: a misconfigured environment never stops a job)."""
    trace = tmp_path / "ran"
    proc = run_cli(["run", *args, "--job", "cfg", "--", "touch", str(trace)], cli(tmp_path))
    assert proc.returncode == 2, proc.stderr
    assert args[0] in proc.stderr and len(proc.stderr) < 2000
    assert_no_traceback(proc.stderr)
    assert not trace.exists()


@pytest.mark.parametrize("env_var, value", [
    ("JOBREPORT_GATEWAY", "ftp://x"), ("JOBREPORT_GATEWAY", "http://host:99999"),
    ("JOBREPORT_LABELS", "a"), ("JOBREPORT_TLS_VERIFY", "maybe"),
    ("JOBREPORT_DB", "notadb://x"),
])
def test_run_still_runs_the_command_with_bad_settings(env_var: str, value: str,
                                                      tmp_path: Path) -> None:
    """A misconfigured environment never stops the job: the command runs, its exit code is
    kept, and a warning names the setting. (A numeric setting out of its range is the
    exception, issue 24: exit 2 before anything runs, tests/test_ranges.py.)"""
    env = cli(tmp_path, **{env_var: value})
    proc = run_cli(["run", "--job", "cfg", "--", "sh", "-c", "echo ran; exit 3"], env)
    assert proc.returncode == 3, proc.stderr
    assert proc.stdout == "ran\n"
    assert_no_traceback(proc.stderr)
    assert proc.stderr.strip()


_WRITER = r"""
import os
with open(os.environ["JOBREPORT_METRICS_FILE"], "a", encoding="utf-8") as f:
    f.write("good_metric 42\n")
    f.write("no_value_here\n")
    f.write("bad-name 1\n")
    f.write("jobreport_running 5\n")
    f.write("nan_metric NaN\n")
    f.write("inf_metric +Inf\n")
    f.write("word_metric twelve\n")
    f.write('lbl{a="x",} 1\n')
    f.write('lbl2{a="unterminated} 1\n')
    f.write('with_ts 1 1700000000000\n')
    f.write("# TYPE typed histogramish\n")
    f.write("\x00\x01 binary\n")
    f.write("emoji_🎉 1\n")
    f.write("x" * 100000 + " 1\n")
    f.write("labelled{path=\"/a/b\",q=\"say \\\"hi\\\"\"} 7\n")
    f.write("good_metric 43\n")
"""


def test_malformed_metrics_file(tmp_path: Path, gateway: Gateway) -> None:
    """Garbage lines in JOBREPORT_METRICS_FILE are reported by line number and skipped; the
    good lines are pushed; the run succeeds; the group stays well formed."""
    env = cli(tmp_path, gateway)
    proc = run_cli(["run", "--job", "mfile", "--", sys.executable, "-c", _WRITER], env)
    assert proc.returncode == 0
    assert_no_traceback(proc.stderr)
    assert "line 2" in proc.stderr and "line 3" in proc.stderr
    assert len(proc.stderr) < 20_000  # the 100 kB line is not echoed whole
    s = gateway.samples("mfile", instance="h1")
    assert s["good_metric"] == 43  # a later line replaces an earlier one
    assert s["jobreport_running"] == 0  # not overridden by the file
    assert s['labelled{path="/a/b",q="say "hi""}'] == 7  # label values unescaped
    assert "with_ts" not in s  # a sample with a timestamp is skipped, not sent
    assert s["jobreport_last_run_success"] == 1
    assert_groups_intact(gateway)


def test_metrics_file_that_is_binary_or_huge(tmp_path: Path, gateway: Gateway) -> None:
    """A metrics file of random bytes, or larger than the read limit: a warning, the run
    still reported."""
    env = cli(tmp_path, gateway)
    writer = ("import os\n"
              "with open(os.environ['JOBREPORT_METRICS_FILE'], 'wb') as f:\n"
              "    f.write(os.urandom(4096))\n"
              "    f.write(b'ok_metric 1\\n' * 200000)\n")
    proc = run_cli(["run", "--job", "bin", "--", sys.executable, "-c", writer], env)
    assert proc.returncode == 0
    assert_no_traceback(proc.stderr)
    s = gateway.samples("bin", instance="h1")
    assert s["jobreport_last_run_success"] == 1
    assert_groups_intact(gateway)
