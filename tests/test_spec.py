"""One job spec: the field list (``jobreport.spec.FIELDS``) reaches every place a setting of a
job shows up (the options and variables of ``jobreport run``, the keys of a ``[jobs.NAME]``
section, the keywords of ``job_metrics``, the store's columns, the pushed gauges, the docs),
every field's range is held at every door it comes through, values that contradict each
other are refused with the reason, and a threshold is named in a few files only."""

from __future__ import annotations

import ast
import re
from pathlib import Path
from typing import Any

import click
import pytest
from click.testing import CliRunner

from jobreport import job_metrics, load_config
from jobreport.cli import main
from jobreport.cli.entry import parse_run
from jobreport.cli.option_table import RUN_OPTIONS
from jobreport.config.files import JOB_KEYS
from jobreport.errors import ConfigError
from jobreport.exposition import families
from jobreport.spec import (
    CLI,
    CONFIG,
    COUNT,
    CRON,
    DURATION,
    FIELDS,
    FLAG,
    PATHS,
    PYTHON,
    RATIO,
    SIZE,
    ZONE,
    Field,
    JobSpec,
    SpecError,
)
from jobreport.state import GroupState
from jobreport.store import schema, sql

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"

#: The Python type of a field's attribute, and of its job_metrics keyword, by kind.
ATTRIBUTE = {DURATION: "float | None", COUNT: "int | None", CRON: "str | None",
             ZONE: "str | None", FLAG: "bool", PATHS: "tuple[str, ...]",
             SIZE: "float | None", RATIO: "float | None"}
KEYWORD = {DURATION: "str | float | None", COUNT: "int | None", CRON: "str | None",
           ZONE: "str | None", SIZE: "str | float | None", RATIO: "str | float | None"}
COLUMN = {"real": "Double", "int": "Integer", "cron": "String", "zone": "String"}


def class_annotations(name: str) -> dict[str, str]:
    """The annotations of class ``name`` in jobreport/spec.py, as written (``SpecKeywords``
    exists for the type checker only)."""
    tree = ast.parse((ROOT / "jobreport" / "spec.py").read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef) and node.name == name:
            return {s.target.id: ast.unparse(s.annotation) for s in node.body
                    if isinstance(s, ast.AnnAssign) and isinstance(s.target, ast.Name)}
    raise AssertionError(f"no class {name} in jobreport/spec.py")


def doc_row(page: str, marker: str, section: str | None = None) -> str:
    """The table row of ``page`` (within ``## section``) that holds ``marker``."""
    text = (DOCS / page).read_text(encoding="utf-8")
    if section is not None:
        text = text.split(f"\n## {section}\n", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in text.splitlines() if line.startswith("|") and marker in line]
    assert rows, f"docs/{page}: no row for {marker}"
    return rows[0]


# --- the field list reaches every place ----------------------------------------------------


@pytest.mark.parametrize("field", FIELDS, ids=repr)
def test_every_field_is_an_attribute_of_the_spec(field: Field) -> None:
    """JobSpec has one typed attribute per field, and no other (job, labels, given aside)."""
    annotations = class_annotations("JobSpec")
    assert set(annotations) == {f.name for f in FIELDS} | {"job", "labels", "given"}
    expected = ATTRIBUTE[field.kind]
    if field.default is not None and field.kind in (DURATION, COUNT):
        expected = expected.removesuffix(" | None")  # a limit with a default is never None
    assert annotations[field.name] == expected
    assert getattr(JobSpec("j"), field.name) == field.default


