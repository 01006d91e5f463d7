"""Where settings come from on disk: the config file (TOML, with ``[jobs.NAME]`` sections)
and secret files."""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from pathlib import Path

from jobreport.config.settings import JobSettings
from jobreport.config.values import (
    CONVERTERS,
    env_name,
    failure_count,
    parse_labels,
    schedule_expression,
    seconds,
    time_zone,
)
from jobreport.errors import ConfigError, InvalidNameError
from jobreport.names import check_job

TYPE_CHECKING = False  # not typing's: importing typing costs every `jobreport run`
if TYPE_CHECKING:
    from typing import Any

__all__ = ["FILE_KEYS", "JOB_KEYS", "find_config_file", "read_jobs", "read_secret", "read_toml"]

FILE_KEYS = frozenset(CONVERTERS) | {"jobs"}
#: How each key of a ``[jobs.NAME]`` section is read (a duration unless named here).
_JOB_CONVERTERS: dict[str, Any] = {
    "labels": parse_labels, "schedule": schedule_expression, "timezone": time_zone,
    "alert_after_failures": failure_count,
}
JOB_KEYS = frozenset({"expect_every", "max_runtime", "grace", "labels", "schedule", "timezone",
                      "min_runtime", "alert_after_failures"})


def find_config_file(flag: object, env: Mapping[str, str]) -> tuple[Path | None, str]:
    """The config file to read and where its name came from: the flag, then
    ``$JOBREPORT_CONFIG``, then the XDG and /etc defaults (None when there is none)."""
    if flag:
        path = Path(str(flag)).expanduser()
        if not os.path.isfile(path):  # False for a name too long, too
            raise ConfigError("config_file", "flag", f"{path} does not exist or is not a file")
        return path, "flag"
    if env.get("JOBREPORT_CONFIG"):
        path = Path(env["JOBREPORT_CONFIG"]).expanduser()
        if not os.path.isfile(path):  # False for a name too long, too
            raise ConfigError(
                "config_file", "env JOBREPORT_CONFIG", f"{path} does not exist or is not a file"
            )
        return path, "env JOBREPORT_CONFIG"
    xdg = env.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    for candidate in (Path(xdg) / "jobreport" / "jobreport.toml",
                      Path("/etc/jobreport/jobreport.toml")):
        if os.path.isfile(candidate):
            return candidate, "default"
    return None, "default"


def read_toml(path: Path, source: str) -> dict[str, Any]:
    """The config file's top-level table, with unknown keys and secrets refused."""
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
    unknown = set(data) - FILE_KEYS
    if unknown:
        raise ConfigError(
            sorted(unknown)[0], f"file {path}",
            f"unknown setting; known: {', '.join(sorted(FILE_KEYS))}",
        )
    return data


def read_jobs(section: object, source: str) -> dict[str, JobSettings]:
    """The ``[jobs.NAME]`` sections, checked."""
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
        unknown = set(settings) - JOB_KEYS
        if unknown:
            raise ConfigError(
                f"{where}.{sorted(unknown)[0]}", source,
                f"unknown setting; known: {', '.join(sorted(JOB_KEYS))}",
            )
        values: dict[str, Any] = {}
        for key, value in settings.items():
            try:
                convert = _JOB_CONVERTERS.get(key)
                values[key] = convert(value) if convert else seconds(value, key)
            except ValueError as e:
                raise ConfigError(f"{where}.{key}", source, str(e)) from None
        if "expect_every" in values and "schedule" in values:
            raise ConfigError(f"{where}.schedule", source,
                              "expect_every and schedule exclude each other; keep one")
        jobs[name] = JobSettings(**values)
    return jobs


def read_secret(path: str) -> str:
    """A secret from a file (surrounding whitespace removed)."""
    try:
        with open(path, encoding="utf-8") as f:
            return f.read().strip()
    except OSError as e:
        raise ConfigError("secret file", path, f"cannot read {path}: {e.strerror}") from None
