"""Secrets: the one place that masks them and refuses the ones that cannot be sent.

Everything jobreport shows or keeps (messages, ``jobreport check``, ``last_error`` in the
store, the stored output tail) goes through ``mask``; every URL shown goes through
``mask_url``. Both work on malformed text too: a URL that does not parse must not be echoed
whole, and a password holding ``/``, ``@`` or ``%`` must not split the URL where a parser
would.

A secret is masked in every form a peer may echo it in (a receiver's 400 quoting the
request's headers, a proxy's error page, a JSON error): as given; percent-encoded in any way
(``quote``, ``quote_plus``, upper- or lower-case hex, UTF-8 or Latin-1, encoded twice);
escaped for JSON, JavaScript, Python or HTML (``\\u00e4``, ``\\x2f``, ``\\"``, ``&amp;``,
``&#64;``); and inside base64 (a ``Basic`` or ``Proxy-Authorization`` header: standard or
URL-safe alphabet, with or without padding, at any offset, even percent-encoded) or hex.
The credentials of a basic-auth pair are masked as the pair too (``user:password``), so
that a short password is masked in its header.
"""

from __future__ import annotations

import binascii
import os
import re
import threading
from collections.abc import Callable, Iterable, Mapping
from functools import lru_cache
from typing import TYPE_CHECKING, Protocol
from urllib.parse import unquote

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
    "proxy_secrets",
    "refuse_control_characters",
    "remember",
    "url_secrets",
]

MASK = "***"


class HoldsSecrets(Protocol):
    """What holds the secrets to mask: ``jobreport.config.Config`` or its ``SinkSettings``
    (named by their shape, so that this small room does not import the settings, which
    import it)."""

    @property
    def username(self) -> str | None: ...
    @property
    def password(self) -> str | None: ...
    @property
    def token(self) -> str | None: ...
    @property
    def db(self) -> str: ...
    @property
    def gateway(self) -> str | None: ...
    @property
    def remote_write_url(self) -> str | None: ...

#: Secret values shorter than this are masked inside URLs only: replacing every ``ab`` in a
#: message would make it unreadable and tell a reader which letters the secret holds.
MIN_MASKED_LENGTH = 4

# scheme://  then the userinfo: everything up to the last "@" of the authority. The
# authority may hold "/" or "@" when a password was written unencoded, so the userinfo ends
# at the LAST "@" before whitespace or a quote -- except the Pushgateway's own "@base64"
# marker in a group path (``/job@base64/...``), which is not the end of a password.
_URL = re.compile(r"""(?P<scheme>\b[A-Za-z][A-Za-z0-9+.\-]*://)(?P<rest>[^\s'"<>]*)""")
_AT = re.compile(r"@(?!base64(?:/|$))")
# the patterns below are compiled on first use (re's cache), not at import: a plain run
# masks no secret and shows only URLs with a scheme
_NO_SCHEME = r"""^(?P<rest>[^\s'"<>/]*:[^\s'"<>]*@[^\s'"<>]*)$"""
_CONTROL = r"[\x00-\x1f\x7f-\x9f\u2028\u2029]"


def mask_url(url: str) -> str:
    """``url`` with the password (``user:***@``) or a bare user part (``***@``) masked.

    Works on malformed URLs (``ftp://``, no host, a bad port, a password holding ``/``,
    ``@`` or ``%``) and on ``user:pass@host`` without a scheme; text without credentials
    comes back unchanged.
    """
    match = _URL.fullmatch(url)
    if match is not None:
        return match["scheme"] + _mask_authority(match["rest"])
    if re.match(_NO_SCHEME, url):
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
    """``text`` with every known secret value, in every form (module docstring), and every
    URL's credentials masked.

    ``secrets`` are the values to hide (None and empty ones are skipped); the secrets
    ``remember`` was given are hidden too. Text that holds none of them, in no form, comes
    back unchanged.
    """
    values = frozenset(s for s in secrets if s) | _remembered()
    if values and text:
        text = _masker(values)(text)
    if "@" in text:
        text = _URL.sub(lambda m: m["scheme"] + _mask_authority(m["rest"]), text)
    return text