@pytest.mark.parametrize("field", FIELDS, ids=repr)
def test_every_field_reaches_every_place(field: Field) -> None:
    """Its option and variable (run's click command too), its config key, its keyword,
    its store column and its gauge, each where its doors and metadata say, and nowhere
    else."""
    options = {o.name: o for o in RUN_OPTIONS}
    params = {p.name: p for p in main.commands["run"].params}
    if CLI in field.doors:
        option = options[field.name]
        assert option.field is field and option.flags == (field.flag,)
        assert option.envvars == (field.env,)
        param = params[field.name]
        assert isinstance(param, click.Option) and param.opts == [field.flag]
        assert param.envvar == field.env
        if field.kind in (DURATION, COUNT, SIZE, RATIO):
            assert field.range in (param.help or "")
    else:
        assert field.name not in options and field.name not in params
    assert (field.name in JOB_KEYS) is (CONFIG in field.doors)
    keywords = class_annotations("SpecKeywords")
    if PYTHON in field.doors:
        assert keywords[field.name] == KEYWORD[field.kind]
    else:
        assert field.name not in keywords
    columns = {c.name: c for c in schema.runs.columns}
    if field.column is not None:
        assert type(columns[field.name].type).__name__ == COLUMN[field.column]
        assert field.name in sql.SPEC_COLUMNS
    else:
        assert field.name not in columns
    pushed = {f.name for f in families(GroupState(
        job="j", grouping={"job": "j"}, spec=JobSpec("j", **{field.name: _valid(field)})))}
    gauges = {f"jobreport_{f.gauge[0]}" for f in FIELDS if f.gauge is not None}
    if field.gauge is not None:
        assert f"jobreport_{field.gauge[0]}" in pushed
    else:
        assert not pushed & gauges


def test_the_keywords_and_keys_are_the_fields_and_labels() -> None:
    """Nothing else is a keyword of job_metrics' spec or a key of a job's section."""
    assert set(class_annotations("SpecKeywords")) == {
        f.name for f in FIELDS if PYTHON in f.doors} | {"labels"}
    assert set(JOB_KEYS) == {f.name for f in FIELDS if CONFIG in f.doors} | {"labels"}


@pytest.mark.parametrize("field", FIELDS, ids=repr)
def test_every_field_is_documented_with_its_range(field: Field) -> None:
    """docs/cli.md (run's options), docs/configuration.md (a job's section) and
    docs/python-api.md (job_metrics' keywords) each have a row for the field at each of its
    doors, and the row states the range (an on/off flag and paths have none to state)."""
    ranged = field.kind not in (FLAG, PATHS)
    if CLI in field.doors:
        row = doc_row("cli.md", f"| `{field.flag}", "jobreport run")
        assert f"`{field.env}`" in row and (field.range in row or not ranged), row
    if CONFIG in field.doors:
        row = doc_row("configuration.md", f"| `{field.name}` |", "The config file")
        assert field.range in row, row
    if PYTHON in field.doors:
        row = doc_row("python-api.md", f"| `{field.name}` |")
        assert field.range in row, row


def test_a_threshold_is_named_in_a_few_files() -> None:
    """A threshold is its field entry plus its uses, not a copy in every room: the failure
    count is named where it is defined, where a run without a store uses it, and where
    status reads it from a group (commands/status.py) and judges the group by it as the
    rules do (commands/alerts.py); the minimum runtime also where history judges a run by
    it; the output thresholds where status reads and judges a group by them (and a comment
    or two)."""
    for name, most in (("alert_after_failures", 4), ("min_runtime", 4), ("min_size", 4),
                       ("min_items", 3), ("max_shrink", 4)):
        files = sorted(str(p.relative_to(ROOT)) for p in (ROOT / "jobreport").rglob("*.py")
                       if re.search(rf"\b{name}\b", p.read_text(encoding="utf-8")))
        assert "jobreport/spec.py" in files and len(files) <= most, (name, files)


# --- every door holds the range --------------------------------------------------------------


def _valid(field: Field) -> Any:
    return {DURATION: 60.0, COUNT: max(1, int(field.low)), CRON: "@daily", ZONE: "UTC",
            FLAG: True, PATHS: ("/tmp",), SIZE: 1000.0, RATIO: 0.5}[field.kind]


def out_of_range(field: Field) -> list[str]:
    """Values written as the field takes them but outside its range."""
    if field.kind == DURATION:
        return ["101y", *(["0"] if field.above else [])]
    if field.kind == COUNT:
        return [str(int(field.high) + 1), str(int(field.low) - 1)]
    if field.kind == SIZE:
        return ["2EB", "0", "0.4"]
    if field.kind == RATIO:
        return ["0%", "100%", "50", "-5%"]
    return []


