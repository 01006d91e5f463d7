"""Helpers for the monitoring tests: test copies of the shipped Prometheus and Alertmanager
configs (real ports, short intervals), Prometheus queries, and a webhook receiver that
records what Alertmanager sends."""

from __future__ import annotations

import json
import shutil
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, TypeVar

import yaml

ROOT = Path(__file__).resolve().parent.parent
MONITORING = ROOT / "monitoring"
RULES = MONITORING / "rules"
SHIPPED_RULE_FILES = (RULES / "jobreport-recording.yml", RULES / "jobreport-alerts.yml")

PROMTOOL = shutil.which("promtool") or "/usr/bin/promtool"
AMTOOL = shutil.which("amtool") or "/usr/bin/amtool"

T = TypeVar("T")


def load_yaml(path: Path) -> Any:
    with open(path, encoding="utf-8") as f:
        return yaml.safe_load(f)


def write_yaml(path: Path, data: Any) -> Path:
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


def prometheus_test_config(
    path: Path,
    *,
    gateway_port: int,
    alertmanager_port: int | None = None,
    interval: str = "1s",
    rule_files: tuple[Path, ...] = SHIPPED_RULE_FILES,
) -> Path:
    """Write the shipped prometheus.yml with the real ports, ``interval`` for scraping and
    rule evaluation, and absolute rule paths; everything else (honor_labels, job names) is
    kept as shipped."""
    config = load_yaml(MONITORING / "prometheus.yml")
    config["global"]["scrape_interval"] = interval
    config["global"]["evaluation_interval"] = interval
    config["rule_files"] = [str(p) for p in rule_files]
    scrapes = [s for s in config["scrape_configs"] if s["job_name"] == "pushgateway"]
    assert len(scrapes) == 1, "prometheus.yml must have one scrape job named pushgateway"
    for static in scrapes[0]["static_configs"]:
        static["targets"] = [f"127.0.0.1:{gateway_port}"]
    if alertmanager_port is None:
        config.pop("alerting", None)
    else:
        for am in config["alerting"]["alertmanagers"]:
            for static in am["static_configs"]:
                static["targets"] = [f"127.0.0.1:{alertmanager_port}"]
    return write_yaml(path, config)


def alertmanager_test_config(path: Path, *, webhook_url: str, wait: str = "1s",
                             source: Path = MONITORING / "alertmanager.yml") -> Path:
    """Write the shipped alertmanager.yml (or ``source``, an exported one) with every
    webhook pointed at ``webhook_url`` + ``/<receiver name>``, the email and Slack
    placeholders removed (nothing may leave the machine) and the grouping waits shortened to
    ``wait``; routes and inhibitions as shipped."""
    config = load_yaml(source)
    for receiver in config["receivers"]:
        receiver.pop("email_configs", None)
        receiver.pop("slack_configs", None)
        receiver["webhook_configs"] = [
            {**hook, "url": f"{webhook_url}/{receiver['name']}"}
            for hook in receiver.get("webhook_configs", [])
        ]
        assert receiver["webhook_configs"], f"receiver {receiver['name']} has no webhook"

    def shorten(route: dict[str, Any]) -> None:
        for key in ("group_wait", "group_interval"):
            if key in route or route is config["route"]:
                route[key] = wait
        for child in route.get("routes", []):
            shorten(child)

    shorten(config["route"])
    return write_yaml(path, config)


def prom_get(base_url: str, path: str, **params: str) -> dict[str, Any]:
    """GET a Prometheus API path; returns the JSON body, also for a 4xx answer."""
    url = f"{base_url}{path}"
    if params:
        url += "?" + urllib.parse.urlencode(params)
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            data: dict[str, Any] = json.load(r)
    except urllib.error.HTTPError as e:
        data = json.load(e)
        data.setdefault("http_status", e.code)
    return data


def prom_query(base_url: str, expr: str) -> dict[str, Any]:
    return prom_get(base_url, "/api/v1/query", query=expr)


def wait_for(what: str, fn: Callable[[], T | None], timeout: float,
             interval: float = 0.25) -> T:
    """Call ``fn`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = fn()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


@dataclass
class Notification:
    """One webhook call from Alertmanager."""

    received: float  # time.time() when it arrived
    receiver: str  # path of the URL: the receiver name
    body: dict[str, Any]

    def alerts(self) -> Iterator[dict[str, Any]]:
        yield from self.body.get("alerts", [])


@dataclass
class WebhookReceiver:
    """A loopback HTTP server that records every POST Alertmanager makes."""

    notifications: list[Notification] = field(default_factory=list)
    _server: ThreadingHTTPServer | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> WebhookReceiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                body = json.loads(self.rfile.read(length) or b"{}")
                with receiver._lock:
                    receiver.notifications.append(
                        Notification(time.time(), self.path.strip("/"), body))
                self.send_response(200)
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def received(self) -> list[tuple[Notification, dict[str, Any]]]:
        """Every (notification, alert) pair received so far, oldest first."""
        with self._lock:
            return [(n, a) for n in self.notifications for a in n.alerts()]

    def first(self, status: str = "firing",
              **labels: str) -> tuple[Notification, dict[str, Any]] | None:
        """The first received alert with ``status`` whose labels include ``labels``."""
        for n, alert in self.received():
            if alert.get("status") == status and all(
                    alert["labels"].get(k) == v for k, v in labels.items()):
                return n, alert
        return None


# --- promtool unit tests written by a test ----------------------------------------------


@dataclass
class ExpectedAlert:
    """One alert a promtool unit test expects to fire: its name, labels and annotations
    (as Prometheus holds them, templates expanded)."""

    name: str
    labels: dict[str, str]
    annotations: dict[str, str]


def alert_unit_test(path: Path, rule_files: list[Path], alerts: list[ExpectedAlert],
                    eval_time: str = "11m") -> Path:
    """Write a promtool unit test: no input series at all, and at ``eval_time`` exactly
    ``alerts`` firing, per alert name."""
    by_name: dict[str, list[ExpectedAlert]] = {}
    for alert in alerts:
        by_name.setdefault(alert.name, []).append(alert)
    checks = [{"eval_time": eval_time, "alertname": name,
               "exp_alerts": [{"exp_labels": a.labels, "exp_annotations": a.annotations}
                              for a in expected]}
              for name, expected in by_name.items()]
    return write_yaml(path, {"rule_files": [str(p) for p in rule_files],
                             "evaluation_interval": "1m",
                             "tests": [{"interval": "1m", "input_series": [],
                                        "alert_rule_test": checks}]})


def expand_labels(template: str, labels: dict[str, str]) -> str:
    """``template`` as Prometheus expands it, for templates that use nothing but
    ``{{ $labels.NAME }}`` (the shipped summaries and descriptions); AssertionError for
    anything else."""
    import re

    expanded = re.sub(r"\{\{ \$labels\.(\w+) \}\}", lambda m: labels.get(m.group(1), ""),
                      template)
    assert "{{" not in re.sub(r"\{\{ \$labels\.(\w+) \}\}", "", template), template
    return expanded


def rule_alerts(path: Path) -> dict[str, dict[str, Any]]:
    """alert name -> rule, of every alerting rule in the rules file ``path`` (the last one
    of a name)."""
    return {rule["alert"]: rule for group in load_yaml(path)["groups"]
            for rule in group["rules"] if "alert" in rule}
