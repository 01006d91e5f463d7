"""Every example in README.md and docs/ runs.

Each page's ``sh`` and ``python`` blocks run in document order in one bash session (Python
blocks through the venv's python, so they see the session's exports), in a scratch
directory that links to the repository's scripts/, monitoring/ and docs/, against a real
Pushgateway: ``127.0.0.1:9091`` in an example means that gateway. A failing command in any
block fails the test with the block's first line. ``toml`` blocks must load as a jobreport
config, and ``promql`` blocks must pass ``promtool``.

A block preceded by ``<!-- not-run: reason -->`` needs something a test machine cannot have
(systemd, root, PostgreSQL, fixed ports); its syntax is still checked (``bash -n``,
``compile()``, the TOML parser). README.md's first two blocks are the set-up commands:
``bash scripts/demo.sh`` is run by tests/test_scripts_demo.py, and ``bash scripts/test.sh``
is this very suite, so both are only syntax-checked here.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import tomllib

from jobreport.config import load_config
from tests.conftest import Gateway

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
# pages whose examples this suite runs; docs/alerting.md and docs/runbook.md belong to the
# monitoring set-up and are checked by tests/test_monitoring_*.py (their blocks are
# syntax-checked here as well, see test_every_block_is_valid)
PAGES = ["README.md", "docs/index.md", "docs/getting-started.md", "docs/python-api.md",
         "docs/cli.md", "docs/configuration.md", "docs/metrics.md", "docs/operations.md",
         "docs/troubleshooting.md", "docs/existing-prometheus.md", "docs/containers.md"]
SHELL = {"sh", "bash", "shell"}
RUN_OPTIONAL = {"docs/metrics.md", "docs/troubleshooting.md"}  # PromQL / messages only
NOT_RUN = re.compile(r"<!--\s*not-run:\s*(.+?)\s*-->")


@dataclass
class Block:
    page: str
    line: int  # of the opening fence
    lang: str
    text: str
    not_run: str | None  # the reason, when marked

    @property
    def where(self) -> str:
        return f"{self.page}:{self.line}"


def blocks(page: str) -> list[Block]:
    """The fenced code blocks of ``page`` with their language and not-run marker."""
    lines = (ROOT / page).read_text(encoding="utf-8").splitlines()
    found = []
    i = 0
    while i < len(lines):
        m = re.match(r"^(```+)\s*([\w+-]*)\s*$", lines[i])
        if not m:
            i += 1
            continue
        fence, lang, start = m.group(1), m.group(2).lower(), i
        body = []
        i += 1
        while i < len(lines) and lines[i].strip() != fence:
            body.append(lines[i])
            i += 1
        prev = next((lines[j] for j in range(start - 1, -1, -1) if lines[j].strip()), "")
        marker = NOT_RUN.search(prev)
        found.append(Block(page, start + 1, lang, "\n".join(body) + "\n",
                           marker.group(1) if marker else None))
        i += 1
    if page == "README.md":
        setup = [b for b in found if b.lang in SHELL][:2]
        assert [b.text.strip() for b in setup] == ["bash scripts/demo.sh", "bash scripts/test.sh"]
        for b in setup:
            b.not_run = "set-up command (demo: tests/test_scripts_demo.py; tests: this suite)"
    return found


def all_pages() -> list[str]:
    return sorted({*PAGES, *(str(p.relative_to(ROOT)) for p in (ROOT / "docs").glob("*.md"))})


def check_syntax(block: Block) -> None:
    if block.lang in SHELL:
        proc = subprocess.run(["bash", "-n"], input=block.text, capture_output=True,
                              text=True, check=False)
        assert proc.returncode == 0, f"{block.where}: {proc.stderr}"
    elif block.lang == "python":
        compile(block.text, block.where, "exec")
    elif block.lang == "toml":
        tomllib.loads(block.text)


@pytest.mark.parametrize("page", all_pages())
def test_every_block_is_valid(page: str) -> None:
    """Every shell, Python and TOML block of every page at least parses."""
    found = blocks(page)
    for block in found:
        check_syntax(block)
    assert found or page == "docs/troubleshooting.md", f"{page} has no examples"


def test_not_run_markers_give_a_reason() -> None:
    """Every not-run marker sits right before a block and says what the block needs."""
    seen = 0
    for page in PAGES:
        text = (ROOT / page).read_text(encoding="utf-8")
        for m in NOT_RUN.finditer(text):
            assert len(m.group(1)) > 10, f"{page}: give a real reason: {m.group(0)}"
            after = text[m.end():].lstrip("\n")
            assert after.startswith("```"), f"{page}: {m.group(0)} is not followed by a block"
            seen += 1
    assert seen >= 1, "no not-run marker found: is NOT_RUN right?"


def scratch(tmp_path: Path) -> Path:
    work = tmp_path / "work"
    work.mkdir()
    for name in ("scripts", "monitoring", "docs"):
        (work / name).symlink_to(ROOT / name)
    return work


#: /tmp in an example (``/tmp/x``, ``sqlite:////tmp/x``, ``cd /tmp``): the test's own
#: TMPDIR stands in for it, so that running the docs writes nothing of the user's.
TMP_PATH = re.compile(r"(?<![\w.~-])/tmp(?![\w.-])")


def session_script(page_blocks: list[Block], gateway: Gateway, tmp: Path) -> str:
    """One bash script running the page's runnable blocks in order (``127.0.0.1:9091``
    meaning ``gateway``, ``/tmp/`` meaning ``tmp``); an ERR trap names the block and line of
    every failing command."""
    address = gateway.url.removeprefix("http://")
    parts = ["set -o pipefail",
             'trap \'echo "EXAMPLE FAILED: $__block line $LINENO (exit $?)" >&2\' ERR']
    for n, block in enumerate(page_blocks):
        text = TMP_PATH.sub(str(tmp), block.text.replace("127.0.0.1:9091", address))
        parts.append(f"__block='{block.where}'")
        if block.lang in SHELL:
            parts.append(text)
        else:
            tag = f"PYTHON_EXAMPLE_{n}"
            assert tag not in text
            parts.append(f"python - <<'{tag}'\n{text}{tag}")
    parts.append('echo "ALL EXAMPLES RAN"')
    return "\n".join(parts) + "\n"


@pytest.mark.parametrize("page", PAGES)
def test_examples_run(page: str, tmp_path: Path, gateway: Gateway) -> None:
    """The page's shell and Python examples run, in order, without a failing command."""
    runnable = [b for b in blocks(page)
                if b.not_run is None and (b.lang in SHELL or b.lang == "python")]
    if not runnable:
        assert page in RUN_OPTIONAL, f"{page} has no runnable example"
        return
    work = scratch(tmp_path)
    env = {
        **os.environ,
        "PATH": f"{BIN}:{os.environ['PATH']}",
        "HOME": str(tmp_path / "home"),
        "PYTHONPATH": str(ROOT),
        "JOBREPORT_GATEWAY": gateway.url,
    }
    (tmp_path / "home").mkdir()
    tmp = Path(os.environ["TMPDIR"])  # the test's own (tests/isolation.py)
    proc = subprocess.run(["bash", "-c", session_script(runnable, gateway, tmp)], cwd=work,
                          env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                          timeout=600, check=False)
    failures = [line for line in proc.stderr.splitlines() if line.startswith("EXAMPLE FAILED")]
    assert failures == [], "\n".join(failures) + "\n" + proc.stderr[-4000:]
    assert proc.stdout.rstrip().endswith("ALL EXAMPLES RAN"), proc.stderr[-4000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-4000:]


