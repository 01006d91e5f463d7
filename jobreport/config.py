"""Settings, resolved once into a frozen ``Config``.

Precedence: flag (keyword overrides) > environment (``JOBREPORT_*``, ``PUSHGATEWAY_URL`` as a
fallback for the gateway) > TOML file (``JOBREPORT_CONFIG``, else
``$XDG_CONFIG_HOME/jobreport/jobreport.toml``, else ``/etc/jobreport/jobreport.toml``) >
defaults. Nothing is read at import time. Secrets (password, token) come from the environment
or from a file, never from a flag, and never appear in ``repr(config)``.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit

from jobreport.durations import parse_duration
from jobreport.errors import ConfigError, InvalidNameError
from jobreport.names import check_job, check_labels, check_namespace
from jobreport.secrets import refuse_control_characters

__all__ = ["Config", "JobSettings", "default_db_url", "load_config", "parse_labels", "state_dir"]

log = logging.getLogger("jobreport")


@dataclass(frozen=True)
class JobSettings:
    """Per-job settings from a ``[jobs.NAME]`` section of the config file."""

    expect_every: float | None = None
    max_runtime: float | None = None
    grace: float | None = None
    labels: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Config:
    """Everything jobreport needs to know, resolved once."""

    gateway: str | None = None
    db: str = ""
    namespace: str = "jobreport"
    instance: str | None = None
    labels: Mapping[str, str] = field(default_factory=dict)
    timeout: float = 5.0
    budget: float = 10.0
    start_budget: float = 1.0
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    token: str | None = field(default=None, repr=False)
    ca_bundle: str | None = None
    client_cert: str | None = None
    client_key: str | None = None
    tls_verify: bool = True
    jobs: Mapping[str, JobSettings] = field(default_factory=dict)
    config_file: str | None = None
    sources: Mapping[str, str] = field(default_factory=dict, compare=False)

    def job(self, name: str) -> JobSettings:
        """The settings of job ``name`` from the config file (empty when it has none)."""
        return self.jobs.get(name, JobSettings())

    def grouping(self, job: str, labels: Mapping[str, str] | None = None) -> dict[str, str]:
        """The grouping key of ``job``'s group: job, instance, then the extra labels."""
        key = {"job": job}
        if self.instance is not None:
            key["instance"] = self.instance
        key.update(self.labels)
        key.update(self.job(job).labels)
        key.update(labels or {})
        return key

    def with_overrides(self, **changes: Any) -> Config:
        """A copy with some fields replaced (used by tests and the CLI)."""
        return replace(self, **changes)


def state_dir(env: Mapping[str, str] | None = None) -> Path:
    """``$XDG_STATE_HOME/jobreport``, by default ``~/.local/state/jobreport``."""
    env = os.environ if env is None else env
    base = env.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
    return Path(base) / "jobreport"


def default_db_url(env: Mapping[str, str] | None = None) -> str:
    """The default store: SQLite under the XDG state directory."""
    return f"sqlite:///{state_dir(env) / 'jobreport.db'}"


# --- converters: each takes the raw value and returns the typed one or raises ValueError ---


def _gateway(value: object) -> str | None:
    text = str(value).strip()
    if not text:
        return None
    if "://" not in text:
        text = "http://" + text
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https"):
        raise ValueError(f"{value!r}: use an http:// or https:// URL, e.g. http://127.0.0.1:9091")
    try:
        parts.port  # noqa: B018  (raises ValueError on a bad port)
    except ValueError:
        raise ValueError(f"{value!r}: the port is not a number from 1 to 65535") from None
    if not parts.hostname:
        raise ValueError(f"{value!r}: the URL has no host, e.g. http://127.0.0.1:9091")
    if parts.query or parts.fragment:
        raise ValueError(f"{value!r}: the URL must not have a query or fragment")
    return text.rstrip("/")


def _db(value: object) -> str:
    text = str(value).strip()
    if not text:
        raise ValueError("empty; use an SQLAlchemy URL such as sqlite:////var/lib/jobreport.db")
    if "://" not in text:  # a plain path means an SQLite file
        return f"sqlite:///{os.path.abspath(os.path.expanduser(text))}"
    return text


def _seconds(value: object) -> float:
    if isinstance(value, str | int | float):
        return parse_duration(value)
    raise ValueError(f"{value!r} is not a duration (use e.g. 90s, 26h, 1h30m)")


def _positive_seconds(value: object) -> float:
    seconds = _seconds(value)
    if seconds <= 0:
        raise ValueError(f"{value!r}: must be more than zero")
    return seconds


def _bool(value: object) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off", ""):
        return False
    raise ValueError(f"{value!r} is not a boolean (use true or false)")


