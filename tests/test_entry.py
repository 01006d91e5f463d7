"""The two ways into `jobreport run`: the fast parser (no click) and click's `run` command,
built from the same declarations, must agree on every option and every environment
variable; whatever the fast parser is not sure of goes to click."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click
import pytest

from jobreport.cli import main
from jobreport.cli.entry import FastRun, check_typed_settings, parse_run, run_spec
from jobreport.cli.option_table import (
    COUNT,
    CRON,
    DURATION,
    FLAG,
    PATHS,
    RUN_OPTIONS,
    SETTINGS_OPTIONS,
    ZONE,
    OptionSpec,
)
from jobreport.cli.options import typed_labels, typed_settings
from jobreport.spec import RATIO, SIZE
from jobreport.cli.run import _one_of_interval_and_schedule
from tests.conftest import Gateway

REPO = Path(__file__).resolve().parent.parent
SPECS = RUN_OPTIONS + SETTINGS_OPTIONS

#: Values of each kind, good and bad, as they might be typed or set.
SAMPLES = {
    DURATION: ["90s", "1h30m", "0", "0.5", "300y", "soon", "-5", " 5 ", "1e3", "", "100y"],
    COUNT: ["0", "1", "20", "10000", "10001", "-1", "x", " 7", "3.5", ""],
    FLAG: ["1", "true", "no", "OFF", "maybe", "", " on "],
    PATHS: ["/a:/b", "a::b", "x", ""],
    "text": ["x", "", "a b", "job/x", "k=v", "no-equals", "job=x"],
    CRON: ["0 3 * * 1-5", "@daily", "61 * * * *", "", "@sometimes"],
    ZONE: ["Europe/Berlin", "UTC", "Mars/Olympus", "", "../etc", "leapseconds"],
    SIZE: ["10MB", "1GiB", "1e6", "0", "10M", " 5 kB ", "2EB", "x", ""],
    RATIO: ["50%", "0.5", "0", "100%", "50", " 12.5 % ", "nan", ""],
}


def click_parse(args: list[str], env: dict[str, str]) -> FastRun | None:
    """What click's `run` command makes of `jobreport run ARGS` (None: a usage error)."""
    command = main.commands["run"]
    saved = dict(os.environ)
    os.environ.clear()
    os.environ.update(env)
    try:
        ctx = command.make_context("run", list(args))
    except click.UsageError:
        return None
    finally:
        os.environ.clear()
        os.environ.update(saved)
    with ctx:
        params = dict(ctx.params)
        try:
            _one_of_interval_and_schedule(params)
            labels = typed_labels(params)
        except click.UsageError:
            return None
        settings = typed_settings(params)
    if params["job"] is not None:
        from jobreport.names import check_job

        try:
            check_job(params["job"])
        except Exception:
            return None
    try:
        spec = run_spec(params, labels)  # as `run` makes it: contradictions are usage errors
        check_typed_settings(settings)  # a typed setting is held to its converter
    except ValueError:
        return None
    return FastRun(params, labels, settings, spec)


def cases() -> Iterator[tuple[str, list[str], dict[str, str]]]:
    """(id, argv after `run`, environment) for every option, typed and from each of its
    variables, with every sample of its kind."""
    for spec in SPECS:
        for value in SAMPLES[spec.kind]:
            if spec.kind == FLAG:
                yield f"{spec.flags[0]}", [spec.flags[0], "--", "true"], {}
                yield f"{spec.flags[0]}={value!r}", [f"{spec.flags[0]}={value}", "true"], {}
            else:
                yield f"{spec.flags[0]} {value!r}", [spec.flags[0], value, "--", "true"], {}
                yield f"{spec.flags[0]}={value!r}", [f"{spec.flags[0]}={value}", "true"], {}
            for var in spec.envvars:
                yield f"{var}={value!r}", ["true"], {var: value}
                if spec.kind != FLAG:  # a typed value wins over the variable
                    typed = SAMPLES[spec.kind][0]
                    yield (f"{spec.flags[0]} {typed!r} over {var}={value!r}",
                           [spec.flags[0], typed, "true"], {var: value})


SHAPES = [
    ["--", "ls", "-la"], ["ls", "-la"], ["--job", "x", "ls", "--job", "y"],
    ["--expect-evry", "24h", "--", "true"], ["--help"], ["-h"], ["-q", "--", "true"],
    ["--job"], ["--job", "--lock", "--", "true"], ["-"], [], ["--"], ["--lock=1", "true"],
    ["-qq", "true"], ["--job=x", "true"], ["--job", "a", "--job", "b", "true"],
    ["--label", "a=1", "--label", "b=2", "true"], ["--", "--job", "x"], ["-x", "true"],
    ["--size-path", "/a", "--size-path", "/b", "true"], ["--tail", "5", "--tail", "6", "x"],
    ["--no-instance", "--instance", "h", "true"], ["--gateway", "http://g:9091", "true"],
    ["--timeout", "1h", "--kill-after", "0", "true"], ["--time", "1h", "true"],
]


