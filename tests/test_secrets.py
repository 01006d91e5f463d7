"""Masking lives in jobreport.secrets: URLs (also malformed ones), secret values in any text,
the jobreport logger's messages, and the refusal of secrets holding control characters."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from jobreport.config import load_config
from jobreport.secrets import (
    MASK,
    config_secrets,
    mask,
    mask_url,
    refuse_control_characters,
    remember,
)

PASSWORD = "pa/ss@wo%rd-42"  # noqa: S105 - holds every character a URL parser trips on


@pytest.mark.parametrize(("url", "shown"), [
    ("http://u:hunter2@gw:9091", "http://u:***@gw:9091"),
    ("postgresql://u:hunter2@db/x", "postgresql://u:***@db/x"),
    ("postgresql://u:pa/ss@db/x", "postgresql://u:***@db/x"),
    ("postgresql://u:p@ss@db/x", "postgresql://u:***@db/x"),
    ("postgresql://u:p%zz@db/x", "postgresql://u:***@db/x"),
    (f"http://u:{PASSWORD}@gw:9091/prefix", "http://u:***@gw:9091/prefix"),
    ("ftp://u:hunter2@gw", "ftp://u:***@gw"),
    ("http://u:hunter2@", "http://u:***@"),
    ("http://u:hunter2@/path", "http://u:***@/path"),
    ("http://u:hunter2@gw:99999999", "http://u:***@gw:99999999"),
    ("http://tokenvalue1234@gw", "http://***@gw"),
    ("u:hunter2@gw:9091", "u:***@gw:9091"),
])
def test_mask_url_hides_every_password(url: str, shown: str) -> None:
    """The password (or a bare user part, which may be a token) is masked, whatever shape
    the URL has; the rest stays readable."""
    assert mask_url(url) == shown


@pytest.mark.parametrize("url", [
    "http://127.0.0.1:9091",
    "http://gw:9091/metrics/job@base64/Lg==/instance/h1",
    "sqlite:////var/lib/x@y/jobreport.db",
    "not a url",
])
def test_mask_url_leaves_urls_without_credentials_alone(url: str) -> None:
    """A URL without credentials (even with the Pushgateway's @base64 in its path, or an
    SQLite path holding "@") comes back unchanged."""
    assert mask_url(url) == url


def test_mask_hides_secret_values_and_their_url_forms() -> None:
    """A secret is masked as it is and percent-encoded; URLs inside free text are masked."""
    from urllib.parse import quote

    text = (f"oops {PASSWORD} and {quote(PASSWORD, safe='')} at "
            "postgresql://u:other@db/x, done")
    masked = mask(text, [PASSWORD, None, ""])
    assert PASSWORD not in masked and quote(PASSWORD, safe="") not in masked
    assert "other" not in masked
    assert masked.startswith(f"oops {MASK} and {MASK} at postgresql://u:{MASK}@db/x")


def test_short_secrets_are_masked_in_urls_only() -> None:
    """A secret of a few characters would garble every message: it is masked in URLs."""
    assert mask("the abc of it", ["abc"]) == "the abc of it"
    assert mask("see http://u:abc@gw", ["abc"]) == f"see http://u:{MASK}@gw"


def test_config_secrets_include_the_store_password() -> None:
    """The password, the token and a database URL's password (and its basic-auth pair)
    are the config's secrets."""
    config = load_config(env={"JOBREPORT_PASSWORD": "pw-1234", "JOBREPORT_TOKEN": "tk-5678",
                              "JOBREPORT_DB": "postgresql://u:db%2Fpass@db/x"})
    assert set(config_secrets(config, env={})) == {"pw-1234", "tk-5678", "db/pass", "db",
                                                   "pass", "u:db/pass"}


def test_remember_masks_every_jobreport_log_message(
        caplog: pytest.LogCaptureFixture) -> None:
    """Once a config is remembered, its secrets never reach a jobreport log line."""
    config = load_config(env={"JOBREPORT_PASSWORD": "remembered-secret-77"})
    remember(config)
    with caplog.at_level(logging.WARNING, logger="jobreport"):
        logging.getLogger("jobreport").warning("jobreport: failed with %s",
                                               "remembered-secret-77 inside")
    assert "remembered-secret-77" not in caplog.text
    assert f"failed with {MASK} inside" in caplog.text


@pytest.mark.parametrize("value", ["a\nb", "tok\r", "x\x00y", "x\x1by", "x\u2028y"])
def test_control_characters_are_refused_without_showing_the_secret(value: str) -> None:
    """A secret with a newline or another control character is refused in one line that
    does not show it."""
    with pytest.raises(ValueError, match=r"control character|newline") as raised:
        refuse_control_characters(value)
    message = str(raised.value)
    assert "\n" not in message and value not in message


def test_plain_secrets_pass() -> None:
    """An ordinary secret (also with spaces and unicode) is accepted as it is."""
    assert refuse_control_characters("pä ss/@%") == "pä ss/@%"


@pytest.mark.parametrize("where", ["env", "file"])
def test_config_refuses_a_secret_with_a_newline(where: str, tmp_path: Path) -> None:
    """A token with a newline, from the environment or a file, is refused in one line that
    does not show it; where a job must run anyway (strict=False) it is simply not used."""
    from jobreport.errors import ConfigError

    secret = "tok-first\nsecond-line"  # noqa: S105
    if where == "env":
        env = {"JOBREPORT_TOKEN": secret}
    else:
        (tmp_path / "token").write_text(secret + "\n")
        env = {"JOBREPORT_TOKEN_FILE": str(tmp_path / "token")}
    with pytest.raises(ConfigError) as raised:
        load_config(env=env)
    message = str(raised.value)
    assert "\n" not in message and "tok-first" not in message and "second-line" not in message
    assert "newline" in message
    assert load_config(env=env, strict=False).token is None


@pytest.mark.parametrize("gateway", [
    "ftp://ops:Hunter-2-secret@gw", "http://ops:Hunter-2-secret@",
    "http://ops:Hunter-2-secret@gw:99999", "http://ops:Hunter/2-secret@gw:9091",
    "ops:Hunter-2-secret@gw:x",
])
def test_a_malformed_gateway_url_is_refused_masked(gateway: str) -> None:
    """A gateway URL that cannot be used is refused in a message that masks its password,
    whatever is wrong with it."""
    from jobreport.errors import ConfigError

    with pytest.raises(ConfigError) as raised:
        load_config(env={"JOBREPORT_GATEWAY": gateway})
    assert "Hunter" not in str(raised.value) and "2-secret" not in str(raised.value)
    assert MASK in str(raised.value)


@pytest.mark.parametrize("password", ["pa/ss-Secret9", "pa@ss-Secret9", "pa%2Fss-Secret9"])
def test_check_masks_a_database_password_with_slash_or_at(password: str) -> None:
    """`jobreport check` shows a PostgreSQL URL whose password holds `/` or `@` (which
    URL parsers split in the wrong place) without any part of the password."""
    from jobreport.commands.check import run_checks

    config = load_config(env={"JOBREPORT_DB": f"postgresql://ops:{password}@127.0.0.1:1/x"})
    report = run_checks(config)
    shown = "\n".join(f"{c.name}: {c.detail}" for c in report.checks)
    assert "Secret9" not in shown, shown
    assert "postgresql://ops:***@" in shown
