"""Where settings come from on disk: the config file (TOML, with ``[jobs.NAME]`` sections,
each a job's ``JobSpec``) and secret files."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from jobreport.config.values import CONVERTERS, env_name
from jobreport.errors import ConfigError, InvalidNameError
from jobreport.names import check_job
from jobreport.spec import CONFIG, FIELDS, JobSpec, SpecError, parse_labels

__all__ = ["FILE_KEYS", "JOB_KEYS", "find_config_file", "read_jobs", "read_secret", "read_toml"]

FILE_KEYS = frozenset(CONVERTERS) | {"jobs"}
#: The keys of a ``[jobs.NAME]`` section: its labels, and the spec's fields with that door.
JOB_KEYS = frozenset({"labels", *(f.name for f in FIELDS if CONFIG in f.doors)})


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


def _raise(error: ConfigError) -> None:
    raise error


def read_jobs(section: object, source: str,
              fail: Callable[[ConfigError], None] = _raise) -> dict[str, JobSpec]:
    """The ``[jobs.NAME]`` sections, each a ``JobSpec`` held to the ranges and checked for
    contradictions. ``fail`` gets each problem: by default it raises it; given one that
    returns (``load_config(strict=False)``), the bad value (or the section) is left out."""
    if not isinstance(section, Mapping):
        fail(ConfigError("jobs", source, "must be a table of [jobs.NAME] sections"))
        return {}
    jobs = {}
    for name, settings in section.items():
        where = f"jobs.{name}"
        try:
            check_job(name)
        except InvalidNameError as e:
            fail(ConfigError(where, source, str(e)))
            continue
        if not isinstance(settings, Mapping):
            fail(ConfigError(where, source, "must be a table"))
            continue
        for key in sorted(set(settings) - JOB_KEYS):
            fail(ConfigError(f"{where}.{key}", source,
                             f"unknown setting; known: {', '.join(sorted(JOB_KEYS))}"))
        labels: dict[str, str] = {}
        if "labels" in settings:
            try:
                labels = parse_labels(settings["labels"])
            except ValueError as e:
                fail(ConfigError(f"{where}.labels", source, str(e)))
        values: dict[str, Any] = {key: value for key, value in settings.items()
                                  if key in JOB_KEYS and key != "labels"}
        spec = None
        while spec is None:  # each round leaves out one more bad value: bounded by the keys
            try:
                spec = JobSpec.checked(name, values, labels=labels, door=CONFIG)
            except SpecError as e:
                fail(ConfigError(f"{where}.{e.name}", source, e.problem))
                values.pop(e.name)
        jobs[name] = spec
    return jobs


def read_secret(path: str) -> str:
    """A secret from a file (surrounding whitespace removed)."""
    try:
        with open(path, encoding="utf-8") as f:
            return f.read().strip()
    except OSError as e:
        raise ConfigError("secret file", path, f"cannot read {path}: {e.strerror}") from None
