"""Secrets: the one place that masks them and refuses the ones that cannot be sent.

Everything jobreport shows or keeps (messages, ``jobreport check``, ``last_error`` in the
store, the stored output tail) goes through ``mask``; every URL shown goes through
``mask_url``. Both work on malformed text too: a URL that does not parse must not be echoed
whole, and a password holding ``/``, ``@`` or ``%`` must not split the URL where a parser
would.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterable
from typing import TYPE_CHECKING, Protocol
from urllib.parse import quote, quote_plus, unquote

if TYPE_CHECKING:
    import logging

__all__ = [
    "MASK",
    "MIN_MASKED_LENGTH",
    "HoldsSecrets",
    "SecretFilter",
    "config_secrets",
    "mask",
    "mask_url",
    "refuse_control_characters",
    "remember",
]

MASK = "***"


class HoldsSecrets(Protocol):
    """What holds the secrets to mask: ``jobreport.config.Config`` (named by its shape, so
    that this small room does not import the settings, which import it)."""

    @property
    def password(self) -> str | None: ...
    @property
    def token(self) -> str | None: ...
    @property
    def db(self) -> str: ...
    @property
    def gateway(self) -> str | None: ...

#: Secret values shorter than this are masked inside URLs only: replacing every ``ab`` in a
#: message would make it unreadable and tell a reader which letters the secret holds.
MIN_MASKED_LENGTH = 4

# scheme://  then the userinfo: everything up to the last "@" of the authority. The
# authority may hold "/" or "@" when a password was written unencoded, so the userinfo ends
# at the LAST "@" before whitespace or a quote -- except the Pushgateway's own "@base64"
# marker in a group path (``/job@base64/...``), which is not the end of a password.
_URL = re.compile(r"""(?P<scheme>\b[A-Za-z][A-Za-z0-9+.\-]*://)(?P<rest>[^\s'"<>]*)""")
_NO_SCHEME = re.compile(r"""^(?P<rest>[^\s'"<>/]*:[^\s'"<>]*@[^\s'"<>]*)$""")
_AT = re.compile(r"@(?!base64(?:/|$))")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def mask_url(url: str) -> str:
    """``url`` with the password (``user:***@``) or a bare user part (``***@``) masked.

    Works on malformed URLs (``ftp://``, no host, a bad port, a password holding ``/``,
    ``@`` or ``%``) and on ``user:pass@host`` without a scheme; text without credentials
    comes back unchanged.
    """
    match = _URL.fullmatch(url)
    if match is not None:
        return match["scheme"] + _mask_authority(match["rest"])
    if _NO_SCHEME.match(url):
        return _mask_authority(url)
    return mask(url) if "://" in url else url


def _mask_authority(rest: str) -> str:
    """``rest`` (what follows ``scheme://``) with its userinfo masked."""
    if rest.startswith("/"):
        return rest  # no authority at all (sqlite:////path@x.db): nothing to hide
    ats = [m.start() for m in _AT.finditer(rest.split("?", 1)[0].split("#", 1)[0])]
    if not ats:
        return rest
    end = ats[-1]
    userinfo, host = rest[:end], rest[end + 1:]
    user, colon, _password = userinfo.partition(":")
    if colon and "/" not in user and user:
        return f"{user}:{MASK}@{host}"
    return f"{MASK}@{host}"


def mask(text: str, secrets: Iterable[str | None] = ()) -> str:
    """``text`` with every known secret value and every URL's credentials masked.

    ``secrets`` are the values to hide (None and empty ones are skipped); the secrets
    ``remember`` was given are hidden too. A value is also hidden in its percent-encoded
    form, as it appears inside a URL.
    """
    values = {s for s in secrets if s} | _remembered()
    for value in sorted(values, key=len, reverse=True):
        for form in {value, quote(value, safe=""), quote_plus(value, safe="")}:
            if len(form) >= MIN_MASKED_LENGTH and form in text:
                text = text.replace(form, MASK)
    if "@" in text:
        text = _URL.sub(lambda m: m["scheme"] + _mask_authority(m["rest"]), text)
    return text


def refuse_control_characters(value: str) -> str:
    """``value`` if it holds no newline or other control character; otherwise ValueError
    with a message that does not show the value (it is a secret)."""
    found = _CONTROL.search(value)
    if found is not None:
        what = "a newline" if found.group() in "\r\n\u2028\u2029" else "a control character"
        raise ValueError(f"the secret contains {what} at position {found.start() + 1} "
                         "(its value is not shown); remove it (a secret file may end with "
                         "one newline, nothing more)")
    return value


def config_secrets(config: HoldsSecrets) -> tuple[str, ...]:
    """The secret values ``config`` holds: password, token and the store URL's password
    (with the pieces of it between ``/``, ``@`` and ``:``)."""
    found = [config.password, config.token]
    for url in (config.db, config.gateway or ""):
        password = _url_password(url)
        if password:
            # a parser that split the URL at a "/" or "@" inside the password shows a piece
            # of it as a host or a path in its own error: hide the pieces too
            found += [password, *re.split(r"[/@:]", password)]
    return tuple(dict.fromkeys(s for s in found if s))


def _url_password(url: str) -> str | None:
    match = _URL.fullmatch(url)
    if match is None:
        return None
    rest = match["rest"]
    if rest.startswith("/"):
        return None
    ats = [m.start() for m in _AT.finditer(rest.split("?", 1)[0])]
    if not ats:
        return None
    _user, colon, password = rest[:ats[-1]].partition(":")
    return unquote(password) if colon and password else None


# --- the secrets of this process, for every log message ------------------------------------

_lock = threading.Lock()
_known: set[str] = set()


def _remembered() -> frozenset[str]:
    with _lock:
        return frozenset(_known)


def remember(config: HoldsSecrets) -> None:
    """Mask ``config``'s secrets in every later ``mask`` and in every message of the
    ``jobreport`` logger (installs ``SecretFilter`` on it once)."""
    import logging  # not at the top: it is off the path of `jobreport run` (see logger.py)

    with _lock:
        _known.update(config_secrets(config))
        logger = logging.getLogger("jobreport")
        if not any(isinstance(f, SecretFilter) for f in logger.filters):
            logger.addFilter(SecretFilter())


class SecretFilter:
    """Masks the remembered secrets and URL credentials in a record's message (a logging
    filter: logging takes any object with this ``filter`` method)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        masked = mask(message)
        if masked != message:
            record.msg, record.args = masked, ()
        return True
