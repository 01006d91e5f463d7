"""The ``jobreport`` console script, and the fast way into ``jobreport run``.

A cron job pays for every millisecond before its command starts, and importing click costs
more than the interpreter's own start. So ``jobreport run`` with options that parse cleanly
starts its command without loading click: a small parser reads the same declarations
(``option_table``) that click's ``run`` command is built from. Anything it is not sure of
(``--help``, an unknown or misspelt option, a bad value, a bad environment variable,
values that contradict each other) goes to click, which says what is wrong exactly as it
always does. Both ways make the run's ``JobSpec`` with ``run_spec`` and end in ``launch``.

This module imports only the standard library and the spec.
"""

from __future__ import annotations

import os
import sys

from jobreport.cli.exit import exit_now
from jobreport.cli.option_table import (
    FLAG,
    PATHS,
    RUN_OPTIONS,
    SETTINGS_OPTIONS,
    OptionSpec,
    convert,
)
from jobreport.durations import SETTING_RANGES, setting_seconds
from jobreport.numbers import SETTING_LIMITS, setting_whole
from jobreport.spec import BY_NAME, CLI, FIELDS, JobSpec, parse_labels

# not typing's: this module is on the path of `jobreport run` before its command starts
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence
    from typing import Any, NoReturn

    import click

    from jobreport.config import Config

__all__ = ["Entry", "FastRun", "check_numeric_settings", "command_job", "launch", "parse_run",
           "run_spec"]

_SPECS = RUN_OPTIONS + SETTINGS_OPTIONS
_SETTING_NAMES = frozenset(s.name for s in SETTINGS_OPTIONS)


class FastRun:
    """``jobreport run``'s parameters as click would pass them (``values``), the grouping
    labels typed on the command line, the settings typed as flags (``overrides``) and the
    run's spec."""

    __slots__ = ("labels", "overrides", "spec", "values")

    def __init__(self, values: dict[str, Any], labels: dict[str, str],
                 overrides: dict[str, Any], spec: JobSpec) -> None:
        self.values = values
        self.labels = labels
        self.overrides = overrides
        self.spec = spec


def command_job(argv: Sequence[str]) -> str:
    """The job a command runs as when ``--job`` names none: its base name (``pg_dump`` for
    ``/usr/bin/pg_dump``)."""
    return os.path.basename(argv[0].rstrip("/")) or argv[0]


def _flag_of(name: str) -> str:
    return BY_NAME[name].flag


def run_spec(values: Mapping[str, Any], labels: Mapping[str, str]) -> JobSpec:
    """The spec of ``jobreport run`` from its options' values (as click passes them) and the
    labels typed; ``SpecError`` (a ``ValueError``) when values contradict each other."""
    command = tuple(values["command"])
    job = values["job"] or command_job(command)
    given = {f.name: values[f.name] for f in FIELDS if CLI in f.doors}
    return JobSpec.checked(job, given, labels=labels, door=CLI, call=_flag_of)


def check_numeric_settings(environ: Mapping[str, str]) -> None:
    """The numeric settings in the environment (``JOBREPORT_TIMEOUT``, ``JOBREPORT_BUDGET``,
    ``JOBREPORT_START_BUDGET``, ``JOBREPORT_KEEP_DAYS``, ``JOBREPORT_KEEP_RUNS``) held to
    their ranges before a command starts: ``ValueError`` naming the variable and the range.
    (Any other bad setting only warns: the job runs.)"""
    for name in (*SETTING_RANGES, *SETTING_LIMITS):
        variable = f"JOBREPORT_{name.upper()}"
        raw = environ.get(variable, "")
        if raw.strip():
            try:
                if name in SETTING_RANGES:
                    setting_seconds(name, raw)
                else:
                    setting_whole(name, raw)
            except ValueError as e:
                raise ValueError(f"{variable}: {e}") from None


def check_typed_settings(typed: Mapping[str, Any]) -> None:
    """The settings typed as flags of ``jobreport run`` (``--gateway``, ``--db``,
    ``--config`` ...) held to what their converters take, before the command starts:
    ``ValueError`` naming the flag. A typed flag is a usage error; the same value from the
    environment or the config file only warns (the job runs)."""
    by_name = {spec.name: spec for spec in SETTINGS_OPTIONS}
    for name, value in typed.items():
        spec = by_name[name]
        if spec.kind == FLAG:
            continue
        if name == "config_file":
            if not os.path.isfile(os.path.expanduser(str(value))):
                raise ValueError(f"{spec.flags[0]}: {value} does not exist or is not a file")
            continue
        from jobreport.config.values import CONVERTERS  # (only for a typed setting)

        try:
            CONVERTERS[name](value)
        except ValueError as e:
            raise ValueError(f"{spec.flags[0]}: {e}") from None