#: What the fast parser leaves to click although click runs the command: click only warns
#: (a bad lenient variable, both interval variables set) or reads the words its own way
#: (``--job --lock`` names the job "--lock"; ``-qq``).
DEFERRED = [
    (["true"], {"JOBREPORT_QUIET": "maybe"}),
    (["--job", "--lock", "--", "true"], {}),
    (["-qq", "true"], {}),
    (["true"], {"JOBREPORT_SCHEDULE": "@daily", "JOBREPORT_EXPECT_EVERY": "1h"}),
]


def _compare(argv: list[str], env: dict[str, str]) -> None:
    fast = parse_run(argv, env)
    if fast is None:
        # click decides: it refuses what the fast parser declined (a usage error), except
        # for help and the few shapes it only warns about or reads its own way
        if "--help" not in argv and "-h" not in argv and (argv, env) not in DEFERRED:
            assert click_parse(argv, env) is None, (
                f"the fast parser declined {argv} {env}, which click runs: the run is slow")
        return
    slow = click_parse(argv, env)
    assert slow is not None, f"the fast parser accepted {argv} {env}, click refuses it"
    for spec in RUN_OPTIONS:
        assert fast.values[spec.name] == slow.values[spec.name], spec
    assert tuple(fast.values["command"]) == tuple(slow.values["command"])
    assert fast.labels == slow.labels
    assert fast.overrides == slow.overrides
    assert fast.spec == slow.spec


@pytest.mark.parametrize(("argv", "env"), [(c[1], c[2]) for c in cases()],
                         ids=[c[0] for c in cases()])
def test_the_fast_parser_and_click_agree_on_every_option(argv: list[str],
                                                          env: dict[str, str]) -> None:
    """Whatever the fast parser accepts, click accepts with the same values."""
    _compare(argv, env)


@pytest.mark.parametrize("argv", SHAPES, ids=[" ".join(s) or "(none)" for s in SHAPES])
def test_the_fast_parser_and_click_agree_on_the_shape_of_argv(argv: list[str]) -> None:
    """`--`, the command's first word, repeated options, unknown and partial options."""
    _compare(argv, {})


ENV_SHAPES = [
    (["--expect-every", "1h", "true"], {"JOBREPORT_SCHEDULE": "@daily"}),
    (["--schedule", "@daily", "true"], {"JOBREPORT_EXPECT_EVERY": "1h"}),
    (["true"], {"JOBREPORT_SCHEDULE": "@daily", "JOBREPORT_EXPECT_EVERY": "1h"}),
    (["--schedule", "@daily", "--expect-every", "1h", "true"], {}),
]


@pytest.mark.parametrize(("argv", "env"), ENV_SHAPES)
def test_the_fast_parser_and_click_agree_on_interval_against_schedule(
        argv: list[str], env: dict[str, str]) -> None:
    """One of --expect-every and --schedule typed beats the other from the environment."""
    _compare(argv, env)


def test_the_fast_parser_takes_the_common_cases() -> None:
    """The fast way is taken for clean command lines (else it would be no faster)."""
    for argv in (["--job", "b", "--expect-every", "24h", "--", "tar", "-c"], ["ls", "-la"],
                 ["-q", "--lock", "--label", "db=main", "--timeout=2h", "true"]):
        assert parse_run(argv, {"JOBREPORT_RUN_TIMEOUT": "1h"}) is not None, argv
    parsed = parse_run(["ls", "-la"], {})
    assert parsed is not None and parsed.values["command"] == ("ls", "-la")


@pytest.mark.parametrize("argv", [["--help"], ["--expect-evry", "24h", "--", "true"],
                                  ["--timeout", "0", "--", "true"], ["--job"], []])
def test_the_fast_parser_leaves_help_and_errors_to_click(argv: list[str]) -> None:
    """Help and usage errors are click's, on both paths."""
    assert parse_run(argv, {}) is None


