"""scripts/stack.sh starts the real Pushgateway, Prometheus and Alertmanager with the shipped
files and stops them again; monitoring/docker-compose.yml is wired to files that exist."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from tests import servers
from tests.servers import alive
from tests.monitoring_helpers import MONITORING, ROOT, load_yaml, prom_get, prom_query, wait_for

pytestmark = pytest.mark.integration  # starts servers itself

STACK = ROOT / "scripts" / "stack.sh"


def stack_env(tmp_path: Path, name: str = "stack") -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "JOBREPORT_STACK_WEBHOOK"}
    return {
        **env,
        "JOBREPORT_STACK_DIR": str(tmp_path / name),
        "PUSHGATEWAY_PORT": str(servers.free_port()),
        "PROMETHEUS_PORT": str(servers.free_port()),
        "ALERTMANAGER_PORT": str(servers.free_port()),
        "WEBHOOK_PORT": str(servers.free_port()),
        "JOBREPORT_STACK_INTERVAL": "1s",
        # where start records the stacks it started: this test's own
        "XDG_RUNTIME_DIR": str(tmp_path / "run"),
    }


def stack(env: dict[str, str], *args: str,
          cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", str(STACK), *args], check=False, env=env,
                          capture_output=True, text=True, timeout=180, cwd=cwd)


def without_dir(env: dict[str, str]) -> dict[str, str]:
    """The environment of a shell that does not know where the stack was started."""
    return {k: v for k, v in env.items() if k != "JOBREPORT_STACK_DIR"}


def pids(env: dict[str, str]) -> list[int]:
    pidfile = Path(env["JOBREPORT_STACK_DIR"]) / "stack.pid"
    return [int(line.split()[0]) for line in pidfile.read_text().splitlines()]


def test_background_start_serves_the_shipped_rules_and_stop_cleans_up(tmp_path: Path) -> None:
    """--background starts the three servers on the given ports, Prometheus scrapes the
    Pushgateway with the shipped rules and knows the Alertmanager (the shipped routing, with
    the webhook asked for); stop ends them and removes the data."""
    env = {**stack_env(tmp_path), "JOBREPORT_STACK_WEBHOOK": "http://127.0.0.1:1/hook"}
    started = stack(env, "--background")
    try:
        assert started.returncode == 0, started.stdout + started.stderr
        prom = f"http://127.0.0.1:{env['PROMETHEUS_PORT']}"
        gateway = f"http://127.0.0.1:{env['PUSHGATEWAY_PORT']}"
        assert gateway in started.stdout and prom in started.stdout
        env_file = Path(env["JOBREPORT_STACK_DIR"]) / "env"
        assert env_file.read_text().strip() == f"export JOBREPORT_GATEWAY={gateway}"
        assert len(pids(env)) == 3 and all(alive(p) for p in pids(env))

        groups = {g["name"] for g in prom_get(prom, "/api/v1/rules")["data"]["groups"]}
        assert {"jobreport-alerts", "jobreport-recording"} <= groups
        wait_for("the Pushgateway scraped",
                 lambda: prom_query(prom, 'up{job="pushgateway"} == 1')["data"]["result"],
                 timeout=120)
        managers = prom_get(prom, "/api/v1/alertmanagers")["data"]["activeAlertmanagers"]
        assert [m["url"] for m in managers] == [
            f"http://127.0.0.1:{env['ALERTMANAGER_PORT']}/api/v2/alerts"]
        assert stack(env, "status").returncode == 0
        am = f"http://127.0.0.1:{env['ALERTMANAGER_PORT']}"
        am_config = prom_get(am, "/api/v2/status")["config"]["original"]
        assert "http://127.0.0.1:1/hook" in am_config and "5001" not in am_config

        again = stack(env, "--background")
        assert again.returncode == 1 and "already running" in again.stderr
    finally:
        running = pids(env) if (Path(env["JOBREPORT_STACK_DIR"]) / "stack.pid").exists() else []
        stopped = stack(env, "stop")
    assert stopped.returncode == 0, stopped.stderr
    assert running and not any(alive(p) for p in running)
    assert not Path(env["JOBREPORT_STACK_DIR"]).exists()
    assert stack(env, "status").returncode == 3


def test_foreground_stops_everything_on_ctrl_c(tmp_path: Path) -> None:
    """In the foreground, SIGINT (Ctrl-C) stops the three servers and the launcher."""
    env = stack_env(tmp_path)
    # As from a terminal, SIGINT starts at its default in the launcher: a test run started
    # in the background (`... &` in a script, CI) has SIGINT ignored, and bash cannot trap
    # a signal that was ignored when it started.
    proc = subprocess.Popen(["bash", str(STACK)], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))  # noqa: PLW1509
    try:
        assert proc.stdout is not None
        lines = []
        for line in proc.stdout:  # bounded: the launcher gives up after 30 s per server
            lines.append(line)
            if "Ctrl-C stops" in line:
                break
        assert any("Running" in line for line in lines), "".join(lines)
        running = pids(env)
        assert len(running) == 4  # with the local alert receiver
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
            pidfile = Path(env["JOBREPORT_STACK_DIR"]) / "stack.pid"
            for pid in pids(env) if pidfile.exists() else []:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)  # no server outlives a failed test
    assert proc.returncode == 130, "".join(lines) + out
    assert "stopped" in out
    assert not any(alive(p) for p in running)


def test_stop_finds_a_stack_started_in_any_directory(tmp_path: Path) -> None:
    """A stack started with JOBREPORT_STACK_DIR is found by `status` and `stop` run
    elsewhere without it; the banner names the directory too; stop leaves no process of
    the stack (the alert receiver included) and no data behind."""
    env = stack_env(tmp_path, "somewhere/else")
    started = stack(env, "--background")
    running = pids(env) if (Path(env["JOBREPORT_STACK_DIR"]) / "stack.pid").exists() else []
    try:
        assert started.returncode == 0, started.stdout + started.stderr
        assert f"JOBREPORT_STACK_DIR={env['JOBREPORT_STACK_DIR']} " in started.stdout
        assert len(running) == 4 and all(alive(p) for p in running)
        elsewhere = tmp_path / "elsewhere"
        elsewhere.mkdir()
        status = stack(without_dir(env), "status", cwd=elsewhere)
        assert status.returncode == 0, status.stderr
        assert f"http://127.0.0.1:{env['PUSHGATEWAY_PORT']}" in status.stdout
        stopped = stack(without_dir(env), "stop", cwd=elsewhere)
        assert stopped.returncode == 0, stopped.stderr
        assert "stopped" in stopped.stdout and env["JOBREPORT_STACK_DIR"] in stopped.stdout
    finally:
        stack(env, "stop")
    assert running and not any(alive(p) for p in running)
    assert not Path(env["JOBREPORT_STACK_DIR"]).exists()
    assert stack(without_dir(env), "status").returncode == 3


def test_stop_names_the_stacks_when_several_run(tmp_path: Path) -> None:
    """With two stacks running, `stop` without a directory stops neither and names both."""
    first, second = stack_env(tmp_path, "one"), stack_env(tmp_path, "two")
    try:
        for env in (first, second):
            started = stack(env, "--background")
            assert started.returncode == 0, started.stdout + started.stderr
        ambiguous = stack(without_dir(first), "stop")
        assert ambiguous.returncode == 1
        for env in (first, second):
            assert f"JOBREPORT_STACK_DIR={env['JOBREPORT_STACK_DIR']} " in ambiguous.stderr
            assert all(alive(p) for p in pids(env))
    finally:
        running = [p for env in (first, second)
                   if (Path(env["JOBREPORT_STACK_DIR"]) / "stack.pid").exists()
                   for p in pids(env)]
        for env in (first, second):
            stack(env, "stop")
    assert running and not any(alive(p) for p in running)


def answers(env: dict[str, str]) -> bool:
    """The stack's Pushgateway answers /-/ready."""
    try:
        with urllib.request.urlopen(  # noqa: S310 - loopback
                f"http://127.0.0.1:{env['PUSHGATEWAY_PORT']}/-/ready", timeout=10) as r:
            return bool(r.status == 200)
    except OSError:
        return False


