"""Checked by mypy --strict in tests/test_typing.py (not run): a decorator that keeps the
signature passes every ``assert_type`` below, and a wrong call is an error (the
``type: ignore`` comments must be used: --strict warns about unused ones). DECORATOR is
replaced by the decorator under test."""

from __future__ import annotations

from collections.abc import AsyncIterator, Coroutine, Generator, Iterator
from typing import Any

from typing_extensions import assert_type

from jobreport import JobMetrics, current_job, job_metrics


@DECORATOR
def plain(path: str, *, retries: int = 3) -> float:
    return 1.0


@DECORATOR
async def fetch(url: str, timeout: float = 1.0) -> bytes:
    return b""


@DECORATOR
def rows(n: int) -> Generator[int, str, bool]:
    yield n
    return True


@DECORATOR
def lines(n: int) -> Iterator[str]:
    yield str(n)


@DECORATOR
async def pages(n: int) -> AsyncIterator[bytes]:
    yield b""


class Mirror:
    @DECORATOR
    def copy(self, n: int) -> int:
        return n

    @DECORATOR
    async def verify(self, n: int) -> bool:
        return True


async def use() -> None:
    assert_type(plain("a", retries=1), float)
    made = assert_type(fetch("u"), Coroutine[Any, Any, bytes])
    made.close()
    assert_type(await fetch("u", 2.0), bytes)
    assert_type(rows(1), Generator[int, str, bool])
    assert_type(lines(1), Iterator[str])
    assert_type(pages(1), AsyncIterator[bytes])
    assert_type(Mirror().copy(1), int)
    assert_type(await Mirror().verify(1), bool)
    plain(1)  # type: ignore[arg-type]
    plain("a", retry=1)  # type: ignore[call-arg]
    await fetch(b"u")  # type: ignore[arg-type]
    rows("1")  # type: ignore[arg-type]
    pages()  # type: ignore[call-arg]
    Mirror().copy("1")  # type: ignore[arg-type]
    with job_metrics("block") as job:
        assert_type(job, JobMetrics)
    async with job_metrics("block") as ajob:
        assert_type(ajob, JobMetrics)
    assert_type(current_job(), JobMetrics)
