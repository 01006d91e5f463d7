"""``jobreport check``: settings, store and gateway in one report."""

from __future__ import annotations

import logging
import os
import sys
from typing import Any

import click

from jobreport.cli.app import EXIT_CODES_HELP, EXIT_PROBLEM, cli, setup_logging
from jobreport.cli.options import config_from, settings_options
from jobreport.config import Config
from jobreport.errors import ConfigError

__all__ = ["check"]


@cli.command(epilog=EXIT_CODES_HELP)
@settings_options()
def check(**params: Any) -> None:
    """Check the settings (with where each value came from), the store and every sink.

    Secrets are never shown. Exits 1 when anything is wrong.

    \b
    Example:
      JOBREPORT_GATEWAY=http://127.0.0.1:9091 jobreport check
    """
    setup_logging()
    from jobreport.commands.check import FAIL, WARN, run_checks

    errors: list[ConfigError] = []
    try:
        config = config_from(params)
    except ConfigError as e:
        errors.append(e)
        logger = logging.getLogger("jobreport")
        level = logger.level
        logger.setLevel(logging.ERROR)  # the problem is reported below, not as a warning
        config = config_from(params, strict=False)
        logger.setLevel(level)
    report = run_checks(config, config_errors=errors)
    note = _completed_gateway(config, params)
    if note is not None:
        report.add("config", "gateway", WARN, note)
        at = next((i for i, c in enumerate(report.checks) if c.name == "gateway"), None)
        if at is not None:  # right below the gateway line
            report.checks.insert(at + 1, report.checks.pop())
    section = None
    for item in report.checks:
        if item.section != section:
            section = item.section
            click.echo(f"{section}:")
        mark = {"ok": "ok  ", "info": "    ", "warn": "WARN", FAIL: "FAIL"}[item.status]
        click.echo(f"  {mark} {item.name}: {item.detail}")
    if not report.ok:
        click.echo("problems found", err=True)
        sys.exit(EXIT_PROBLEM)


def _completed_gateway(config: Config, params: dict[str, Any]) -> str | None:
    """The one rule for a gateway URL without a scheme (docs/configuration.md): it is taken
    as http://, and `check` says so, with the port that implies."""
    source = config.sources.get("gateway", "")
    if source == "flag":
        raw = params.get("gateway")
    elif source.startswith("env "):
        raw = os.environ.get(source[len("env "):])
    else:
        return None
    if not raw or "://" in raw or config.gateway is None:
        return None
    from urllib.parse import urlsplit

    port = ("" if urlsplit(config.gateway).port is not None
            else ", port 80 (the Pushgateway's own port is 9091)")
    return (f"{raw.strip()!r} has no scheme: taken as {config.gateway}{port}; "
            "write the scheme to make it explicit")