@pytest.mark.parametrize("spec", SPECS, ids=repr)
def test_every_declared_option_is_a_click_option_of_run(spec: OptionSpec) -> None:
    """click's `run` has exactly the declared options, with the declared variables."""
    params = {p.name: p for p in main.commands["run"].params}
    param = params[spec.name]
    assert isinstance(param, click.Option)
    assert tuple(param.opts) == spec.flags
    envvars = [param.envvar] if isinstance(param.envvar, str) else list(param.envvar or ())
    assert tuple(envvars) == spec.envvars
    assert {p.name for p in main.commands["run"].params} == {s.name for s in SPECS} | {
        "command"}


# -- the real process -----------------------------------------------------------------------

_PROBE = """
import sys
before = set(sys.modules)  # what the interpreter (and an editable install's finder) loaded
def hook(event, args):
    if event in ("os.posix_spawn", "subprocess.Popen"):
        heavy = ["click", "sqlalchemy", "requests", "prometheus_client", "psutil", "tenacity",
                 "dataclasses", "subprocess", "pathlib", "threading", "typing", "logging",
                 "tomllib", "jobreport.config", "jobreport.config.load", "jobreport.secrets"]
        loaded = [m for m in heavy if m in sys.modules and m not in before]
        sys.stderr.write("LOADED " + json.dumps(loaded) + "\\n")
import json
sys.addaudithook(hook)
sys.argv = ["jobreport", *sys.argv[1:]]
from jobreport.cli import main
main()
"""


def _probe(*args: str, env: dict[str, str]) -> tuple[subprocess.CompletedProcess[str], Any]:
    proc = subprocess.run([sys.executable, "-c", _PROBE, *args], capture_output=True,
                          text=True, env={**env, "PYTHONPATH": str(REPO)}, timeout=60,
                          check=False)
    lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("LOADED ")]
    return proc, json.loads(lines[0][len("LOADED "):]) if lines else None


@pytest.mark.parametrize("options", [
    [], ["--schedule", "@daily", "--timezone", "UTC", "--label", "db=main", "--min-runtime",
         "1s", "--max-runtime", "1h", "--alert-after-failures", "3", "--tail", "5"],
], ids=["plain", "every threshold"])
def test_the_command_starts_before_click_and_the_heavy_packages(isolated_env: Path,
                                                                options: list[str]) -> None:
    """`jobreport run` starts its command with none of click, SQLAlchemy, requests,
    prometheus_client, psutil or tenacity loaded, nor the standard library's dataclasses,
    subprocess, pathlib, threading, typing or logging, nor the settings (see
    docs/architecture.md, the cold path): also when its spec holds every threshold."""
    proc, loaded = _probe("run", "--job", "probe", *options, "--", "true",
                          env=dict(os.environ))
    assert proc.returncode == 0, proc.stderr
    assert loaded == []


def test_a_setting_typed_as_a_flag_is_checked_with_its_converter_alone(
        isolated_env: Path) -> None:
    """A setting typed as a flag of `jobreport run` (a usage error when it is bad: exit 2,
    nothing runs) is checked before the command starts by its converter alone: not the
    settings' loading, typing or the secrets (loaded only to word an error)."""
    proc, loaded = _probe("run", "--job", "probe", "--gateway", "127.0.0.1:9",
                          "--instance", "h1", "--db", str(isolated_env / "s.db"), "--",
                          "true", env=dict(os.environ))
    assert proc.returncode == 0, proc.stderr
    assert loaded == ["jobreport.config"]  # the package, with only its ``values`` room
    bad = subprocess.run([sys.executable, "-m", "jobreport", "run", "--job", "probe",
                          "--gateway", "ftp://ops:s3cret-pw@127.0.0.1:9", "--", "true"],
                         capture_output=True, text=True, timeout=60, check=False)
    assert bad.returncode == 2 and "s3cret-pw" not in bad.stderr, bad.stderr
    assert "use an http:// or https:// URL" in bad.stderr, bad.stderr


_END_PROBE = """
import json, os, sys
real_exit = os._exit
wrapper = os.getpid()  # the output copier is a fork of it, and leaves by os._exit too
def leave(status):
    heavy = ["requests", "urllib3", "prometheus_client", "sqlalchemy", "click", "tenacity",
             "dataclasses"]
    if os.getpid() == wrapper:
        sys.stderr.write("LOADED " + json.dumps([m for m in heavy if m in sys.modules]) + "\\n")
    sys.stderr.flush()
    real_exit(status)
os._exit = leave
sys.argv = ["jobreport", *sys.argv[1:]]
from jobreport.cli import main
main()
"""


