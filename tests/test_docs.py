"""The documentation matches the code: every command and option of the CLI is in
docs/cli.md, every metric and outcome of the contract in docs/metrics.md, every message
jobreport prints in docs/troubleshooting.md, and every link between the pages resolves."""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

import click
import pytest

from jobreport.cli import main
from jobreport.outcomes import OUTCOMES

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"


def read(name: str) -> str:
    return (DOCS / name).read_text(encoding="utf-8")


def sections(text: str) -> dict[str, str]:
    """``## heading`` -> the text up to the next heading of that level."""
    parts = re.split(r"^## (.+)$", text, flags=re.M)
    return {parts[i].strip(): parts[i + 1] for i in range(1, len(parts), 2)}


def _commands(group: click.Group, prefix: str = "") -> Iterator[tuple[str, click.Command]]:
    """("monitoring export", command) for the commands of groups, ("run", command) else."""
    for name, command in group.commands.items():
        if isinstance(command, click.Group):
            yield from _commands(command, f"{prefix}{name} ")
        else:
            yield f"{prefix}{name}", command


ALL_COMMANDS = dict(_commands(main))
COMMANDS = sorted(ALL_COMMANDS)


def test_every_command_has_help() -> None:
    """Each command has a one-line summary and an example in its --help."""
    expected = ["check", "delete", "flush", "history", "monitoring export",
                "monitoring runbook", "prune", "push", "rules", "run", "status"]
    assert expected == COMMANDS
    for name in COMMANDS:
        command = ALL_COMMANDS[name]
        assert command.help and command.short_help != "", name
        assert "Example" in command.help, f"jobreport {name} --help shows no example"


@pytest.mark.parametrize("name", COMMANDS)
def test_cli_reference_covers_every_option(name: str) -> None:
    """docs/cli.md has a section per command naming each of its options (with its
    environment variable) and its arguments."""
    doc = sections(read("cli.md"))
    own = doc.get(f"jobreport {name}")
    assert own is not None, f"docs/cli.md has no '## jobreport {name}' section"
    head = read("cli.md").split("\n## ")[0]  # the shared options table
    command = ALL_COMMANDS[name]
    for param in command.params:
        if isinstance(param, click.Argument):
            assert param.human_readable_name.upper() in own.upper(), (name, param.name)
            continue
        assert isinstance(param, click.Option)
        for opt in [*param.opts, *param.secondary_opts]:
            assert f"`{opt}" in own or f"`{opt}" in head, f"{name}: {opt} not documented"
        envvars = param.envvar if isinstance(param.envvar, list | tuple) else [param.envvar]
        for var in filter(None, envvars):
            assert var in own or var in head, f"{name} {param.opts[0]}: {var} not documented"


def test_cli_reference_names_no_option_that_does_not_exist() -> None:
    """Every `--option` in a command's section of docs/cli.md is a real option of it."""
    doc = sections(read("cli.md"))
    named = 0
    for name in COMMANDS:
        real = {o for p in ALL_COMMANDS[name].params if isinstance(p, click.Option)
                for o in [*p.opts, *p.secondary_opts]}
        for opt in re.findall(r"`(--?[a-z][a-z-]*)", doc[f"jobreport {name}"]):
            assert opt in real, f"docs/cli.md, jobreport {name}: {opt} does not exist"
            named += 1
    assert named >= len(COMMANDS), "the sections name (almost) no option: is the pattern right?"


#: The metrics of the contract (the table of docs/metrics.md).
CONTRACT_METRICS = [
    "jobreport_running", "jobreport_last_start_timestamp_seconds",
    "jobreport_last_end_timestamp_seconds", "jobreport_last_success_timestamp_seconds",
    "jobreport_last_failure_timestamp_seconds", "jobreport_last_duration_seconds",
    "jobreport_last_exit_code", "jobreport_last_run_success", "jobreport_last_outcome",
    "jobreport_runs_total", "jobreport_last_size_bytes", "jobreport_last_items",
    "jobreport_last_cpu_seconds", "jobreport_last_max_rss_bytes",
    "jobreport_expected_interval_seconds", "jobreport_max_runtime_seconds",
    "jobreport_last_heartbeat_timestamp_seconds", "jobreport_info",
]


def pushed_metrics() -> set[str]:
    """Every family name a push can hold (from a real state with every field set)."""
    import typing

    from jobreport.result import RESULT_FIELDS, RunResult
    from jobreport.spec import FIELDS, JobSpec
    from jobreport.state import GroupState
    from tests.registry import registry_for

    numbers = {name: 1.0 for name, hint in typing.get_type_hints(GroupState).items()
               if hint in (float | None, int, int | None)}
    assert "typical_size" in numbers and "running" in numbers
    state = GroupState(
        job="x", grouping={"job": "x"}, **numbers, runs_total={"success": 1},
        # every field of the spec that a push can carry
        spec=JobSpec("x", **{f.name: 1 for f in FIELDS if f.gauge is not None}),
        last=RunResult(**{f.name: 1.0 for f in RESULT_FIELDS if f.column in ("real", "int")},
                       outcome="success"))
    registry = registry_for(state)
    return {m.name + ("_total" if m.type == "counter" else "") for m in registry.collect()}


def test_metrics_reference_lists_every_metric_and_outcome() -> None:
    """Each metric jobreport pushes has a row in docs/metrics.md, and each outcome too."""
    doc = read("metrics.md")
    rows = set(re.findall(r"^\| `(jobreport_[a-z_]+)`", doc, flags=re.M))
    assert set(CONTRACT_METRICS) <= rows, set(CONTRACT_METRICS) - rows
    assert pushed_metrics() <= rows, pushed_metrics() - rows
    for outcome in OUTCOMES:
        assert f"| `{outcome}` |" in doc, outcome


