"""Settings, resolved once into a frozen ``Config``.

Precedence: flag (keyword overrides) > environment (``JOBREPORT_*``, ``PUSHGATEWAY_URL`` as a
fallback for the gateway) > TOML file (``JOBREPORT_CONFIG``, else
``$XDG_CONFIG_HOME/jobreport/jobreport.toml``, else ``/etc/jobreport/jobreport.toml``) >
defaults. Nothing is read at import time. Secrets (password, token) come from the environment
or from a file, never from a flag, and never appear in ``repr(config)``.

The rooms: ``settings`` (the ``Config`` record; a job's section is a
``jobreport.spec.JobSpec``), ``values`` (one converter per setting), ``files`` (the TOML
file, its ``[jobs.NAME]`` sections, secret files), ``load`` (the steps of ``load_config``).
"""

from __future__ import annotations

# not `from typing import TYPE_CHECKING`, and the rooms loaded on first use: `jobreport run`
# checks a setting typed as its flag with ``values`` alone, before its command starts
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from jobreport.config.load import load_config
    from jobreport.config.settings import Config, SinkSettings, default_db_url
    from jobreport.config.values import env_name, parse_labels

__all__ = [
    "Config",
    "SinkSettings",
    "default_db_url",
    "env_name",
    "load_config",
    "parse_labels",
]

_ROOMS = {"load_config": "load", "Config": "settings", "SinkSettings": "settings",
          "default_db_url": "settings", "env_name": "values", "parse_labels": "values"}


def __getattr__(name: str) -> Any:
    room = _ROOMS.get(name)
    if room is None:
        raise AttributeError(f"module 'jobreport.config' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(f"jobreport.config.{room}"), name)
