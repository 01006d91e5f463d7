"""The error that failed a Python block is kept with the run: its type and the first line of
its message, secrets masked, bounded; shown by `history --run`, `--json` and the table;
never pushed. Stores of schema 6 gain the column."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from pathlib import Path

import pytest
from click.testing import CliRunner

from jobreport import job_metrics, load_config
from jobreport.cli import main
from jobreport.instrument.failure import ERROR_MAX_CHARS, error_text
from jobreport.store.migrations import SCHEMA_VERSION
from jobreport.store.store import Store
from tests.conftest import Gateway


class Unprintable(Exception):
    def __str__(self) -> str:
        raise RuntimeError("no")


class Custom(Exception):
    pass


@pytest.mark.parametrize(("exc", "text"), [
    (ValueError("boom"), "ValueError: boom"),
    (ValueError(), "ValueError"),
    (ValueError("\n\n  second line first  \nthird"), "ValueError: second line first"),
    (KeyError("orders"), "KeyError: 'orders'"),
    (SystemExit(3), "SystemExit: 3"),
    (KeyboardInterrupt(), "KeyboardInterrupt"),
    (asyncio.CancelledError(), "asyncio.exceptions.CancelledError"),
    (json.JSONDecodeError("Expecting value", "x", 0),
     "json.decoder.JSONDecodeError: Expecting value: line 1 column 1 (char 0)"),
    (Custom("mine"), "tests.test_run_error.Custom: mine"),
    (Unprintable(), "tests.test_run_error.Unprintable: <the message could not be read>"),
])
def test_error_text_is_the_type_and_the_first_line(exc: BaseException, text: str) -> None:
    """The type as a traceback names it (module unless builtin) and the first non-empty
    line of the message, stripped; a message that cannot be read does not stop it."""
    assert error_text(exc) == text


def test_error_text_of_a_task_group_names_its_first_error() -> None:
    """An exception group (what asyncio.TaskGroup raises) also names the first error in it."""

    async def fail() -> None:
        raise OSError("disk full")

    async def main() -> None:
        async with asyncio.TaskGroup() as group:
            group.create_task(fail())

    with pytest.raises(BaseExceptionGroup) as raised:
        asyncio.run(main())
    assert error_text(raised.value) == ("ExceptionGroup: unhandled errors in a TaskGroup "
                                        "(1 sub-exception) -- OSError: disk full")


def test_error_text_masks_secrets_before_it_is_cut() -> None:
    """A secret value and a URL's password are masked; a long message is cut to the bound
    after masking, so that no part of a secret survives a cut."""
    secret = "s3cr3t-token-value"
    text = error_text(ConnectionError(f"POST https://bob:hunter22@api.example/x with {secret}"),
                      [secret])
    assert secret not in text and "hunter22" not in text
    assert text == "ConnectionError: POST https://bob:***@api.example/x with ***"
    long = error_text(ValueError("x" * 250 + secret + "y" * 100), [secret])
    assert len(long) == ERROR_MAX_CHARS and long.endswith("...")
    assert "s3cr3t" not in long


@pytest.fixture
def env(gateway: Gateway, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Gateway:
    monkeypatch.setenv("JOBREPORT_GATEWAY", gateway.url)
    monkeypatch.setenv("JOBREPORT_DB", f"sqlite:///{tmp_path / 'store.db'}")
    monkeypatch.setenv("JOBREPORT_PASSWORD", "pw-kept-out-of-the-store")
    monkeypatch.setenv("JOBREPORT_USERNAME", "jr")
    return gateway


def test_history_shows_the_error_of_a_failed_block(env: Gateway, tmp_path: Path) -> None:
    """`history --run ID` and `--json` show the error (masked, first line); the table shows
    it cut; a success has none; nothing of it reaches the gateway."""
    with job_metrics("import") as job:
        pass
    with pytest.raises(PermissionError), job_metrics("import") as failed:
        raise PermissionError("login as jr with pw-kept-out-of-the-store refused\n"
                              "Traceback-like second line")
    assert job.error is None
    assert failed.error == "PermissionError: login as jr with *** refused"
    runner = CliRunner()
    listed = json.loads(runner.invoke(main, ["history", "--json"]).output)
    assert [r["error"] for r in listed] == [failed.error, None]
    shown = runner.invoke(main, ["history", "--run", str(listed[0]["id"])])
    assert shown.exit_code == 0, shown.output
    assert "error      PermissionError: login as jr with *** refused" in shown.output
    one = json.loads(runner.invoke(main, ["history", "--run", str(listed[0]["id"]),
                                          "--json"]).output)
    assert one["error"] == failed.error and one["outcome"] == "failure"
    table = runner.invoke(main, ["history"]).output.splitlines()
    assert table[0].split()[-1] == "ERROR"
    assert table[1].endswith("PermissionError: login as jr with ***...")
    assert table[2].endswith("-")
    raw = (tmp_path / "store.db").read_bytes()
    assert b"pw-kept-out-of-the-store" not in raw
    assert "pw-kept" not in env.metrics_text() and "PermissionError" not in env.metrics_text()


def test_a_schema_6_store_gains_the_error_column(tmp_path: Path) -> None:
    """A store made before the column (schema 6) is migrated: its runs read back with no
    error, and new runs keep theirs."""
    path = tmp_path / "old.db"
    config = load_config(env={}, db=f"sqlite:///{path}")
    with job_metrics("old", config=config):
        pass
    with sqlite3.connect(path) as conn:  # back to schema 6: no error column
        conn.execute("ALTER TABLE jobreport_runs DROP COLUMN error")
        conn.execute("UPDATE jobreport_meta SET value = '6' WHERE key = 'schema_version'")
    from jobreport.runs import SHARED

    SHARED.reset()  # a new process: it finds the old store
    with pytest.raises(OSError), job_metrics("old", config=config):
        raise OSError("the NFS mount went away")
    store = Store(f"sqlite:///{path}")
    assert store.schema_version() == SCHEMA_VERSION >= 7
    newest, oldest = store.history("old")
    assert oldest.result is not None and oldest.result.error is None
    assert newest.result is not None
    assert newest.result.error == "OSError: the NFS mount went away"