# --- the forms of a secret ----------------------------------------------------------------

_NAMED = {"&": "amp", "<": "lt", ">": "gt", '"': "quot", "'": "apos"}


def _hex(number: int, width: int) -> str:
    """A pattern for ``number`` in hex, ``width`` digits, either case."""
    return "".join(f"[{d}{d.upper()}]" if d.isalpha() else d
                   for d in f"{number:0{width}x}")


def _char(c: str) -> str:
    """A pattern for one character of a secret in any of the forms an echo may use."""
    code = ord(c)
    forms = [re.escape(c)]
    if not c.isalnum():
        forms.append(r"\\" + re.escape(c))  # backslash-escaped: \" \\ \/ (JSON, shells)
    for encoding in ("utf-8", "latin-1"):
        try:
            data = c.encode(encoding)
        except UnicodeEncodeError:
            continue
        forms += ["".join(prefix + _hex(b, 2) for b in data)
                  for prefix in ("%", "%25", r"\\x")]
    if c == " ":
        forms.append(r"\+")  # quote_plus, a form's body
    if code < 0x10000:
        forms.append(r"\\u" + _hex(code, 4))
    else:
        high, low = 0xD800 + ((code - 0x10000) >> 10), 0xDC00 + ((code - 0x10000) & 0x3FF)
        forms += [r"\\u" + _hex(high, 4) + r"\\u" + _hex(low, 4), r"\\U" + _hex(code, 8)]
    forms += [f"&#0*{code};", f"&#[xX]0*{_hex(code, 1)};"]
    if c in _NAMED:
        forms.append(f"&{_NAMED[c]};")
    return "(?:" + "|".join(dict.fromkeys(forms)) + ")"


def _any_form(value: str) -> str:
    return "".join(_char(c) for c in value)


#: A run of characters that may be base64 (either alphabet; "+", "/" and the padding
#: perhaps percent-encoded or JSON-escaped) or hex: the encodings that hide a secret's
#: letters.
_ENCODED = r"(?:[A-Za-z0-9+/_\-]|%2[BbFf]|\\/)+(?:=|%3[Dd]){0,2}"
_HEX = r"[0-9A-Fa-f]{6,}"


@lru_cache(maxsize=32)
def _masker(values: frozenset[str]) -> Callable[[str], str]:
    """What masks ``values`` (compiled once per set of secrets)."""
    longest_first = sorted((v for v in values if len(v) >= MIN_MASKED_LENGTH),
                           key=lambda v: (-len(v), v))
    plain = re.compile("|".join(_any_form(v) for v in longest_first)) if longest_first \
        else None
    encoded = {v.encode("utf-8") for v in values} | {
        v.encode("latin-1") for v in values if _latin1(v)}
    # inside base64 or hex: 4 bytes or more anywhere; a shorter value (a basic-auth pair
    # such as "u:p") only where an encoding of its own would start (at a whole group of
    # 3 bytes), as in an Authorization header: 3 bytes are seldom found by chance there
    needles = tuple(n for n in encoded if len(n) >= MIN_MASKED_LENGTH)
    ends = tuple(n for n in encoded if 3 <= len(n) < MIN_MASKED_LENGTH)
    least = min((len(n) for n in needles + ends), default=0) * 4 // 3

    def decoded_hides(match: re.Match[str]) -> str:
        run = match.group()
        if len(run) >= least and any(
                any(n in data for n in needles) or _starts_a_group(data, ends)
                for data in _decodings(run)):
            return MASK
        return run

    def apply(text: str) -> str:
        if plain is not None:
            text = plain.sub(MASK, text)
        return re.sub(_ENCODED, decoded_hides, text) if least else text

    return apply


def _starts_a_group(data: bytes, needles: tuple[bytes, ...]) -> bool:
    return any(data.startswith(needles, at) for at in range(0, len(data), 3)) if needles \
        else False


