"""A secret is masked in every form a peer may echo it in (issue 24 item 2): as given,
percent-encoded (quote, quote_plus, either hex case, twice), escaped for JSON or HTML, and
inside base64 (a Basic or Proxy-Authorization header: user:password, standard or URL-safe
alphabet, with or without padding, percent-encoded) or hex; text that holds none of them
comes back unchanged. One masking function: ``jobreport.secrets.mask``."""

from __future__ import annotations

import base64
import html
import json
import re
from collections.abc import Callable
from urllib.parse import quote, quote_plus

import pytest
from hypothesis import assume, example, given
from hypothesis import strategies as st

from jobreport.secrets import MASK, config_secrets, mask, proxy_secrets, url_secrets

#: Secrets as users make them: any printable character, also non-ASCII, ":", "@", "%",
#: "/", spaces and quotes (control characters are refused at the door).
SECRET_CHARS = st.characters(blacklist_categories=("Cc", "Cs", "Zl", "Zp"))
SECRETS = st.text(SECRET_CHARS, min_size=4, max_size=40).filter(lambda s: s.strip() == s)
USERS = st.text(SECRET_CHARS.filter(lambda c: c != ":"), min_size=1, max_size=12)
TEXT = st.text(max_size=60)


def _b64(value: str) -> str:
    return base64.b64encode(value.encode()).decode()


def _lower_hex(encoded: str) -> str:
    return re.sub(r"%[0-9A-F]{2}", lambda m: m.group().lower(), encoded)


#: Each form a secret (or a basic-auth pair) may take in an answer.
FORMS: dict[str, Callable[[str], str]] = {
    "as given": lambda s: s,
    "quote": lambda s: quote(s, safe=""),
    "quote, / kept": quote,
    "quote_plus": lambda s: quote_plus(s, safe=""),
    "lower-case hex": lambda s: _lower_hex(quote(s, safe="")),
    "quote twice": lambda s: quote(quote(s, safe=""), safe=""),
    "latin-1 quote": lambda s: quote(s, safe="", encoding="latin-1", errors="strict"),
    "json": json.dumps,
    "json, not ascii": lambda s: json.dumps(s, ensure_ascii=False),
    "html": html.escape,
    "base64": _b64,
    "base64 unpadded": lambda s: _b64(s).rstrip("="),
    "base64 url-safe": lambda s: base64.urlsafe_b64encode(s.encode()).decode(),
    "base64 url-safe unpadded": lambda s: base64.urlsafe_b64encode(s.encode()).decode()
    .rstrip("="),
    "base64 percent-encoded": lambda s: quote(_b64(s), safe=""),
    "Basic header": lambda s: "Basic " + _b64(s),
    "Basic header, form-encoded": lambda s: quote_plus("Authorization: Basic " + _b64(s)),
    "hex": lambda s: s.encode().hex(),
    "HEX": lambda s: s.encode().hex().upper(),
}


def _form(name: str, value: str) -> str | None:
    try:
        return FORMS[name](value)
    except UnicodeEncodeError:
        return None  # (latin-1 cannot encode it: the form does not exist)


def _leaks(masked: str, secret: str, encoded: str) -> bool:
    return secret in masked or encoded in masked


@given(secret=SECRETS, before=TEXT, after=TEXT, form=st.sampled_from(sorted(FORMS)))
@example(secret="pa/ss@wo%rd:42", before="", after="", form="quote")  # noqa: S106
@example(secret="pässwörd", before="x", after="y", form="latin-1 quote")  # noqa: S106
def test_a_secret_is_masked_in_every_form(secret: str, before: str, after: str,
                                          form: str) -> None:
    """A secret embedded in random answer text, in any of the forms, is gone after
    masking, and so is the form it took."""
    encoded = _form(form, secret)
    assume(encoded is not None)
    assert encoded is not None
    masked = mask(before + encoded + after, [secret])
    assert not _leaks(masked, secret, encoded), (form, masked)
    assert MASK in masked


@given(user=USERS, password=st.text(SECRET_CHARS, min_size=1, max_size=30),
       before=TEXT, after=TEXT,
       form=st.sampled_from(["base64", "base64 unpadded", "base64 url-safe",
                             "base64 url-safe unpadded", "base64 percent-encoded",
                             "Basic header", "Basic header, form-encoded"]))
@example(user="ops", password="pw", before="Authorization: ", after="\r\n",  # noqa: S106
         form="Basic header")
def test_a_basic_auth_pair_is_masked_in_its_header(user: str, password: str, before: str,
                                                   after: str, form: str) -> None:
    """The base64 of user:password (what a Basic or Proxy-Authorization header carries) is
    masked, whatever the password's length: the configured pair is a secret of its own."""
    config = _Settings(username=user, password=password)
    pair = f"{user}:{password}"
    encoded = _form(form, pair)
    assert encoded is not None
    masked = mask(before + encoded + after, config_secrets(config, env={}))
    assert encoded not in masked and _b64(pair).rstrip("=") not in masked, masked


@given(secret=SECRETS, text=TEXT)
def test_text_without_the_secret_comes_back_unchanged(secret: str, text: str) -> None:
    """Masking changes nothing in a text that holds the secret in none of its forms."""
    assume(not any((f := _form(name, secret)) and f in text for name in FORMS))
    assume("@" not in text)  # (URL credentials are masked whatever the secrets)
    assert mask(text, [secret]) == text


@pytest.mark.parametrize("answer", [
    "plain answer, nothing secret in it: 400 Bad Request",
    "Authorization: Basic dXNlcjpvdGhlcg==",  # another user's pair
    "sample_total{le=\"0.5\"} 1e+06 ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghij0123456789+/",
    "%41%42%43 &amp; \\u0041 0123456789abcdef",
])
def test_ordinary_answers_are_left_alone(answer: str) -> None:
    """Base64, hex and escapes that do not hide a secret are shown as they came."""
    assert mask(answer, ["S3cr3t-Pa55word", "ops:S3cr3t-Pa55word"]) == answer


def test_the_secrets_of_a_config_include_pairs_urls_and_proxies() -> None:
    """Basic auth's pair, the remote-write URL's credentials and a proxy's are secrets."""
    config = _Settings(username="ops", password="pw",  # noqa: S106
                       remote_write_url="https://rw:rw%2Fsecret@rw.example/api/v1/write",
                       gateway="http://tokenvalue1234@gw:9091")
    found = set(config_secrets(config, env={
        "HTTPS_PROXY": "http://puser:p%40ss-word@proxy:3128", "no_proxy": "x@y"}))
    assert {"pw", "ops:pw", "rw/secret", "rw:rw/secret", "tokenvalue1234", "p@ss-word",
            "puser:p@ss-word"} <= found
    assert proxy_secrets({"http_proxy": "proxy:3128"}) == []
    assert url_secrets("sqlite:////var/lib/x@y/jobreport.db") == []


class _Settings:
    """The shape of the settings that hold secrets (``secrets.HoldsSecrets``)."""

    def __init__(self, *, username: str | None = None, password: str | None = None,
                 token: str | None = None, db: str = "sqlite:////tmp/x.db",
                 gateway: str | None = None, remote_write_url: str | None = None) -> None:
        self.username = username
        self.password = password
        self.token = token
        self.db = db
        self.gateway = gateway
        self.remote_write_url = remote_write_url