def parse_labels(value: object) -> dict[str, str]:
    """Labels from a mapping or from ``k=v,k2=v2`` text, checked; ValueError says why not."""
    if isinstance(value, Mapping):
        pairs = {str(k): v for k, v in value.items()}
    elif isinstance(value, str):
        pairs = {}
        for item in filter(None, (p.strip() for p in value.split(","))):
            name, sep, val = item.partition("=")
            if not sep:
                raise ValueError(f"{item!r} is not k=v (write labels as k=v,k2=v2)")
            pairs[name.strip()] = val
    else:
        raise ValueError(f"{value!r} is not a set of labels (write k=v,k2=v2)")
    try:
        return check_labels(pairs)
    except InvalidNameError as e:
        raise ValueError(str(e)) from None


def _namespace(value: object) -> str:
    try:
        return check_namespace(value)
    except InvalidNameError as e:
        raise ValueError(str(e)) from None


def _text(value: object) -> str | None:
    text = str(value).strip()
    return text or None


def _path(value: object) -> str | None:
    text = str(value).strip()
    return os.path.expanduser(text) if text else None


_CONVERT: dict[str, Callable[[object], Any]] = {
    "gateway": _gateway,
    "db": _db,
    "namespace": _namespace,
    "instance": _text,
    "no_instance": _bool,
    "labels": parse_labels,
    "timeout": _positive_seconds,
    "budget": _seconds,
    "start_budget": _seconds,
    "username": _text,
    "password_file": _path,
    "token_file": _path,
    "ca_bundle": _path,
    "client_cert": _path,
    "client_key": _path,
    "tls_verify": _bool,
}
#: Settings read from the environment, as ``JOBREPORT_<NAME>``, plus the two secrets.
_ENV_ONLY = {"password": "JOBREPORT_PASSWORD", "token": "JOBREPORT_TOKEN"}
_FILE_KEYS = frozenset(_CONVERT) | {"jobs"}
_JOB_KEYS = frozenset({"expect_every", "max_runtime", "grace", "labels"})


def env_name(setting: str) -> str:
    """The environment variable that sets ``setting``."""
    return _ENV_ONLY.get(setting, f"JOBREPORT_{setting.upper()}")


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
    env = os.environ if env is None else env
    unknown = set(overrides) - set(_CONVERT) - {"config_file"}
    if unknown:
        raise TypeError(f"unknown settings: {', '.join(sorted(unknown))}")

    def fail(error: ConfigError) -> None:
        if strict:
            raise error
        log.warning("jobreport: ignoring %s; using the default", error)

    try:
        file_path, file_source = _find_config_file(overrides.get("config_file"), env)
    except ConfigError as e:
        fail(e)
        file_path, file_source = None, "default"
    file_values: dict[str, Any] = {}
    if file_path is not None:
        try:
            file_values = _read_toml(file_path, file_source)
        except ConfigError as e:
            fail(e)

    raw: dict[str, tuple[object, str]] = {}
    for name in _CONVERT:
        if overrides.get(name) is not None:
            raw[name] = (overrides[name], "flag")
        elif env.get(env_name(name), "") != "":
            raw[name] = (env[env_name(name)], f"env {env_name(name)}")
        elif name == "gateway" and env.get("PUSHGATEWAY_URL"):
            raw[name] = (env["PUSHGATEWAY_URL"], "env PUSHGATEWAY_URL")
        elif name in file_values:
            raw[name] = (file_values[name], f"file {file_path}")

    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for name, (value, source) in raw.items():
        try:
            values[name] = _CONVERT[name](value)
            sources[name] = source
        except ValueError as e:
            fail(ConfigError(name, source, str(e)))

    gateway = values.get("gateway")
    if gateway and "@" in urlsplit(gateway).netloc:
        # credentials written into the URL become basic auth, so that the URL itself can be
        # shown anywhere (check, errors, logs) without them
        parts = urlsplit(gateway)
        if parts.username and "username" not in values:
            values["username"] = unquote(parts.username)
            sources["username"] = sources["gateway"]
        if parts.password and not env.get(env_name("password")):
            values["password"] = unquote(parts.password)
            sources["password"] = sources["gateway"]
        host = parts.hostname or ""
        if ":" in host:
            host = f"[{host}]"
        netloc = f"{host}:{parts.port}" if parts.port else host
        values["gateway"] = urlunsplit((parts.scheme, netloc, parts.path, "", ""))

    for secret, file_key in (("password", "password_file"), ("token", "token_file")):
        if env.get(env_name(secret)):
            values[secret] = env[env_name(secret)]
            sources[secret] = f"env {env_name(secret)}"
        elif values.get(file_key):
            try:
                values[secret] = _read_secret(values[file_key])
                sources[secret] = f"{sources[file_key]} (file {values[file_key]})"
            except ConfigError as e:
                fail(ConfigError(file_key, sources[file_key], e.problem))
        # (edge) a secret with a newline or another control character cannot be sent in a
        # header (requests would echo it in its error): refuse it without showing it
        if values.get(secret):
            try:
                refuse_control_characters(values[secret])
            except ValueError as e:
                del values[secret]
                fail(ConfigError(secret, sources.pop(secret), str(e)))

    jobs: dict[str, JobSettings] = {}
    if "jobs" in file_values:
        try:
            jobs = _jobs(file_values["jobs"], f"file {file_path}")
        except ConfigError as e:
            fail(e)

    no_instance = values.pop("no_instance", False)
    if no_instance:
        instance = None
        sources["instance"] = sources.get("no_instance", "flag")
    else:
        instance = values.pop("instance", None) or _hostname()
        sources.setdefault("instance", "default (host name)")
    values.pop("password_file", None)
    values.pop("token_file", None)
    values.pop("instance", None)
    values.setdefault("db", default_db_url(env))
    for name in ("gateway", "db", "namespace", "timeout", "budget", "start_budget",
                 "tls_verify", "labels"):
        sources.setdefault(name, "default")
    if values.get("gateway") is None:
        sources["gateway"] = "not set" if sources["gateway"] == "default" else sources["gateway"]
    return Config(
        instance=instance,
        jobs=jobs,
        config_file=str(file_path) if file_path is not None else None,
        sources=sources,
        **values,
    )


