"""The sinks a ``Config`` asks for. Adding a sink is a branch here and a module beside
``pushgateway`` whose class satisfies ``jobreport.sinks.base.Sink``."""

from __future__ import annotations

from jobreport.config import Config
from jobreport.sinks.base import Sink

__all__ = ["configured_sinks", "sinks_key"]


def configured_sinks(config: Config) -> list[Sink]:
    """One sink per destination configured (none: runs stay in the store)."""
    sinks: list[Sink] = []
    if config.gateway:
        from jobreport.sinks.pushgateway import Sender

        sinks.append(Sender(config))
    if config.remote_write_url:
        from jobreport.sinks.remote_write import RemoteWriter

        sinks.append(RemoteWriter(config))
    if config.textfile_dir:
        from jobreport.sinks.textfile import TextfileWriter

        sinks.append(TextfileWriter(config.textfile_dir, config.namespace))
    return sinks


def sinks_key(config: Config) -> tuple[object, ...]:
    """What makes two configs' sinks the same (a process shares them between runs)."""
    return (config.gateway, config.username, config.password, config.token, config.timeout,
            config.budget, config.ca_bundle, config.client_cert, config.client_key,
            config.tls_verify, config.namespace, config.remote_write_url, config.textfile_dir)
