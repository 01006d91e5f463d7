"""scripts/kubernetes/cronjob.yaml: a CronJob of batch/v1 whose container wraps its command
with ``jobreport run``; its command run as pods would run it (a new HOME and host name per
run, ``KUBERNETES_SERVICE_HOST`` set) against a real Pushgateway, scraped by a real
Prometheus with the shipped rules: one group for the job, counters and the failure streak
across pods, the failed alert after N failures in a row, no alert for pods that are gone;
and ``--retire-after`` for pods that each push an instance of their own."""

from __future__ import annotations

import os
import re
import shlex
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from jobreport.cron import check_expression, check_timezone
from jobreport.durations import parse_duration
from tests import servers
from tests.conftest import Gateway
from tests.faults import assert_no_traceback
from tests.monitoring_helpers import prom_get, prom_query, prometheus_test_config, wait_for
from tests.pods import Pods

ROOT = Path(__file__).resolve().parents[1]
MANIFEST = ROOT / "scripts" / "kubernetes" / "cronjob.yaml"
WAIT = 120.0  # a ceiling for Prometheus to see a change on a busy machine
#: What a CronJob's name may be (a DNS-1123 subdomain; 52 characters leave room for the
#: suffix Kubernetes adds to each Job).
NAME = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")


def cronjob() -> dict[str, Any]:
    docs = [d for d in yaml.safe_load_all(MANIFEST.read_text()) if d]
    found = [d for d in docs if d.get("kind") == "CronJob"]
    assert len(found) == 1, "one CronJob in the manifest"
    return dict(found[0])


def container(job: dict[str, Any]) -> dict[str, Any]:
    [first] = job["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"]
    return dict(first)


def flag(argv: list[str], name: str) -> str:
    """The value of ``--name VALUE`` or ``--name=VALUE`` in jobreport's part of ``argv``."""
    mine = argv[:argv.index("--")]
    for i, arg in enumerate(mine):
        if arg == name:
            return mine[i + 1]
        if arg.startswith(name + "="):
            return arg.split("=", 1)[1]
    raise AssertionError(f"{name} not in {mine}")


def test_the_manifest_is_a_cronjob_of_batch_v1() -> None:
    """The fields a kubectl of batch/v1 requires are there and well formed; the container
    wraps its command with `jobreport run`, whose --schedule and --timezone are the
    CronJob's own schedule and timeZone; the gateway comes from the environment; no
    instance is set (one group per job); resources are set; pods never overlap; and
    jobreport's --timeout ends a run before Kubernetes would kill the pod."""
    job = cronjob()
    assert job["apiVersion"] == "batch/v1"
    name = job["metadata"]["name"]
    assert NAME.fullmatch(name) and len(name) <= 52
    spec = job["spec"]
    check_expression(spec["schedule"])
    check_timezone(spec["timeZone"])
    assert spec["concurrencyPolicy"] in ("Allow", "Forbid", "Replace")
    assert spec["concurrencyPolicy"] == "Forbid"
    pod = spec["jobTemplate"]["spec"]["template"]["spec"]
    assert pod["restartPolicy"] in ("OnFailure", "Never")
    box = container(job)
    assert NAME.fullmatch(box["name"]) and box["image"]
    argv = [str(a) for a in box["command"] + box.get("args", [])]
    assert argv[:2] == ["jobreport", "run"] and "--" in argv
    assert argv[argv.index("--") + 1:], "a command after --"
    assert flag(argv, "--schedule") == spec["schedule"]
    assert flag(argv, "--timezone") == spec["timeZone"]
    env = {e["name"]: e.get("value") for e in box["env"]}
    assert env["JOBREPORT_GATEWAY"].startswith("http")
    assert "JOBREPORT_INSTANCE" not in env and "JOBREPORT_NO_INSTANCE" not in env
    for kind in ("requests", "limits"):
        assert box["resources"][kind]["memory"]
    assert parse_duration(flag(argv, "--timeout")) < spec["jobTemplate"]["spec"][
        "activeDeadlineSeconds"]


@dataclass
class Watched:
    """A Pushgateway scraped by a Prometheus that evaluates the shipped rules each second."""

    gateway: servers.Server
    prometheus: servers.Server

    def firing(self, job: str) -> list[dict[str, str]]:
        """The labels of the alerts about ``job`` firing now."""
        alerts = prom_get(self.prometheus.url, "/api/v1/alerts")["data"]["alerts"]
        return [a["labels"] for a in alerts
                if a["state"] == "firing" and a["labels"].get("job") == job]

    def groups(self, job: str) -> list[dict[str, str]]:
        """The label sets of the job's groups Prometheus scraped last."""
        result = prom_query(self.prometheus.url, f'jobreport_info{{job="{job}"}}')
        return [r["metric"] for r in result["data"]["result"]]

    def evaluated_since(self, moment: float) -> bool:
        """Whether every rule group was evaluated after ``moment`` (``time.time()``)."""
        from datetime import datetime

        groups = prom_get(self.prometheus.url, "/api/v1/rules")["data"]["groups"]
        return bool(groups) and all(
            datetime.fromisoformat(g["lastEvaluation"][:26].rstrip("Z") + "+00:00")
            .timestamp() > moment for g in groups)

    def value(self, expr: str) -> float | None:
        result = prom_query(self.prometheus.url, expr)["data"]["result"]
        return float(result[0]["value"][1]) if result else None