def test_a_named_directory_is_all_that_stop_and_status_touch(tmp_path: Path) -> None:
    """With JOBREPORT_STACK_DIR set, status and stop act on that directory's stack only (the
    stack in the default directory, the one a user started with plain `--background`, keeps
    running); without it they pick the default directory's stack, also while another runs."""
    user = without_dir(stack_env(tmp_path))  # the default directory: $TMPDIR/jobreport-stack-UID
    default = Path(os.environ["TMPDIR"]) / f"jobreport-stack-{os.getuid()}"
    other = stack_env(tmp_path, "other")
    nowhere = {**other, "JOBREPORT_STACK_DIR": str(tmp_path / "nowhere")}
    try:
        for env in (user, other):
            started = stack(env, "--background")
            assert started.returncode == 0, started.stdout + started.stderr
        assert (default / "stack.pid").exists()
        mine = pids({**user, "JOBREPORT_STACK_DIR": str(default)})
        theirs = pids(other)

        status = stack(nowhere, "status")
        assert (status.returncode, status.stdout.strip()) == (3, "stack.sh: not running")
        stopped = stack(nowhere, "stop")
        assert stopped.returncode == 0 and "nothing to stop" in stopped.stdout
        assert not (tmp_path / "nowhere").exists()
        assert all(alive(p) for p in mine + theirs)

        status = stack(user, "status")  # two run: the default directory's is the one
        assert status.returncode == 0, status.stderr
        assert f"Data and logs: {default}\n" in status.stdout

        stopped = stack({**other, "JOBREPORT_STACK_DIR": other["JOBREPORT_STACK_DIR"] + "/"},
                        "stop")
        assert stopped.returncode == 0, stopped.stderr
        assert not any(alive(p) for p in theirs)
        assert all(alive(p) for p in mine) and answers(user)

        stopped = stack(user, "stop")
        assert stopped.returncode == 0 and str(default) in stopped.stdout
        assert not any(alive(p) for p in mine)
    finally:
        stack({**user, "JOBREPORT_STACK_DIR": str(default)}, "stop")
        stack(other, "stop")


