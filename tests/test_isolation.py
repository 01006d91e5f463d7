"""The suite leaves the machine alone (issue 20): a user's jobreport state and config in
their HOME and a user's stack running in scripts/stack.sh's default directory are not
touched by the tests, even the ones that once did (locks, run markers, peer memory, the
stack launcher, the demo, flush).

The proof runs those tests in a pytest of their own as the user would start it (their
HOME and TMPDIR, no XDG_STATE_HOME or XDG_CONFIG_HOME), with a real stack of theirs
running, then compares."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from tests import servers
from tests.isolation import SentinelUser
from tests.servers import alive

pytestmark = pytest.mark.integration  # starts a stack and a pytest of its own

ROOT = Path(__file__).resolve().parents[1]
STACK = ROOT / "scripts" / "stack.sh"

#: The tests that used to touch the user's machine, by what they touched.
SUBSET = [
    "tests/test_run.py::test_lock_skips_a_second_run",  # locks
    "tests/test_run.py::test_lock_is_per_group",
    "tests/test_marker.py",  # run markers, abandoned runs
    "tests/test_bounds.py",  # the memory of an unreachable gateway
    "tests/test_reliability_cli.py::test_gateway_refusing_then_flush",  # peer memory + flush
    "tests/test_flush.py",  # flush
    # stop and status of the stack launcher without a directory: the two that stopped the
    # user's stack, and the one about the default directory
    "tests/test_monitoring_stack.py::test_stop_finds_a_stack_started_in_any_directory",
    "tests/test_monitoring_stack.py::test_stop_names_the_stacks_when_several_run",
    "tests/test_monitoring_stack.py::test_a_named_directory_is_all_that_stop_and_status_touch",
    "tests/test_scripts_demo.py",  # the demo
    "tests/test_process.py::test_environment_is_given_to_the_child",  # env= of their own
    "tests/test_metricsfile.py::test_read_file_written_by_a_shell",
]


def ready(port: str, path: str = "/-/ready") -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}",  # noqa: S310
                                    timeout=10) as r:
            return bool(r.status == 200)
    except OSError:
        return False


def groups(gateway: str) -> list[dict[str, object]]:
    with urllib.request.urlopen(gateway + "/api/v1/metrics", timeout=10) as r:  # noqa: S310
        return [{"labels": g["labels"], **{k: v for k, v in g.items()
                                           if k.startswith("jobreport_last_")}}
                for g in json.load(r)["data"]]


def test_the_suite_leaves_a_users_state_config_and_stack_alone(tmp_path: Path) -> None:
    """The tests that once wrote into ~/.local/state/jobreport or stopped the user's stack
    run (and pass) beside a user's running stack and filled jobreport directories: the
    user's HOME and runtime directory are unchanged byte for byte, the stack runs on with
    the same processes and answers, and its gateway holds only the user's own group."""
    user = SentinelUser(tmp_path / "user")
    ports = {name: str(servers.free_port()) for name in
             ("PUSHGATEWAY_PORT", "PROMETHEUS_PORT", "ALERTMANAGER_PORT", "WEBHOOK_PORT")}
    stack_env = {**user.env, **ports}
    started = subprocess.run(["bash", str(STACK), "--background"], env=stack_env,
                             capture_output=True, text=True, timeout=180, check=False)
    try:
        assert started.returncode == 0, started.stdout + started.stderr
        assert (user.stack_dir / "stack.pid").exists(), "not in the default directory"
        gateway = f"http://127.0.0.1:{ports['PUSHGATEWAY_PORT']}"
        user.fill(gateway=gateway, dead_gateway=f"http://127.0.0.1:{servers.free_port()}")
        before = user.watched()
        pid_file = (user.stack_dir / "stack.pid").read_text()
        held = groups(gateway)
        assert [g["labels"]["job"] for g in held] == ["nightly"]  # type: ignore[index]

        # as the user starts it: their environment, no pytest variables of this run
        env = {k: v for k, v in user.env.items() if not k.startswith("PYTEST_")}
        suite = subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *SUBSET],
            env=env, cwd=ROOT, stdin=subprocess.DEVNULL, capture_output=True, text=True,
            timeout=600, check=False)
        assert suite.returncode == 0, suite.stdout[-6000:] + suite.stderr[-3000:]
        assert " passed" in suite.stdout.splitlines()[-1]

        assert user.changes_since(before) == []
        assert (user.stack_dir / "stack.pid").read_text() == pid_file
        pids = [int(line.split()[0]) for line in pid_file.splitlines()]
        assert len(pids) == 4 and all(alive(p) for p in pids)
        assert all(ready(ports[name]) for name in
                   ("PUSHGATEWAY_PORT", "PROMETHEUS_PORT", "ALERTMANAGER_PORT"))
        assert ready(ports["WEBHOOK_PORT"], "/")
        status = subprocess.run(["bash", str(STACK), "status"], env=user.env,
                                capture_output=True, text=True, timeout=60, check=False)
        assert status.returncode == 0 and f"Data and logs: {user.stack_dir}\n" in status.stdout
        assert groups(gateway) == held
    finally:
        subprocess.run(["bash", str(STACK), "stop"],
                       env={**user.env, "JOBREPORT_STACK_DIR": str(user.stack_dir)},
                       capture_output=True, timeout=180, check=False)
