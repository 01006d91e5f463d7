"""Hostile values for every option of every command, every environment variable and every
config key, driven from the declarations (click's parameters, the config's key sets): a new
option is covered without a new test. Each ends in a clear, short message and a documented
exit code; never a traceback; a usage error of `jobreport run` runs nothing.
"""

from __future__ import annotations

import gc
import json
import os
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click
import pytest
from click.testing import CliRunner, Result

from jobreport.cli import main
from jobreport.config.files import FILE_KEYS, JOB_KEYS

#: What an adversary, a typo or a broken template puts into a value.
HOSTILE = [
    "",
    "\x1b[2J\x1b]0;owned\x07",
    "x" * 3000,
    "99999999999999999999",
    "-1",
    "0",
    "300y",
    "\u2603\u202e\u2028",
    "nan",
]

#: Exit codes a command other than `run` may end with (docs/cli.md).
DOCUMENTED = {0, 1, 2, 3, 4}

#: The smallest valid arguments of each command (the option under test comes first).
BASE_ARGS = {
    "push": ["--job", "j", "v=1"],
    "delete": ["--job", "j"],
    "prune": ["--older-than", "30d"],
}


def commands(group: click.Group = main.group, prefix: tuple[str, ...] = ()) -> Iterator[
        tuple[tuple[str, ...], click.Command]]:
    for name, command in sorted(group.commands.items()):
        if isinstance(command, click.Group):
            yield from commands(command, (*prefix, name))
        else:
            yield (*prefix, name), command


def options() -> Iterator[tuple[tuple[str, ...], click.Option]]:
    for path, command in commands():
        for param in command.params:
            if isinstance(param, click.Option) and param.name != "help":
                yield path, param


def envvars(option: click.Option) -> list[str]:
    return [option.envvar] if isinstance(option.envvar, str) else list(option.envvar or ())


#: The value each row of the tables is tried with in the quick unit subset (`pytest -m
#: unit`); the other values of a row are marked ``exhaustive`` and run with the whole suite.
FIRST = HOSTILE[1]


def _params(cases: list[tuple[Any, ...]], ids: list[str]) -> list[Any]:
    return [pytest.param(*case, id=case_id,
                         marks=() if case[-1] == FIRST else pytest.mark.exhaustive)
            for case, case_id in zip(cases, ids)]


CASES = [(path, option, source, value)
         for path, option in options()
         for source in ("typed", *envvars(option))
         for value in HOSTILE]


@pytest.fixture(autouse=True)
def _loopback_only(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """A hostile gateway URL must not send this test to a name server: every host name but
    the loopback is unknown. Relative paths (`--db 0`) land in tmp_path."""
    monkeypatch.chdir(tmp_path)
    real = socket.getaddrinfo

    def getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        if host not in ("127.0.0.1", "localhost", "::1", None):
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)


@pytest.fixture(autouse=True)
def _close_stores() -> Iterator[None]:
    """The runs of these in-process commands open stores that the process keeps for its
    next run; close them, or two thousand cases run the test process out of descriptors."""
    yield
    from jobreport.runs import SHARED

    for store in list(SHARED.stores.values()):
        store.close()
    SHARED.reset()
    # The stores the other commands opened and dropped hold their descriptors until the
    # garbage collector frees them. A full collection per case cost more than the case
    # itself (~80 ms on the suite's heap): collect only once they pile up.
    # (The count is against the first case's: the rest of the suite, in the same worker,
    # may hold many descriptors of its own.)
    fds = len(os.listdir("/proc/self/fd"))
    first = _FDS_AT_FIRST_CASE.setdefault("fds", fds)
    if fds > first + _DROPPED_FDS_BEFORE_COLLECT:
        gc.collect()


#: Descriptors of dropped stores that may pile up before they are collected (select() and
#: some libraries fail above 1023; a case leaves a few).
_DROPPED_FDS_BEFORE_COLLECT = 150
_FDS_AT_FIRST_CASE: dict[str, int] = {}


def invoke(args: list[str], env: dict[str, str]) -> Result:
    return CliRunner().invoke(main, args, env={"JOBREPORT_BUDGET": "0.2s",
                                               "JOBREPORT_TIMEOUT": "0.2s", **env})