def test_alertmanager_notifies_only_a_local_receiver(tmp_path: Path) -> None:
    """The demo Alertmanager keeps the shipped routes and receivers, but every receiver is
    a webhook to the receiver the script started on loopback (no e-mail, no Slack), which
    records what it is sent; a webhook beyond loopback is refused."""
    env = stack_env(tmp_path)
    started = stack(env, "--background")
    try:
        assert started.returncode == 0, started.stdout + started.stderr
        am = f"http://127.0.0.1:{env['ALERTMANAGER_PORT']}"
        config = load_yaml_text(prom_get(am, "/api/v2/status")["config"]["original"])
        hook = f"http://127.0.0.1:{env['WEBHOOK_PORT']}/alerts"
        shipped = load_yaml(MONITORING / "alertmanager.yml")
        assert [r["name"] for r in config["receivers"]] == [
            r["name"] for r in shipped["receivers"]]
        for receiver in config["receivers"]:
            assert set(receiver) == {"name", "webhook_configs"}, receiver
            assert [w["url"] for w in receiver["webhook_configs"]] == [hook]
        assert not config["global"].get("smtp_smarthost")
        assert not config["global"].get("slack_api_url")
        request = urllib.request.Request(hook, data=b'{"status": "firing"}', method="POST")
        with urllib.request.urlopen(request, timeout=10) as answer:
            assert answer.status == 200
        kept = Path(env["JOBREPORT_STACK_DIR"]) / "alerts.jsonl"
        assert json.loads(kept.read_text().splitlines()[-1]) == {"status": "firing"}
    finally:
        stack(env, "stop")
    far = stack({**stack_env(tmp_path, "far"),
                 "JOBREPORT_STACK_WEBHOOK": "https://hooks.slack.com/services/x"}, "--background")
    assert far.returncode == 1 and "is not on loopback" in far.stderr
    assert not (tmp_path / "far" / "stack.pid").exists()


def load_yaml_text(text: str) -> Any:
    import yaml

    return yaml.safe_load(text)


def test_busy_port_is_one_clear_error(tmp_path: Path) -> None:
    """A port in use stops the launcher before it starts anything, naming the variable."""
    env = stack_env(tmp_path)
    busy = servers.pushgateway(tmp_path / "busy", port=int(env["PROMETHEUS_PORT"])).start()
    try:
        result = stack(env, "--background")
    finally:
        busy.stop()
    assert result.returncode == 1
    assert result.stderr.strip() == (
        f"stack.sh: port {env['PROMETHEUS_PORT']} is in use: set PROMETHEUS_PORT to a free port")
    assert not (Path(env["JOBREPORT_STACK_DIR"]) / "stack.pid").exists()


def test_compose_file_is_wired_to_existing_files() -> None:
    """docker-compose.yml parses, every bind-mounted path exists, the Pushgateway persists
    to a volume, and Prometheus shares the network namespace that makes the 127.0.0.1
    targets of prometheus.yml right."""
    compose = load_yaml(MONITORING / "docker-compose.yml")
    services = compose["services"]
    assert set(services) == {"pushgateway", "prometheus", "alertmanager", "grafana"}
    for name, service in services.items():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("."):
                assert (MONITORING / source).exists(), f"{name}: {source} does not exist"
            else:
                assert source in compose["volumes"], f"{name}: undeclared volume {source}"
    pushgateway = services["pushgateway"]
    persistence = [a for a in pushgateway["command"] if a.startswith("--persistence.file=")]
    assert persistence
    data_dir = persistence[0].split("=", 1)[1].rsplit("/", 1)[0]
    assert any(v.endswith(f":{data_dir}") for v in pushgateway["volumes"])
    for name in ("prometheus", "alertmanager", "grafana"):
        assert services[name]["network_mode"] == "service:pushgateway"
    prom = services["prometheus"]
    config_arg = next(a for a in prom["command"] if a.startswith("--config.file="))
    config_in_container = config_arg.split("=", 1)[1]
    assert f"./prometheus.yml:{config_in_container}:ro" in prom["volumes"]
    # rule_files are relative to the config file's directory
    assert f"./rules:{config_in_container.rsplit('/', 1)[0]}/rules:ro" in prom["volumes"]
    am = services["alertmanager"]
    config_arg = next(a for a in am["command"] if a.startswith("--config.file="))
    assert f"./alertmanager.yml:{config_arg.split('=', 1)[1]}:ro" in am["volumes"]
    published = {p.rsplit(":", 1)[-1].split()[0] for p in pushgateway["ports"]}
    assert published == {"9091", "9090", "9093", "3000"}