@pytest.fixture
def watched(tmp_path: Path) -> Iterator[Watched]:
    gateway = servers.pushgateway(tmp_path / "pushgateway").start()
    prometheus: servers.Server | None = None
    try:
        config = prometheus_test_config(tmp_path / "prometheus.yml", gateway_port=gateway.port)
        prometheus = servers.prometheus(tmp_path / "prometheus", config).start()
        url = prometheus.url
        wait_for("Prometheus scraping the Pushgateway",
                 lambda: prom_query(url, 'up{job="pushgateway"} == 1')["data"]["result"],
                 timeout=WAIT)
        yield Watched(gateway, prometheus)
    finally:
        if prometheus is not None:
            prometheus.stop()
        gateway.stop()


def manifest_run(pods: Pods, code: int) -> None:
    """The manifest's container command in a new pod, its own command (after ``--``) made
    to exit with ``code``, with the manifest's environment (the gateway pointed at the test's)."""
    box = container(cronjob())
    argv = [str(a) for a in box["command"] + box.get("args", [])]
    argv = argv[2:argv.index("--") + 1] + ["sh", "-c", f"exit {code}"]
    env = {e["name"]: str(e["value"]) for e in box["env"] if "value" in e}
    env.pop("JOBREPORT_GATEWAY")
    done = pods.run(["run", *argv], extra=env)
    assert done.returncode == code, done.stderr
    assert_no_traceback(done.stdout, done.stderr)
    assert "kept in the store" not in done.stderr, done.stderr


@pytest.mark.integration
def test_the_manifest_runs_as_pods_would(watched: Watched, tmp_path: Path) -> None:
    """The CronJob's command, run as four pods (success, failure, failure, success): one
    group for the job; Prometheus sees the counters and the failure streak count on across
    pods; JobreportJobFailed waits for the 2 failures in a row the manifest asks for, then
    resolves with the next success; no pod that is gone leaves a group or an alert behind
    (no overdue, no missed start: the deadlines follow the schedule)."""
    job = cronjob()["metadata"]["name"]
    pods = Pods(tmp_path / "pods", JOBREPORT_GATEWAY=watched.gateway.url)

    def seen(expr: str, value: float) -> bool:
        return watched.value(expr) == value

    steps = [(0, 0, {"success": 1}), (3, 1, {"failure": 1}), (3, 2, {"failure": 2}),
             (0, 0, {"success": 2})]
    for n, (code, streak, counted) in enumerate(steps):
        manifest_run(pods, code)
        for outcome, runs in counted.items():
            expr = f'jobreport_runs_total{{job="{job}",outcome="{outcome}"}}'
            wait_for(f"{expr} == {runs}", lambda e=expr, r=runs: seen(e, r), timeout=WAIT)
        expr = f'jobreport_consecutive_failures{{job="{job}"}}'
        wait_for(f"streak {streak}", lambda e=expr, s=streak: seen(e, s), timeout=WAIT)
        # the rules have seen the new values once they are evaluated after that
        moment = time.time()
        wait_for("an evaluation", lambda t=moment: watched.evaluated_since(t), timeout=WAIT)
        if n == 2:
            fired = wait_for("JobreportJobFailed", lambda: [
                a for a in watched.firing(job) if a["alertname"] == "JobreportJobFailed"],
                timeout=WAIT)
            assert fired[0].get("instance", "") == ""
        if n == 3:
            wait_for("JobreportJobFailed to resolve", lambda: not any(
                a["alertname"] == "JobreportJobFailed" for a in watched.firing(job)),
                timeout=WAIT)
        if n in (1, 3):
            assert not watched.firing(job), watched.firing(job)
        groups = watched.groups(job)
        assert len(groups) == 1 and "instance" not in groups[0], groups
    assert pods.made == 4