def test_toml_examples_load_as_config(tmp_path: Path) -> None:
    """Every runnable TOML block is a valid jobreport config file (unknown keys, bad
    durations and secrets in the file are errors)."""
    count = 0
    for page in PAGES:
        for block in blocks(page):
            if block.lang != "toml" or block.not_run:
                continue
            path = tmp_path / f"{count}.toml"
            path.write_text(block.text)
            config = load_config(env={"JOBREPORT_CONFIG": str(path)})
            assert config.config_file == str(path), block.where
            count += 1
    assert count >= 1


def test_promql_examples_pass_promtool(tmp_path: Path) -> None:
    """Every PromQL block is a valid expression (checked by promtool as a recording rule)."""
    exprs = [b for page in PAGES for b in blocks(page) if b.lang == "promql"]
    assert len(exprs) >= 5
    rules = {"groups": [{"name": "docs", "rules": [
        {"record": f"docs:example_{i}", "expr": b.text.strip()} for i, b in enumerate(exprs)
    ]}]}
    path = tmp_path / "docs-rules.yml"
    path.write_text(json.dumps(rules, indent=1))  # JSON is YAML
    promtool = shutil.which("promtool") or "/usr/bin/promtool"
    proc = subprocess.run([promtool, "check", "rules", str(path)], capture_output=True,
                          text=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
