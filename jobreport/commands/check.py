"""``jobreport check``: the resolved settings with their sources (secrets masked), the store
and every configured sink, in one report."""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

from jobreport.config import Config
from jobreport.durations import format_duration
from jobreport.errors import ConfigError, DeliveryError, StoreError
from jobreport.paths import sqlite_path
from jobreport.secrets import config_secrets, mask, mask_url, remember
from jobreport.sinks.base import Probes, Sink, deadline_after

if TYPE_CHECKING:
    from jobreport.store.read_rows import Undelivered
    from jobreport.store.store import Store

__all__ = ["FAIL", "INFO", "OK", "WARN", "Check", "CheckReport", "run_checks"]

OK, INFO, WARN, FAIL = "ok", "info", "warn", "FAIL"
_SECRETS = ("password", "token")
_SHOWN = ("gateway", "remote_write_url", "textfile_dir", "db", "namespace", "instance",
          "labels", "timeout", "budget", "start_budget", "username", "password", "token",
          "ca_bundle", "client_cert", "client_key", "tls_verify")


@dataclass(frozen=True)
class Check:
    """One line of the report."""

    section: str
    name: str
    status: str
    detail: str


@dataclass
class CheckReport:
    checks: list[Check] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when nothing failed (warnings do not count)."""
        return all(c.status != FAIL for c in self.checks)

    def add(self, section: str, name: str, status: str, detail: str) -> None:
        self.checks.append(Check(section, name, status, detail))


def run_checks(config: Config, *, config_errors: list[ConfigError] | None = None,
               store: Store | None = None, sinks: list[Sink] | None = None) -> CheckReport:
    """Check ``config`` (``config_errors`` are problems already found loading it), the store
    and each configured sink (or ``sinks``). Never raises for what it checks."""
    remember(config)  # and in every warning logged meanwhile
    report = CheckReport()
    if sinks is None:
        from jobreport.sinks.configured import configured_sinks

        sinks = configured_sinks(config)
    _config_checks(report, config, config_errors or [])
    undelivered = _store_checks(report, config, store, sinks)
    _sink_checks(report, config, sinks, undelivered)
    # one last pass over everything shown: a secret must not leak through an error text
    secrets = config_secrets(config)
    report.checks = [replace(c, detail=mask(c.detail, secrets)) for c in report.checks]
    return report


def _config_checks(report: CheckReport, config: Config, errors: list[ConfigError]) -> None:
    for error in errors:
        report.add("config", error.setting, FAIL, f"{error.problem}  [{error.source}]")
    report.add("config", "config file", INFO, config.config_file or "none found")
    for name in _SHOWN:
        value = getattr(config, name)
        source = config.sources.get(name, "default")
        report.add("config", name, INFO, f"{_show(name, value)}  [{source}]")
    for path_setting in ("ca_bundle", "client_cert", "client_key"):
        path = getattr(config, path_setting)
        if path and not os.path.isfile(path):
            report.add("config", path_setting, FAIL, f"{path} does not exist")
    for job, settings in sorted(config.jobs.items()):
        parts = []
        if settings.expect_every is not None:
            parts.append(f"expect_every={format_duration(settings.expect_every)}")
        if settings.grace is not None:
            parts.append(f"grace={format_duration(settings.grace)}")
        if settings.max_runtime is not None:
            parts.append(f"max_runtime={format_duration(settings.max_runtime)}")
        if settings.labels:
            parts.append("labels=" + ",".join(f"{k}={v}" for k, v in settings.labels.items()))
        report.add("config", f"job {job}", INFO, " ".join(parts) or "no settings")


def _show(name: str, value: object) -> str:
    if name in _SECRETS:
        return "set (hidden)" if value else "not set"
    if value is None:
        return "none (no instance label)" if name == "instance" else "not set"
    if name in ("db", "gateway", "remote_write_url"):
        return mask_url(str(value))
    if isinstance(value, dict) or hasattr(value, "items"):
        return ",".join(f"{k}={v}" for k, v in value.items()) or "none"
    return str(value)


def _store_checks(report: CheckReport, config: Config, store: Store | None,
                  sinks: list[Sink]) -> list[Undelivered] | None:
    """The store's lines; what it has not delivered (None: it cannot be read), for the
    sinks' sections, which say it per sink."""
    shown = mask_url(config.db)
    try:
        if store is None:
            from jobreport.store.store import Store

            store = Store(config.db)
        store.ensure_schema()
        report.add("store", "open", OK, shown)
        report.add("store", "schema", OK, f"version {store.schema_version()}")
        size = store.size()
        report.add("store", "size", INFO, "unknown" if size is None else _bytes(size))
        report.add("store", "retention", INFO, _retention(config))
        problem = _not_writable(config.db)
        if problem:
            report.add("store", "writable", FAIL, problem)
        else:
            report.add("store", "writable", OK, "yes")
        undelivered = store.undelivered()
        # with no sink configured: the groups that no sink has ever had
        waiting = store.pending(_NO_SINK) if not sinks else []
    except StoreError as e:
        report.add("store", "open", FAIL, f"{e}; runs are pushed without history")
        return None
    if waiting:
        runs = sum(p.pending_runs for p in waiting)
        report.add("store", "pending", WARN,
                   f"{len(waiting)} group(s), {runs} run(s) kept for a sink (none is "
                   "configured): set one, then run `jobreport flush`")
    configured = {sink.name for sink in sinks}
    for item in undelivered:
        if item.sink is not None and item.sink not in configured and item.last_error:
            # a sink used before and not configured now: only the store still knows
            report.add("store", "delivery", WARN, item.describe())
    return undelivered


