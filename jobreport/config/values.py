"""One converter per setting: each takes the raw value (flag, environment or file) and
returns the typed one or raises ``ValueError`` saying why not.

A new setting is an entry in ``CONVERTERS`` (and a field of ``Config``); its environment
variable follows from its name (``env_name``).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from urllib.parse import urlsplit

from jobreport.durations import setting_seconds
from jobreport.errors import InvalidNameError
from jobreport.names import check_namespace
from jobreport.numbers import setting_whole
from jobreport.spec import parse_labels

# not typing's TYPE_CHECKING: a setting typed as a flag of `jobreport run` is checked here
# before its command starts
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

__all__ = ["CONVERTERS", "ENV_ONLY", "env_name", "parse_labels"]


def _gateway(value: object) -> str | None:
    text = str(value).strip()
    if not text:
        return None
    given = text

    def shown() -> str:
        # every message shows the URL through jobreport.secrets (it may hold a password),
        # loaded only then: a typed --gateway is checked before the command starts
        from jobreport.secrets import mask_url

        return mask_url(given)

    if "://" not in text:
        text = "http://" + text
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https"):
        raise ValueError(f"{shown()!r}: use an http:// or https:// URL, e.g. http://127.0.0.1:9091")
    try:
        parts.port  # noqa: B018  (raises ValueError on a bad port)
    except ValueError:
        hint = (" (a password holding / @ or % must be percent-encoded, or set in "
                "JOBREPORT_PASSWORD)" if "@" in text else "")
        raise ValueError(f"{shown()!r}: the port is not a number from 1 to 65535{hint}") from None
    if not parts.hostname:
        raise ValueError(f"{shown()!r}: the URL has no host, e.g. http://127.0.0.1:9091")
    try:
        parts.hostname.encode("idna")  # what the HTTP client will do with it
    except UnicodeError:
        raise ValueError(f"{shown()[:60]!r}: the host name is not valid (a part of it is "
                         "empty or longer than 63 characters)") from None
    if parts.query or parts.fragment:
        raise ValueError(f"{shown()!r}: the URL must not have a query or fragment")
    return text.rstrip("/")


def _remote_write_url(value: object) -> str | None:
    # the same rules as the gateway's URL; the path is the receiver's (/api/v1/write, ...)
    return _gateway(value)


def _db(value: object) -> str:
    text = str(value).strip()
    if not text:
        raise ValueError("empty; use an SQLAlchemy URL such as sqlite:////var/lib/jobreport.db")
    if "://" not in text:  # a plain path means an SQLite file
        return f"sqlite:///{os.path.abspath(os.path.expanduser(text))}"
    return text


def _setting(name: str) -> Callable[[object], float]:
    """The converter of duration setting ``name``, held to its documented range."""
    def convert(value: object) -> float:
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            raise ValueError(f"{value!r} is not a duration (use e.g. 90s, 26h, 1h30m)")
        return setting_seconds(name, value)
    return convert


def _bool(value: object) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off", ""):
        return False
    raise ValueError(f"{value!r} is not a boolean (use true or false)")


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
    if any(len(os.fsencode(part)) > 255 for part in text.split("/")) or len(text) > 4095:
        raise ValueError(f"{text[:40]!r}...: too long for a path (255 bytes a name)")
    return os.path.expanduser(text) if text else None


def _limit(name: str) -> Callable[[object], int]:
    """A retention limit: a whole number from 0 (no limit) to its most
    (``jobreport.numbers.SETTING_LIMITS``)."""
    return lambda value: setting_whole(name, value)


#: Every setting a flag, ``JOBREPORT_<NAME>`` or the config file can give, and its converter.
CONVERTERS: dict[str, Callable[[object], Any]] = {
    "gateway": _gateway,
    "db": _db,
    "namespace": _namespace,
    "instance": _text,
    "no_instance": _bool,
    "labels": parse_labels,
    "timeout": _setting("timeout"),
    "budget": _setting("budget"),
    "start_budget": _setting("start_budget"),
    "username": _text,
    "password_file": _path,
    "token_file": _path,
    "ca_bundle": _path,
    "client_cert": _path,
    "client_key": _path,
    "tls_verify": _bool,
    # the other sinks (issue 13): remote write 1.0 and node_exporter's textfile directory
    "remote_write_url": _remote_write_url,
    "textfile_dir": _path,
    # a bounded store (issue 23): what each group keeps of its runs
    "keep_days": _limit("keep_days"),
    "keep_runs": _limit("keep_runs"),
}
#: The two secrets: only from the environment (or a ``*_file`` setting), never a flag.
ENV_ONLY = {"password": "JOBREPORT_PASSWORD", "token": "JOBREPORT_TOKEN"}


def env_name(setting: str) -> str:
    """The environment variable that sets ``setting``."""
    return ENV_ONLY.get(setting, f"JOBREPORT_{setting.upper()}")
