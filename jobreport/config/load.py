"""``load_config``: resolve the settings once, in named steps.

Precedence: flag (keyword overrides) > environment (``JOBREPORT_*``, ``PUSHGATEWAY_URL`` as a
fallback for the gateway) > TOML file > defaults.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit

from jobreport.config.files import find_config_file, read_jobs, read_secret, read_toml
from jobreport.config.settings import Config, default_db_url
from jobreport.config.values import CONVERTERS, env_name
from jobreport.errors import ConfigError
from jobreport.logger import log
from jobreport.secrets import refuse_control_characters
from jobreport.spec import JobSpec

__all__ = ["load_config"]


#: Settings that always say where they came from, "default" when nothing set them.
_SHOWN = ("gateway", "db", "namespace", "timeout", "budget", "start_budget", "tls_verify",
          "labels", "keep_days", "keep_runs")


def load_config(
    *,
    env: Mapping[str, str] | None = None,
    strict: bool = True,
    **overrides: Any,
) -> Config:
    """Resolve the settings once: flags (``overrides``) > environment > file > defaults.

    ``overrides`` are keyed by setting name (``gateway``, ``db``, ``namespace``, ``instance``,
    ``no_instance``, ``labels``, ``timeout``, ``budget``, ``start_budget``, ``username``,
    ``password_file``, ``token_file``, ``ca_bundle``, ``client_cert``, ``client_key``,
    ``tls_verify``, ``config_file``); ``None`` means "not given".

    A bad value raises ``ConfigError`` naming the setting and where it came from. With
    ``strict=False`` (used where a job must run whatever the settings say) a bad value is
    logged as a warning and its default used instead; a bad gateway URL then means "no
    gateway", so runs are kept in the store for a later ``jobreport flush``.
    """
    unknown = set(overrides) - set(CONVERTERS) - {"config_file"}
    if unknown:
        raise TypeError(f"unknown settings: {', '.join(sorted(unknown))}")
    steps = _Resolution(env=os.environ if env is None else env, strict=strict)
    steps.read_file(overrides.get("config_file"))
    steps.convert(steps.pick_sources(overrides))
    steps.credentials_from_gateway_url()
    steps.read_secrets()
    steps.read_jobs()
    return steps.config()


class _Resolution:
    """The state of one ``load_config`` call, step by step."""

    def __init__(self, env: Mapping[str, str], strict: bool) -> None:
        self.env = env
        self.strict = strict
        self.file_path: Path | None = None
        self.file_values: dict[str, Any] = {}
        self.values: dict[str, Any] = {}
        self.sources: dict[str, str] = {}
        self.jobs: dict[str, JobSpec] = {}

    def fail(self, error: ConfigError) -> None:
        """Raise ``error`` (strict), or warn and go on with the default."""
        if self.strict:
            raise error
        log.warning("jobreport: ignoring %s; using the default", error)

    def read_file(self, flag: object) -> None:
        """Step 1: find and read the config file, if there is one."""
        try:
            self.file_path, source = find_config_file(flag, self.env)
        except ConfigError as e:
            self.fail(e)
            return
        if self.file_path is not None:
            try:
                self.file_values = read_toml(self.file_path, source)
            except ConfigError as e:
                self.fail(e)

    def pick_sources(self, overrides: Mapping[str, Any]) -> dict[str, tuple[object, str]]:
        """Step 2: for each setting, the raw value that wins and where it came from."""
        raw: dict[str, tuple[object, str]] = {}
        env = self.env
        for name in CONVERTERS:
            if overrides.get(name) is not None:
                raw[name] = (overrides[name], "flag")
            elif env.get(env_name(name), "") != "":
                raw[name] = (env[env_name(name)], f"env {env_name(name)}")
            elif name == "gateway" and env.get("PUSHGATEWAY_URL"):
                raw[name] = (env["PUSHGATEWAY_URL"], "env PUSHGATEWAY_URL")
            elif name in self.file_values:
                raw[name] = (self.file_values[name], f"file {self.file_path}")
        return raw

    def convert(self, raw: Mapping[str, tuple[object, str]]) -> None:
        """Step 3: turn each raw value into its type (a bad one fails or is dropped)."""
        for name, (value, source) in raw.items():
            try:
                self.values[name] = CONVERTERS[name](value)
                self.sources[name] = source
            except ValueError as e:
                self.fail(ConfigError(name, source, str(e)))

    def credentials_from_gateway_url(self) -> None:
        """Step 4: credentials written into the gateway URL become basic auth, so that the
        URL itself can be shown anywhere (check, errors, logs) without them."""
        gateway = self.values.get("gateway")
        if not gateway or "@" not in urlsplit(gateway).netloc:
            return
        parts = urlsplit(gateway)
        if parts.username and "username" not in self.values:
            self.values["username"] = unquote(parts.username)
            self.sources["username"] = self.sources["gateway"]
        if parts.password and not self.env.get(env_name("password")):
            self.values["password"] = unquote(parts.password)
            self.sources["password"] = self.sources["gateway"]
        host = parts.hostname or ""
        if ":" in host:
            host = f"[{host}]"
        netloc = f"{host}:{parts.port}" if parts.port else host
        self.values["gateway"] = urlunsplit((parts.scheme, netloc, parts.path, "", ""))

    def read_secrets(self) -> None:
        """Step 5: the password and token, from the environment or their files."""
        for secret, file_key in (("password", "password_file"), ("token", "token_file")):
            if self.env.get(env_name(secret)):
                self.values[secret] = self.env[env_name(secret)]
                self.sources[secret] = f"env {env_name(secret)}"
            elif self.values.get(file_key):
                try:
                    self.values[secret] = read_secret(self.values[file_key])
                    self.sources[secret] = (f"{self.sources[file_key]} "
                                            f"(file {self.values[file_key]})")
                except ConfigError as e:
                    self.fail(ConfigError(file_key, self.sources[file_key], e.problem))
            # (edge) a secret with a newline or another control character cannot be sent in
            # a header (requests would echo it in its error): refuse it without showing it
            if self.values.get(secret):
                try:
                    refuse_control_characters(self.values[secret])
                except ValueError as e:
                    del self.values[secret]
                    self.fail(ConfigError(secret, self.sources.pop(secret), str(e)))

    def read_jobs(self) -> None:
        """Step 6: the per-job sections of the config file (a bad value there fails, or is
        left out with a warning)."""
        if "jobs" in self.file_values:
            self.jobs = read_jobs(self.file_values["jobs"], f"file {self.file_path}",
                                  self.fail)

    def config(self) -> Config:
        """Step 7: the instance, the defaults, and the frozen ``Config``."""
        values, sources = self.values, self.sources
        if values.pop("no_instance", False):
            instance = None
            sources["instance"] = sources.get("no_instance", "flag")
        elif values.get("instance"):
            instance = values["instance"]
        elif self.env.get(_IN_A_POD):
            # a pod's host name is the pod's, new with every run of a CronJob: one group
            # per pod would leave a group behind per run, each overdue a day later
            instance = None
            sources["instance"] = (f"default in a Kubernetes pod ({_IN_A_POD} is set): "
                                   "none, one group per job and not per pod")
        else:
            instance = _hostname()
            sources["instance"] = "default (host name)"
        for name in ("password_file", "token_file", "instance"):
            values.pop(name, None)
        values.setdefault("db", default_db_url(self.env))
        for name in _SHOWN:
            sources.setdefault(name, "default")
        if values.get("gateway") is None and sources["gateway"] == "default":
            sources["gateway"] = "not set"
        return Config(
            instance=instance,
            jobs=self.jobs,
            config_file=str(self.file_path) if self.file_path is not None else None,
            sources=sources,
            **values,
        )


#: Set in every container Kubernetes starts (it names the API server's service).
_IN_A_POD = "KUBERNETES_SERVICE_HOST"


def _hostname() -> str:
    # what socket.gethostname() returns on POSIX, without importing socket first
    return os.uname().nodename or "localhost"
