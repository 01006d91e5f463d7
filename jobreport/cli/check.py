"""``jobreport check``: settings, store and gateway in one report."""

from __future__ import annotations

import logging
import sys
from typing import Any

import click

from jobreport.cli.app import EXIT_CODES_HELP, EXIT_PROBLEM, cli, setup_logging
from jobreport.cli.options import config_from, settings_options
from jobreport.errors import ConfigError

__all__ = ["check"]


@cli.command(epilog=EXIT_CODES_HELP)
@settings_options()
def check(**params: Any) -> None:
    """Check the settings (with where each value came from), the store and the gateway.

    Secrets are never shown. Exits 1 when anything is wrong.

    \b
    Example:
      JOBREPORT_GATEWAY=http://127.0.0.1:9091 jobreport check
    """
    setup_logging()
    from jobreport.checks import FAIL, run_checks

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
