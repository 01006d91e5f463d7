"""The ``jobreport`` console script, and the fast way into ``jobreport run``.

A cron job pays for every millisecond before its command starts, and importing click costs
more than the interpreter's own start. So ``jobreport run`` with options that parse cleanly
starts its command without loading click: a small parser reads the same declarations
(``option_table``) that click's ``run`` command is built from. Anything it is not sure of
(``--help``, an unknown or misspelt option, a bad value, a bad environment variable) goes to
click, which says what is wrong exactly as it always does. Both ways end in ``launch``.

This module imports only the standard library.
"""

from __future__ import annotations

import os
import sys

from jobreport.cli.option_table import (
    FLAG,
    PATHS,
    RUN_OPTIONS,
    SETTINGS_OPTIONS,
    OptionSpec,
    convert,
)

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence
    from typing import Any, NoReturn

    import click

    from jobreport.config import Config

__all__ = ["Entry", "FastRun", "exit_now", "launch", "parse_run"]

_SPECS = RUN_OPTIONS + SETTINGS_OPTIONS
_SETTING_NAMES = frozenset(s.name for s in SETTINGS_OPTIONS)


class FastRun:
    """``jobreport run``'s parameters as click would pass them (``values``), the grouping
    labels typed on the command line, and the settings typed as flags (``overrides``)."""

    __slots__ = ("labels", "overrides", "values")

    def __init__(self, values: dict[str, Any], labels: dict[str, str],
                 overrides: dict[str, Any]) -> None:
        self.values = values
        self.labels = labels
        self.overrides = overrides


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
    if typed.get("labels"):
        from jobreport.config import parse_labels

        for text in typed["labels"]:
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
        for name, other in (("expect_every", "schedule"), ("schedule", "expect_every")):
            if name in typed and other not in typed:
                values[other] = None
        if values["expect_every"] is not None and values["schedule"] is not None:
            raise ValueError("--expect-every and --schedule exclude each other")
    overrides = {name: value for name, value in typed.items() if name in _SETTING_NAMES}
    return FastRun(values, labels, overrides)


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


def launch(values: Mapping[str, Any], labels: Mapping[str, str],
           overrides: Mapping[str, Any]) -> int:
    """Run the command of ``jobreport run`` and return the exit code to exit with."""
    from jobreport.wrapper.wrapper import RunRequest, run_job

    request = RunRequest(
        argv=tuple(values["command"]), job=values["job"], labels=dict(labels),
        expect_every=values["expect_every"], max_runtime=values["max_runtime"],
        grace=values["grace"], heartbeat=values["heartbeat"], timeout=values["timeout"],
        kill_after=values["kill_after"], size_paths=tuple(values["size_paths"]),
        lock=values["lock"], tail_lines=values["tail_lines"],
        schedule=values["schedule"], timezone=values["timezone"],
        min_runtime=values["min_runtime"], alert_after_failures=values["alert_after_failures"],
    )
    settings = {k: v for k, v in overrides.items() if v not in (None, False)}

    def config() -> Config:
        # once the command runs (the settings cost more than the interpreter's own start);
        # a bad setting must not stop the job: warn and use the default
        from jobreport.config import load_config

        return load_config(strict=False, **settings)

    return run_job(request, config)


# --- output and exit ----------------------------------------------------------------------


def exit_now(code: object) -> NoReturn:
    """Flush the output and leave the process at once with ``code``: tearing down SQLAlchemy
    and requests at interpreter exit would add a tenth of a second to every run of a cron
    job, for nothing (every write is committed, every push answered)."""
    if code is None:
        status = 0
    elif isinstance(code, int):
        status = code
    else:
        print(code, file=sys.stderr)
        status = 1
    try:
        if "logging" in sys.modules:  # not loaded when nothing was logged
            sys.modules["logging"].shutdown()
        for stream in (sys.stdout, sys.stderr):
            if stream is not None:  # None: started with it closed (`>&-`), nothing to flush
                stream.flush()
    except Exception:  # a closed stdout must not change the exit code
        status = status or 1
    os._exit(status)


def _fast_run(parsed: FastRun) -> NoReturn:
    from jobreport import logger

    quiet = parsed.values["quiet"]

    def setup() -> None:
        from jobreport.cli.stderr import log_to_stderr

        log_to_stderr(quiet)

    logger.on_load(setup)
    try:
        code: object = launch(parsed.values, parsed.labels, parsed.overrides)
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
