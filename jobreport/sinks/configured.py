"""The sinks the settings ask for. Adding a sink is a branch here, its settings in
``jobreport.config.SinkSettings``, and a module beside ``pushgateway`` whose class satisfies
``jobreport.sinks.base.Sink`` and subclasses the capabilities it has."""

from __future__ import annotations

from jobreport.config import Config, SinkSettings
from jobreport.sinks.base import Sink

__all__ = ["configured_sinks"]


def configured_sinks(config: Config | SinkSettings) -> list[Sink]:
    """One sink per destination configured (none: runs stay in the store). HTTP sinks set
    up their transport here, so a run's recorder calling this while its command runs has
    requests loaded by the time the run ends."""
    settings = config.sinks if isinstance(config, Config) else config
    sinks: list[Sink] = []
    if settings.gateway:
        from jobreport.sinks.pushgateway import PushgatewaySink

        sinks.append(PushgatewaySink(settings))
    if settings.remote_write_url:
        from jobreport.sinks.remote_write import RemoteWriteSink

        sinks.append(RemoteWriteSink(settings))
    if settings.textfile_dir:
        from jobreport.sinks.textfile import TextfileSink

        sinks.append(TextfileSink(settings.textfile_dir, settings.namespace))
    return sinks