def parse_run(argv: Sequence[str], environ: Mapping[str, str]) -> FastRun | None:
    """The parameters of ``jobreport run ARGV``, or None when click should decide (help, a
    usage error, an environment variable click would warn about, anything unusual)."""
    by_flag = {flag: spec for spec in _SPECS for flag in spec.flags}
    typed: dict[str, Any] = {}
    command: list[str] = []
    i = 0
    while i < len(argv):
        word = argv[i]
        if word == "--":
            command = list(argv[i + 1:])
            break
        if not word.startswith("-") or word == "-":  # the command's first word
            command = list(argv[i:])
            break
        name, eq, value = word.partition("=") if word.startswith("--") else (word, "", "")
        spec = by_flag.get(name)
        if spec is None:
            return None
        if spec.kind == FLAG:
            if eq:
                return None
            typed[spec.name] = True
        else:
            if not eq:
                i += 1
                if i == len(argv) or argv[i].startswith("-"):
                    return None
                value = argv[i]
            if spec.multiple:
                typed.setdefault(spec.name, []).append(value)
            else:
                typed[spec.name] = value
        i += 1
    if not command:
        return None
    try:
        return _resolve(typed, command, environ)
    except ValueError:
        return None


def _resolve(typed: dict[str, Any], command: list[str],
             environ: Mapping[str, str]) -> FastRun:
    values: dict[str, Any] = {"command": tuple(command)}
    for spec in RUN_OPTIONS:
        values[spec.name] = _value(spec, typed, environ)
    labels: dict[str, str] = {}
    for text in typed.get("labels") or ():
        labels.update(parse_labels(text))
    if values["job"] is not None:
        from jobreport.errors import InvalidNameError
        from jobreport.names import check_job

        try:
            check_job(values["job"])
        except InvalidNameError as e:
            raise ValueError(str(e)) from None
    if values["expect_every"] is not None and values["schedule"] is not None:
        # one of them typed beats the other from the environment; otherwise click decides
        # (both typed: the spec refuses them; both from the environment: a warning)
        for name, other in (("expect_every", "schedule"), ("schedule", "expect_every")):
            if name in typed and other not in typed:
                values[other] = None
        if values["expect_every"] is not None and values["schedule"] is not None:
            raise ValueError("click decides")
    overrides = {name: value for name, value in typed.items() if name in _SETTING_NAMES}
    check_typed_settings(overrides)
    check_numeric_settings(environ)
    return FastRun(values, labels, overrides, run_spec(values, labels))


def _value(spec: OptionSpec, typed: dict[str, Any], environ: Mapping[str, str]) -> Any:
    if spec.name in typed:
        given = typed[spec.name]
        if spec.kind == FLAG:
            return True
        if spec.multiple:
            return tuple(convert(spec, v) for v in given)
        return convert(spec, given)
    found = spec.env_value(environ)
    if found is not None:
        raw = found[1]
        if spec.kind == PATHS:
            return tuple(raw.split(os.pathsep))
        if spec.multiple:
            return tuple(raw.split())
        return convert(spec, raw)
    if spec.multiple:
        return ()
    if spec.kind == FLAG:
        return False
    return None if spec.default is None else convert(spec, str(spec.default))


def launch(argv: Sequence[str], spec: JobSpec, overrides: Mapping[str, Any]) -> int:
    """Run ``argv`` as one run held to ``spec`` and return the exit code to exit with;
    ``overrides`` are the settings typed as flags."""
    from jobreport.wrapper.wrapper import run_job

    settings = {k: v for k, v in overrides.items() if v not in (None, False)}

    def config() -> Config:
        # once the command runs (the settings cost more than the interpreter's own start);
        # a bad setting must not stop the job: warn and use the default
        from jobreport.config import load_config

        return load_config(strict=False, **settings)

    return run_job(argv, spec, config)


def _fast_run(parsed: FastRun) -> NoReturn:
    from jobreport import logger

    quiet = parsed.values["quiet"]

    def setup() -> None:
        from jobreport.cli.stderr import log_to_stderr

        log_to_stderr(quiet)

    logger.on_load(setup)
    try:
        code: object = launch(parsed.values["command"], parsed.spec, parsed.overrides)
    except (EOFError, KeyboardInterrupt):  # as click's standalone mode does
        print("\nAborted!", file=sys.stderr)
        code = 1
    except SystemExit as e:
        code = e.code
    exit_now(code)


class Entry:
    """The ``jobreport`` command (``jobreport.cli:main``): called as the console script it
    takes the fast way into ``jobreport run`` when it can; otherwise, and for every use from
    Python (``CliRunner``, ``main.commands``), it is the click group of ``jobreport.cli.app``,
    loaded on first use."""

    name = "jobreport"

    def __call__(self, args: Sequence[str] | None = None, prog_name: str | None = None,
                 complete_var: str | None = None, standalone_mode: bool = True,
                 **extra: Any) -> Any:
        argv = sys.argv[1:]
        if (args is None and standalone_mode and complete_var is None and not extra
                and argv[:1] == ["run"] and "_JOBREPORT_COMPLETE" not in os.environ):
            parsed = parse_run(argv[1:], os.environ)
            if parsed is not None:
                _fast_run(parsed)
        return self.group.main(args, prog_name, complete_var, standalone_mode, **extra)

    @property
    def group(self) -> click.Group:
        """The click group, with every command."""
        from jobreport.cli.app import load_commands

        return load_commands()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.group, name)