def _hostname() -> str:
    import socket

    return socket.gethostname() or "localhost"


def _find_config_file(
    flag: object, env: Mapping[str, str]
) -> tuple[Path | None, str]:
    if flag:
        path = Path(str(flag)).expanduser()
        if not path.is_file():
            raise ConfigError("config_file", "flag", f"{path} does not exist or is not a file")
        return path, "flag"
    if env.get("JOBREPORT_CONFIG"):
        path = Path(env["JOBREPORT_CONFIG"]).expanduser()
        if not path.is_file():
            raise ConfigError(
                "config_file", "env JOBREPORT_CONFIG", f"{path} does not exist or is not a file"
            )
        return path, "env JOBREPORT_CONFIG"
    xdg = env.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    for candidate in (Path(xdg) / "jobreport" / "jobreport.toml",
                      Path("/etc/jobreport/jobreport.toml")):
        if candidate.is_file():
            return candidate, "default"
    return None, "default"


def _read_toml(path: Path, source: str) -> dict[str, Any]:
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - exercised on Python 3.10 only
        import tomli as tomllib  # type: ignore[import-not-found,unused-ignore]
    try:
        with open(path, "rb") as f:
            data: dict[str, Any] = tomllib.load(f)
    except OSError as e:
        raise ConfigError("config_file", source, f"cannot read {path}: {e.strerror}") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError("config_file", source, f"{path} is not valid TOML: {e}") from None
    for secret in ("password", "token"):
        if secret in data:
            raise ConfigError(
                secret, f"file {path}",
                f"secrets do not belong in the config file; set {secret}_file = "
                f"\"/path/to/file\" or {env_name(secret)}",
            )
    unknown = set(data) - _FILE_KEYS
    if unknown:
        raise ConfigError(
            sorted(unknown)[0], f"file {path}",
            f"unknown setting; known: {', '.join(sorted(_FILE_KEYS))}",
        )
    return data


def _jobs(section: object, source: str) -> dict[str, JobSettings]:
    if not isinstance(section, Mapping):
        raise ConfigError("jobs", source, "must be a table of [jobs.NAME] sections")
    jobs = {}
    for name, settings in section.items():
        where = f"jobs.{name}"
        try:
            check_job(name)
        except InvalidNameError as e:
            raise ConfigError(where, source, str(e)) from None
        if not isinstance(settings, Mapping):
            raise ConfigError(where, source, "must be a table")
        unknown = set(settings) - _JOB_KEYS
        if unknown:
            raise ConfigError(
                f"{where}.{sorted(unknown)[0]}", source,
                f"unknown setting; known: {', '.join(sorted(_JOB_KEYS))}",
            )
        values: dict[str, Any] = {}
        for key, value in settings.items():
            try:
                values[key] = parse_labels(value) if key == "labels" else _seconds(value)
            except ValueError as e:
                raise ConfigError(f"{where}.{key}", source, str(e)) from None
        jobs[name] = JobSettings(**values)
    return jobs


def _read_secret(path: str) -> str:
    try:
        with open(path, encoding="utf-8") as f:
            return f.read().strip()
    except OSError as e:
        raise ConfigError("secret file", path, f"cannot read {path}: {e.strerror}") from None