def test_the_end_of_a_run_pushes_with_requests_without_prometheus_client(
        isolated_env: Path, gateway: Gateway, tmp_path: Path) -> None:
    """The whole of `jobreport run -- true` against a real Pushgateway sends its push with
    requests (loaded after the command started: the test above) and loads neither
    prometheus_client nor click (nor SQLAlchemy once the SQLite store exists: creating it is
    the one time SQLAlchemy loads): the body is written by jobreport (docs/architecture.md).
    A push that lands at once loads no tenacity, and a run's records are NamedTuples: the
    standard library's dataclasses (with the inspect it imports) are not loaded either, also
    by a scheduled run (its deadlines pushed)."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "JOBREPORT_GATEWAY": gateway.url,
           "JOBREPORT_DB": f"sqlite:///{tmp_path / 's.db'}"}
    scheduled = ["--schedule", "0 3 * * *", "--max-runtime", "1h"]
    for options, expected in (([], ["requests", "urllib3", "sqlalchemy", "dataclasses"]),
                              ([], ["requests", "urllib3"]),
                              (scheduled, ["requests", "urllib3"])):
        proc = subprocess.run([sys.executable, "-c", _END_PROBE, "run", "--job", "lean",
                               "--instance", "h1", *options, "--", "true"],
                              capture_output=True, text=True, env=env, timeout=60,
                              check=False)
        assert proc.returncode == 0, proc.stderr
        lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("LOADED ")]
        assert lines and json.loads(lines[0][len("LOADED "):]) == expected, proc.stderr
    samples = gateway.samples("lean", instance="h1")
    assert samples["jobreport_last_run_success"] == 1
    assert samples['jobreport_runs_total{outcome="success"}'] == 3
    assert samples["jobreport_success_deadline_timestamp_seconds"] > time.time()


def test_a_misspelt_option_goes_to_click_and_runs_nothing(isolated_env: Path,
                                                          tmp_path: Path) -> None:
    """`--expect-evry` is a usage error (exit 2) from click, and the command never runs."""
    marker = tmp_path / "ran"
    proc, loaded = _probe("run", "--job", "backup", "--expect-evry", "24h", "--", "touch",
                          str(marker), env=dict(os.environ))
    assert proc.returncode == 2
    assert "No such option '--expect-evry'" in proc.stderr
    assert loaded is None and not marker.exists()


def test_most_cases_are_compared() -> None:
    """The agreement test is not vacuous: the fast parser takes most of its cases."""
    all_cases = list(cases())
    taken = sum(parse_run(argv, env) is not None for _, argv, env in all_cases)
    assert taken > len(all_cases) // 2


def test_a_misspelt_option_records_nothing(isolated_env: Path, tmp_path: Path) -> None:
    """The crontab typo of issue 11: exit 2, nothing run, nothing in the store."""
    marker = tmp_path / "ran"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    typo = subprocess.run([sys.executable, "-m", "jobreport", "run", "--job", "backup",
                           "--expect-evry", "24h", "--", "touch", str(marker)],
                          capture_output=True, text=True, env=env, timeout=60, check=False)
    assert typo.returncode == 2 and not marker.exists()
    listed = subprocess.run([sys.executable, "-m", "jobreport", "history", "--json"],
                            capture_output=True, text=True, env=env, timeout=60, check=False)
    assert listed.returncode == 0, listed.stderr
    assert json.loads(listed.stdout) == []


def test_words_after_the_command_are_the_commands(isolated_env: Path) -> None:
    """`run ls -la` and `run -- ls -la` both pass -la to the command."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    for argv in (["printf", "%s\n", "-la"], ["--", "printf", "%s\n", "-la"]):
        out = subprocess.run([sys.executable, "-m", "jobreport", "run", "--job", "p", *argv],
                             capture_output=True, text=True, env=env, timeout=60,
                             check=False)
        assert out.returncode == 0, out.stderr
        assert out.stdout == "-la\n"


@pytest.mark.parametrize(("args", "env", "named"), [
    (["run", "--expect-every", "soon", "--", "true"], {"JOBREPORT_EXPECT_EVERY": "1h"}, False),
    (["history", "--limit", "x"], {}, False),
    (["history"], {"JOBREPORT_HISTORY_LIMIT": "x"}, True),
])
def test_an_error_names_the_variable_only_when_the_value_came_from_it(
        args: list[str], env: dict[str, str], named: bool, isolated_env: Path) -> None:
    """"Invalid value for '--limit' (from JOBREPORT_HISTORY_LIMIT)" only for the variable."""
    from click.testing import CliRunner

    result = CliRunner().invoke(main, args, env=env)
    assert result.exit_code == 2
    var = next(iter(env), "JOBREPORT_HISTORY_LIMIT" if "history" in args else "JOBREPORT_")
    assert (f"(from {var})" in result.output) is named, result.output
    assert "env var:" not in result.output