#: A sink name no sink has: the groups pending for it are those never delivered anywhere.
_NO_SINK = "(none)"


def _bytes(size: int) -> str:
    for unit, factor in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if size >= factor:
            return f"{size / factor:.1f} {unit} ({size} bytes)"
    return f"{size} bytes"


def _retention(config: Config) -> str:
    """What the store keeps of each group, and where each limit came from."""
    from jobreport.store.retention import TAILS_KEPT

    runs = (f"its newest {config.keep_runs} runs" if config.keep_runs
            else "all its runs")
    days = (f"runs of the last {config.keep_days} days" if config.keep_days
            else "runs of any age")
    return (f"each group keeps {runs} [{config.sources.get('keep_runs', 'default')}] and "
            f"{days} [{config.sources.get('keep_days', 'default')}], the output of its "
            f"newest {TAILS_KEPT}")


def _not_writable(db: str) -> str | None:
    path = sqlite_path(db)
    if path is None:
        return None  # other databases: creating the schema was the test
    directory = os.path.dirname(path) or "."
    if not os.access(path, os.W_OK):
        return f"{path} is not writable by this user"
    if not os.access(directory, os.W_OK):
        return f"{directory} is not writable (SQLite needs it for its journal)"
    return None


#: How long a probe of one sink may take (a person is waiting for the report).
PROBE_TIME = 2.0


def _sink_checks(report: CheckReport, config: Config, sinks: list[Sink],
                 undelivered: list[Undelivered] | None) -> None:
    """Each sink in a section of its own: where it is, whether it would take a delivery
    (reachable, credentials, writable), and what it has not received yet."""
    from jobreport.commands.backlogs import sink_backlogs

    if not sinks:
        report.add("sinks", "configured", FAIL,
                   "no Pushgateway set: runs are only kept in the store; set "
                   "JOBREPORT_GATEWAY (or --gateway, or gateway = ... in the config file)")
        return
    backlogs = {}
    if undelivered is not None:
        with contextlib.suppress(StoreError):  # (the store section said why)
            backlogs = {b.sink: b for b in sink_backlogs(config, sinks)}
    for sink in sinks:
        if isinstance(sink, Probes):
            report.add(sink.name, "where", INFO, sink.where)
            _probe(report, config, sink.name, sink)
        backlog = backlogs.get(sink.name)
        if backlog is not None:
            report.add(sink.name, "pending", WARN if backlog.groups else OK,
                       backlog.line().split(": ", 1)[1]
                       + ("; run `jobreport flush`" if backlog.groups else ""))
        failing = [u for u in undelivered or () if u.sink == sink.name and u.last_error]
        for item in failing[:_SHOWN_DELIVERIES]:
            report.add(sink.name, "delivery", WARN, item.describe())
        if len(failing) > _SHOWN_DELIVERIES:
            report.add(sink.name, "delivery", WARN,
                       f"and {len(failing) - _SHOWN_DELIVERIES} more group(s) with an error "
                       "(`jobreport history` lists them)")


#: A sink's section names at most this many groups that failed to be delivered.
_SHOWN_DELIVERIES = 5


def _probe(report: CheckReport, config: Config, name: str, sink: Probes) -> None:
    try:
        answered = sink.probe(deadline=deadline_after(min(config.timeout, PROBE_TIME)))
    except DeliveryError as e:
        if e.status in (401, 403):
            report.add(name, "reachable", OK, "answers")
            report.add(name, "auth", FAIL, str(e))
        else:
            report.add(name, "reachable", FAIL, str(e))
        return
    report.add(name, "reachable", OK, answered)