def test_links_between_pages_resolve() -> None:
    """Relative links in README.md and docs/ point at files that exist, and #anchors at
    headings that exist (GitHub's anchor rules)."""
    pages = [ROOT / "README.md", *DOCS.glob("*.md")]
    checked = 0
    for page in pages:
        text = page.read_text(encoding="utf-8")
        for target in re.findall(r"\]\(([^)\s]+)\)", text):
            if re.match(r"[a-z]+://", target) or target.startswith("mailto:"):
                continue
            checked += 1
            path, _, anchor = target.partition("#")
            dest = (page.parent / path) if path else page
            assert dest.exists(), f"{page.name}: broken link {target}"
            if anchor and dest.suffix == ".md":
                assert anchor in anchors(dest.read_text(encoding="utf-8")), (
                    f"{page.name}: no heading for #{anchor} in {dest.name}")
    assert checked >= 20, "hardly any relative link found: is the pattern right?"


def anchors(text: str) -> set[str]:
    out = set()
    for heading in re.findall(r"^#+ (.+)$", text, flags=re.M):
        slug = re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
        out.add(slug)
    return out


# --- every message a user can meet -------------------------------------------------------

MESSAGE_CALLS = {"warning", "error", "DeliveryError", "NotConfiguredError", "StoreError",
                 "BadParameter", "UsageError", "fail", "LockBusy"}
PROBLEM_CALLS = {"ConfigError": 2, "InvalidNameError": 2,  # index of the message argument
                 "SpecError": 1, "NoAnswer": 1}


def fragments(node: ast.expr) -> Iterator[str]:
    """The literal parts of a message expression (placeholders dropped)."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        yield from re.split(r"%[sdr]|\{[^}]*\}", node.value)
    elif isinstance(node, ast.JoinedStr):
        for value in node.values:
            yield from fragments(value)
    elif isinstance(node, ast.BinOp):
        yield from fragments(node.left)
        yield from fragments(node.right)
    elif isinstance(node, ast.IfExp):
        yield from fragments(node.body)
        yield from fragments(node.orelse)


def messages() -> Iterator[tuple[str, str]]:
    """(where, literal fragment) for every message jobreport can print or raise."""
    for path in sorted((ROOT / "jobreport").rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            args: list[ast.expr] = []
            if isinstance(node, ast.Call):
                func = node.func
                name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
                err = any(k.arg == "err" for k in node.keywords)
                if name in MESSAGE_CALLS or (name == "echo" and err):
                    args = list(node.args[:2] if name == "fail" else node.args[:1])
                elif name in PROBLEM_CALLS and len(node.args) > PROBLEM_CALLS[name]:
                    args = [node.args[PROBLEM_CALLS[name]]]
                elif name == "ValueError" and path.name in (
                        "values.py", "durations.py", "spec.py", "cron.py",
                                                            "metricsfile.py", "commands.py"):
                    args = list(node.args[:1])
            elif (isinstance(node, ast.Return) and path.name == "exit_status.py"
                  and isinstance(node.value, ast.Tuple) and len(node.value.elts) == 3):
                args = [node.value.elts[2]]  # spawn errors: (code, outcome, message)
            for arg in args:
                for frag in fragments(arg):
                    text = " ".join(frag.replace("jobreport: ", "").split()).strip(" ;:,.()")
                    if len(text) >= 12:
                        yield f"{path.name}:{getattr(node, 'lineno', '?')}", text


def test_troubleshooting_covers_every_message() -> None:
    """Every message in jobreport/ (warnings, errors, their problem texts) is quoted in
    docs/troubleshooting.md, so that searching the page for what the terminal said finds
    the fix."""
    doc = " ".join(read("troubleshooting.md").split())
    found = list(messages())
    assert len(found) > 50
    missing = sorted({f"{where}: {text}" for where, text in found if text not in doc})
    assert missing == [], "not in docs/troubleshooting.md:\n" + "\n".join(missing)


def command_lines() -> Iterator[tuple[str, str, list[str]]]:
    """(page, command, options) for every `jobreport COMMAND ...` written in README.md or
    docs/, in code blocks and inline code, options up to a `--` separator."""
    for page in [ROOT / "README.md", *sorted(DOCS.glob("*.md"))]:
        text = page.read_text(encoding="utf-8").replace("\\\n", " ")
        for m in re.finditer(r"\bjobreport ([a-z]+)((?:[ \t]+[^\s`|;&>)]+)*)", text):
            name, words = m.group(1), m.group(2).split()
            if isinstance(main.commands.get(name), click.Group) and words:
                name, words = f"{name} {words[0]}", words[1:]  # jobreport monitoring export
            if name not in ALL_COMMANDS:
                continue
            words = words[: words.index("--")] if "--" in words else words
            yield page.name, name, [w.split("=")[0] for w in words if w.startswith("-")]


def test_every_command_line_in_the_docs_uses_real_options() -> None:
    """No page shows an option a command does not have (e.g. after an option is renamed)."""
    seen = 0
    for page, name, opts in command_lines():
        real = {o for p in ALL_COMMANDS[name].params if isinstance(p, click.Option)
                for o in [*p.opts, *p.secondary_opts]}
        for opt in opts:
            assert opt in real, f"{page}: `jobreport {name} ... {opt}`: no such option"
            seen += 1
    assert seen > 50