def assert_clear(result: Result, what: str) -> None:
    """No traceback; a usage error is click's short usage block, anything else a line or
    two (the error and its hint, or a warning and the no-gateway notice)."""
    assert result.exception is None or isinstance(result.exception, SystemExit), (
        f"{what}: {result.exception!r}")
    assert "Traceback" not in result.output + result.stderr, what
    lines = [ln for ln in result.stderr.split("\n") if ln.strip()]
    if result.exit_code == 2 and any(ln.startswith("Usage:") for ln in lines):
        assert len(lines) <= 4 and lines[-1].startswith("Error:"), (what, lines)
    else:
        assert len(lines) <= 3, (what, lines)
        errors = [ln for ln in lines if ln.startswith("jobreport: error:")]
        assert len(errors) <= 1, (what, lines)


@pytest.mark.parametrize(
    ("path", "option", "source", "value"),
    _params(CASES, [f"{' '.join(p)} {o.opts[0]} {s} {v[:12]!r}" for p, o, s, v in CASES]))
def test_hostile_values_get_a_clear_answer(path: tuple[str, ...], option: click.Option, *,
                                           source: str, value: str, tmp_path: Path,
                                           isolated_env: Path) -> None:
    """A hostile value, typed or from the option's variable: a short clear message and a
    documented exit code; for `run`, a usage error runs nothing and a bad variable is a
    warning while the command runs."""
    marker = tmp_path / "ran"
    flag = option.opts[0]
    if source == "typed":
        typed = [f"{flag}={value}"] if option.is_flag or value.startswith("-") else [
            flag, value]
        env: dict[str, str] = {}
    else:
        typed, env = [], {source: value}
    if path == ("monitoring", "export"):
        tail = [str(tmp_path / "out")]
    elif path == ("run",):
        tail = ["--", "touch", str(marker)]
    else:
        tail = []
    result = invoke([*path, *typed, *BASE_ARGS.get(path[-1], []), *tail], env)
    what = f"jobreport {' '.join(path)} {flag} {source} {value[:40]!r}"
    assert_clear(result, what)
    if path == ("run",):
        assert result.exit_code in (0, 2), what
        assert marker.exists() == (result.exit_code == 0), what
    else:
        assert result.exit_code in DOCUMENTED, what


def test_the_table_covers_every_command_and_option() -> None:
    """Driven from click's declarations: every command, every option, each variable."""
    covered = {(p, o.name) for p, o, _s, _v in CASES}
    assert covered == {(p, o.name) for p, o in options()}
    assert {p for p, _c in commands()} >= {("run",), ("push",), ("history",), ("status",)}


def _toml(value: str) -> str:
    return json.dumps(value)  # a TOML basic string: JSON's escapes are TOML's


CONFIG_CASES = [(where, key, value)
                for where, keys in (("top", sorted(FILE_KEYS - {"jobs"})),
                                    ("job", sorted(JOB_KEYS)))
                for key in keys for value in HOSTILE]


@pytest.mark.parametrize(("where", "key", "value"),
                         _params(CONFIG_CASES,
                                 [f"{w} {k} {v[:12]!r}" for w, k, v in CONFIG_CASES]))
def test_hostile_config_values_get_a_clear_answer(where: str, key: str, value: str,
                                                  tmp_path: Path, isolated_env: Path) -> None:
    """Every key of the config file, top level and [jobs.NAME]: `check` names the problem
    in one line and exits 1 or 2; `run` warns and runs the command."""
    config = tmp_path / "jobreport.toml"
    line = f"{key} = {_toml(value)}\n"
    config.write_text(line if where == "top" else f"[jobs.j]\n{line}", encoding="utf-8")
    env = {"JOBREPORT_CONFIG": str(config)}
    checked = invoke(["check"], env)
    assert_clear(checked, f"check with {where} {key}={value[:40]!r}")
    assert checked.exit_code in (0, 1, 2)
    marker = tmp_path / "ran"
    ran = invoke(["run", "--job", "j", "--", "touch", str(marker)], env)
    assert ran.exit_code in (0, 2), ran.output
    assert marker.exists() == (ran.exit_code == 0)
    assert "Traceback" not in ran.output + ran.stderr