@pytest.mark.integration
def test_pods_with_an_instance_each_retire_after_they_are_gone(
        watched: Watched, tmp_path: Path) -> None:
    """Pods that push an instance of their own (JOBREPORT_INSTANCE set to the pod's name)
    with --retire-after 8s: the group of a pod that is gone alerts (overdue) until its last
    start is 8 s old while a later pod of the job runs on; then it stops. The later pod,
    failing, keeps alerting; a job whose only pod is gone keeps alerting (it runs nowhere)."""
    pods = Pods(tmp_path / "pods", JOBREPORT_GATEWAY=watched.gateway.url)
    common = ["--expect-every", "2s", "--retire-after", "8s"]
    before = time.monotonic()  # pod-a's start is later than this
    for job, host in (("fleet", "pod-a"), ("alone", "pod-z")):
        done = pods.run(["run", "--job", job, *common, "--", "true"], host=host,
                        extra={"JOBREPORT_INSTANCE": host})
        assert done.returncode == 0, done.stderr

    def overdue(job: str, instance: str) -> bool:
        return any(a["alertname"] == "JobreportJobOverdue" and a.get("instance") == instance
                   for a in watched.firing(job))

    wait_for("the gone pod's overdue alert", lambda: overdue("fleet", "pod-a"), timeout=WAIT)
    # a later pod of the job runs on (and fails) until the gone pod's group is retired
    retired = False
    deadline = time.monotonic() + WAIT
    while not retired and time.monotonic() < deadline:
        done = pods.run(["run", "--job", "fleet", *common, "--", "false"], host="pod-b",
                        extra={"JOBREPORT_INSTANCE": "pod-b"})
        assert done.returncode == 1, done.stderr
        retired = not any(a.get("instance") == "pod-a" for a in watched.firing("fleet"))
    assert retired, "the gone pod's group kept alerting"
    assert time.monotonic() - before >= 8  # not before its retire_after
    wait_for("the live pod's failed alert", lambda: any(
        a["alertname"] == "JobreportJobFailed" and a.get("instance") == "pod-b"
        for a in watched.firing("fleet")), timeout=WAIT)
    assert overdue("alone", "pod-z"), watched.firing("alone")


def doc_block(start: str) -> str:
    """The shell block of docs/containers.md that starts with ``start``, its continued lines
    joined."""
    text = (ROOT / "docs" / "containers.md").read_text()
    for block in re.findall(r"```sh\n(.*?)```", text, flags=re.S):
        if block.startswith(start):
            return str(block.replace("\\\n", " ").strip())
    raise AssertionError(f"no block starting with {start!r} in docs/containers.md")


def test_the_docker_run_line_keeps_one_group_per_docker_host(
        gateway: Gateway, tmp_path: Path) -> None:
    """The documented `docker run` line, run as Docker would run it twice on one host (a new
    container each time: a new HOME, the container's id as its host name, no Kubernetes):
    one group, the Docker host's name as its instance, the counters counting on."""
    argv = shlex.split(doc_block("docker run"))
    assert argv[:3] == ["docker", "run", "--rm"]
    env: dict[str, str] = {}
    i = 3
    while argv[i] == "-e":
        name, _, value = argv[i + 1].partition("=")
        env[name] = value
        i += 2
    image, command = argv[i], argv[i + 1:]
    assert "/" in image and command[:2] == ["jobreport", "run"]
    assert env.pop("JOBREPORT_GATEWAY").startswith("http")
    assert env["JOBREPORT_INSTANCE"] == "$(hostname)"  # the shell expands it on the host
    env["JOBREPORT_INSTANCE"] = os.uname().nodename
    containers = Pods(tmp_path / "containers", kubernetes=False,
                      JOBREPORT_GATEWAY=gateway.url)
    job = command[command.index("--job") + 1]
    runnable = [*command[2:command.index("--") + 1], "true"]
    for _ in range(2):
        done = containers.run(["run", *runnable], extra=env, host=os.urandom(6).hex())
        assert done.returncode == 0, done.stderr
    assert [g["labels"] for g in gateway.groups()] == [
        {"job": job, "instance": os.uname().nodename}]
    assert gateway.samples(job)['jobreport_runs_total{outcome="success"}'] == 2


def test_the_ci_line_keeps_one_group_whichever_runner_runs_it(
        gateway: Gateway, tmp_path: Path) -> None:
    """The documented CI line, run on three runners (a fresh workspace and host name each):
    one group without an instance, the counters and the failure streak counting on."""
    argv = shlex.split(doc_block("jobreport run --job nightly-export"))
    runners = Pods(tmp_path / "runners", kubernetes=False, JOBREPORT_GATEWAY=gateway.url)
    job = argv[argv.index("--job") + 1]
    for n, code in enumerate((0, 1, 1)):
        ran = [*argv[1:argv.index("--") + 1], "sh", "-c", f"exit {code}"]
        done = runners.run(ran, host=f"runner-{n}")
        assert done.returncode == code, done.stderr
    assert [g["labels"] for g in gateway.groups()] == [{"job": job}]
    held = {k.replace('instance="",', "").replace('{instance=""}', ""): v
            for k, v in gateway.samples(job).items()}
    assert held['jobreport_runs_total{outcome="failure"}'] == 2
    assert held["jobreport_consecutive_failures"] == 2