def _latin1(value: str) -> bool:
    try:
        return value.encode("latin-1") != value.encode("utf-8")
    except UnicodeEncodeError:
        return False


def _decodings(run: str) -> Iterable[bytes]:
    """What ``run`` decodes to as base64 (from each of the four offsets a run may start
    at inside a longer one) and as hex."""
    for digits in re.findall(_HEX, run):
        for offset in (0, 1):
            part = digits[offset:]
            yield bytes.fromhex(part[:len(part) // 2 * 2])
    text = re.sub(r"%2[Bb]", "+", re.sub(r"%2[Ff]|\\/", "/", re.sub(r"=|%3[Dd]", "", run)))
    text = text.translate(_URLSAFE)
    for offset in range(4):
        part = text[offset:]
        cut = len(part) % 4
        part = part[:-1] if cut == 1 else part + "=" * ((4 - cut) % 4)
        try:
            yield binascii.a2b_base64(part)
        except binascii.Error:
            continue


_URLSAFE = str.maketrans("-_", "+/")


# --- refusing what cannot be sent -----------------------------------------------------------


def refuse_control_characters(value: str) -> str:
    """``value`` if it holds no newline or other control character; otherwise ValueError
    with a message that does not show the value (it is a secret)."""
    found = re.search(_CONTROL, value)
    if found is not None:
        what = "a newline" if found.group() in "\r\n\u2028\u2029" else "a control character"
        raise ValueError(f"the secret contains {what} at position {found.start() + 1} "
                         "(its value is not shown); remove it (a secret file may end with "
                         "one newline, nothing more)")
    return value


# --- which values are secrets -------------------------------------------------------------


def config_secrets(config: HoldsSecrets,
                   env: Mapping[str, str] | None = None) -> tuple[str, ...]:
    """The secret values ``config`` holds: password, token, the basic-auth pair
    (``user:password``), the credentials in the store's, the gateway's and the
    remote-write receiver's URLs, and those of the proxies the environment (``env``,
    default ``os.environ``) names."""
    found = [config.password, config.token]
    if config.username and config.password:
        found.append(f"{config.username}:{config.password}")
    found += url_secrets(config.db, bare_user=False)
    for url in (config.gateway, config.remote_write_url):
        found += url_secrets(url or "")
    found += proxy_secrets(env)
    return tuple(dict.fromkeys(s for s in found if s))


def url_secrets(url: str, *, bare_user: bool = True) -> list[str]:
    """The secrets written into ``url``: its password (decoded, with the pieces of it
    between ``/``, ``@`` and ``:``, which a parser that split the URL there shows as a host
    or a path in its own error) and ``user:password`` as basic auth sends it; with
    ``bare_user``, a user part without a password too (it is sent as a token)."""
    match = _URL.fullmatch(url.strip())
    if match is None or match["rest"].startswith("/"):
        return []
    rest = match["rest"]
    ats = [m.start() for m in _AT.finditer(rest.split("?", 1)[0].split("#", 1)[0])]
    if not ats:
        return []
    user, colon, password = rest[:ats[-1]].partition(":")
    user, password = unquote(user), unquote(password)
    if colon and password:
        return [password, f"{user}:{password}", *re.split(r"[/@:]", password)]
    return [user] if bare_user and user else []


def proxy_secrets(env: Mapping[str, str] | None = None) -> list[str]:
    """The credentials of the proxies ``env`` (default ``os.environ``) names in
    ``HTTP_PROXY``, ``HTTPS_PROXY``, ``ALL_PROXY`` (either case): requests sends them to
    the proxy as basic auth, and the proxy may echo them."""
    found: list[str] = []
    for name, value in (os.environ if env is None else env).items():
        if name.lower().endswith("_proxy") and name.lower() != "no_proxy" and "@" in value:
            found += url_secrets(value if "://" in value else "http://" + value)
    return found


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