RANGED = [(f, v) for f in FIELDS for v in out_of_range(f)]
IDS = [f"{f.name}={v}" for f, v in RANGED]


@pytest.mark.parametrize(("field", "value"), RANGED, ids=IDS)
def test_out_of_range_is_refused_at_every_door(field: Field, value: str, tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """A flag or its variable: a usage error (2) naming the range, nothing run; a key of a
    job's section: a ConfigError naming it (a warning and the value left out where the job
    must run); a keyword: a ConfigError before the body runs."""
    marker = tmp_path / "ran"
    if CLI in field.doors:
        typed = [f"{field.flag}={value}", "touch", str(marker)]
        assert parse_run(typed, {}) is None  # the fast way leaves it to click
        result = CliRunner().invoke(main, ["run", *typed])
        assert result.exit_code == 2 and field.range in result.output, result.output
        by_env = CliRunner().invoke(main, ["run", "touch", str(marker)],
                                    env={field.env: value})
        assert by_env.exit_code == 2 and field.range in by_env.output, by_env.output
        assert f"from {field.env}" in by_env.output
        assert not marker.exists()
    if CONFIG in field.doors:
        path = tmp_path / "jobreport.toml"
        literal = value if field.kind == COUNT else f'"{value}"'
        path.write_text(f"[jobs.j]\n{field.name} = {literal}\n")
        with pytest.raises(ConfigError, match=re.escape(field.range)) as error:
            load_config(env={}, config_file=str(path))
        assert error.value.setting == f"jobs.j.{field.name}"
        lenient = load_config(env={}, config_file=str(path), strict=False)
        assert field.name not in lenient.job("j").given
    if PYTHON in field.doors:
        keyword = int(value) if field.kind == COUNT else value
        with pytest.raises(ConfigError, match=re.escape(field.range)):
            job_metrics("j", **{field.name: keyword})  # type: ignore[misc]


@pytest.mark.parametrize("value", [float("nan"), float("inf"), -1.0, True])
@pytest.mark.parametrize("field", [f for f in FIELDS if f.kind == DURATION], ids=repr)
def test_no_nan_infinity_negative_or_bool_duration(field: Field, value: float) -> None:
    with pytest.raises(SpecError):
        JobSpec.checked("j", {field.name: value}, door=next(iter(field.doors)))


def test_a_time_zone_must_be_zone_data() -> None:
    """A file beside the zones that zoneinfo cannot convert with is no time zone."""
    with pytest.raises(SpecError, match="not a time zone"):
        JobSpec.checked("j", {"schedule": "@daily", "timezone": "leapseconds"})
    assert JobSpec.checked("j", {"timezone": "Europe/Berlin"}).timezone == "Europe/Berlin"


# --- contradictions ---------------------------------------------------------------------------

CONTRADICTIONS = [
    ({"min_runtime": "1h", "max_runtime": "1h"}, "min_runtime", "must be shorter than"),
    ({"min_runtime": "2h", "max_runtime": "1h"}, "min_runtime", "must be shorter than"),
    ({"grace": "2h", "expect_every": "1h"}, "grace", "is longer than"),
    ({"expect_every": "1h", "schedule": "@daily"}, "schedule", "exclude each other"),
]


@pytest.mark.parametrize(("values", "blamed", "reason"), CONTRADICTIONS)
def test_contradictions_are_refused_at_every_door(values: dict[str, str], blamed: str,
                                                  reason: str, tmp_path: Path) -> None:
    """The reason, naming both settings as each door calls them."""
    marker = tmp_path / "ran"
    typed = [a for name, v in values.items() for a in (f"--{name.replace('_', '-')}", v)]
    assert parse_run([*typed, "true"], {}) is None
    result = CliRunner().invoke(main, ["run", *typed, "touch", str(marker)])
    assert result.exit_code == 2 and reason in result.output, result.output
    assert all(f"--{n.replace('_', '-')}" in result.output for n in values)
    assert not marker.exists()
    path = tmp_path / "jobreport.toml"
    path.write_text("[jobs.j]\n" + "".join(f'{k} = "{v}"\n' for k, v in values.items()))
    with pytest.raises(ConfigError, match=reason) as error:
        load_config(env={}, config_file=str(path))
    assert error.value.setting == f"jobs.j.{blamed}"
    assert blamed not in load_config(env={}, config_file=str(path), strict=False).job("j").given
    with pytest.raises(ConfigError, match=reason):
        job_metrics("j", **values)  # type: ignore[arg-type]


def test_a_run_spec_wins_over_its_config_section_and_drops_what_contradicts_it() -> None:
    """Laid over the job's section, the run's values win; where the two contradict each
    other, the section's side goes (the run still runs); expect_every and schedule go as
    a pair; labels add up."""
    section = JobSpec("j", {"db": "main"}, expect_every=3600.0, grace=60.0,
                      max_runtime=600.0, alert_after_failures=3)
    spec, dropped = JobSpec("j", {"x": "1"}, min_runtime=900.0).over(section)
    assert spec.min_runtime == 900.0 and spec.max_runtime is None
    assert [p.name for p in dropped] == ["max_runtime"]  # the section's side of it
    assert spec.expect_every == 3600.0 and spec.alert_after_failures == 3
    assert spec.labels == {"db": "main", "x": "1"}
    scheduled, _ = JobSpec("j", schedule="@daily").over(section)
    assert scheduled.schedule == "@daily" and scheduled.expect_every is None
    assert scheduled.grace == 60.0  # the grace of the section applies to the schedule
    plain, dropped = JobSpec("j").over(section)
    assert plain == section.replace(labels={"db": "main"}) and dropped == []


def test_unknown_names_are_refused_at_their_door() -> None:
    """A keyword no field has is a TypeError as for any function; a field of another door
    (``timeout`` is the command line's) too."""
    with pytest.raises(TypeError, match="unexpected keyword argument 'timeout'"):
        job_metrics("j", timeout="1h")  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="unexpected keyword argument 'nonsense'"):
        job_metrics("j", nonsense=1)  # type: ignore[call-arg]


def test_run_keeps_going_over_a_bad_section_and_check_names_it(tmp_path: Path) -> None:
    """A typo in the config file must not stop a backup: `run` leaves the bad value out with
    one warning line and runs the command; where its flag contradicts the section, the
    flag wins; `jobreport check` names the bad value and fails."""
    import json
    import os
    import subprocess
    import sys

    config = tmp_path / "jobreport.toml"
    config.write_text('[jobs.j]\nalert_after_failures = 0\nmax_runtime = "1h"\n')
    env = {**os.environ, "JOBREPORT_CONFIG": str(config), "PYTHONPATH": str(ROOT)}
    marker = tmp_path / "ran"
    out = subprocess.run([sys.executable, "-m", "jobreport", "run", "--job", "j",
                          "--min-runtime", "2h", "--", "touch", str(marker)], env=env,
                         capture_output=True, text=True, timeout=120, check=False)
    assert out.returncode == 0 and marker.exists(), out.stderr
    assert "jobs.j.alert_after_failures" in out.stderr and "1 to 10000" in out.stderr
    assert "ignoring [jobs.j] max_runtime in the config file" in out.stderr
    assert "Traceback" not in out.stderr
    history = subprocess.run([sys.executable, "-m", "jobreport", "history", "--json"],
                             env={**env, "JOBREPORT_CONFIG": ""}, capture_output=True,
                             text=True, timeout=120, check=True)
    [row] = json.loads(history.stdout)
    assert (row["min_runtime"], row["max_runtime"], row["alert_after_failures"]) == (
        7200.0, None, None)
    check = subprocess.run([sys.executable, "-m", "jobreport", "check"], env=env,
                           capture_output=True, text=True, timeout=120, check=False)
    assert check.returncode == 1
    assert "jobs.j.alert_after_failures" in check.stdout + check.stderr
