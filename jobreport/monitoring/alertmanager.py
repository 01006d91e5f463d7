"""The Alertmanager side of an export: the complete example (the shipped alertmanager.yml)
and ``alertmanager-route.yml``, the pieces to paste into an existing config, each with the
inhibition of its sink.

The shipped file is laid out as Debian's /etc/prometheus/alertmanager.yml is (list items
flush with their key) and marks each piece (route, inhibition, receivers) with a pair of
comments, so that the pieces go into such a file as they are. No receiver shares a YAML
anchor with another: deleting one never breaks the rest.
"""

from __future__ import annotations

from jobreport.monitoring import shipped
from jobreport.monitoring.rewrite import replace_section, top_level_sections
from jobreport.monitoring.variants import NODE_DOWN, NODE_NOT_SCRAPED

__all__ = ["MARKERS", "alertmanager_config", "route_snippet"]

#: The pieces to paste, each between ``# >>> jobreport PIECE`` and ``# <<< jobreport PIECE``.
MARKERS = ("route", "inhibition", "receivers")

_OPEN = "# >>> jobreport inhibition: paste under inhibit_rules: of your alertmanager.yml\n"
_CLOSE = "# <<< jobreport inhibition\n"

# the inhibition of each sink other than the Pushgateway (whose is in the shipped file):
# only alerts that the sink's rules define (variants.rules_for)
_INHIBITIONS = {
    "textfile": (
        "inhibit_rules:\n" + _OPEN
        + "# While Prometheus cannot scrape the node_exporter of a host, the jobs of that host\n"
        "# have no fresh data: silence their alerts (the same instance label: node_exporter's\n"
        "# scrape target gives the textfile metrics theirs) and send only the node_exporter\n"
        "# alert. While it scrapes no node_exporter at all, silence every per-job alert (all\n"
        "# named JobreportJob*, the JobreportJobAbsent guards included).\n"
        f"- source_matchers: ['alertname=\"{NODE_DOWN}\"']\n"
        "  target_matchers: ['alertname=~\"JobreportJob.*\"']\n"
        "  equal: [instance]\n"
        f"- source_matchers: ['alertname=\"{NODE_NOT_SCRAPED}\"']\n"
        "  target_matchers: ['alertname=~\"JobreportJob.*\"']\n" + _CLOSE),
    "remote-write": (
        "inhibit_rules: []\n" + _OPEN
        + "# None for remote write: the jobs write to the receiver themselves, there is no\n"
        "# scrape whose failure would hide every job's data at once.\n" + _CLOSE),
}

_WHAT_INHIBITS = {
    "pushgateway": "a down Pushgateway then pages once, not once per job",
    "textfile": "a down node_exporter then pages once, not once per job of its host",
    "remote-write": "there is none for remote write: nothing to paste",
}

_ROUTE_HEADER = """\
# The Alertmanager side of jobreport for an existing alertmanager.yml (written by
# `jobreport monitoring export`; the complete example is alertmanager.yml beside it).
#
# Three pieces go into your alertmanager.yml, each the lines between a pair of marker
# comments below (the lines that start with "# >>>" and "# <<<"). They are indented for a
# file laid out as Debian's /etc/prometheus/alertmanager.yml is, list items flush with their
# key ("routes:", then "- match..." in the same column); where your lists are indented two
# spaces deeper than their key, indent the pasted lines by two more spaces.
#
# 1. The route: under route.routes:, before any route that would catch the jobreport
#    alerts first. It matches alertname=~"Jobreport.*" (every jobreport alert) and routes
#    by severity.
# 2. The inhibition: under inhibit_rules:
#    ({what_inhibits}).
# 3. The receivers: under receivers: (or point the route at receivers you have), with
#    their REPLACE placeholders filled in. Each stands alone: drop the ones you do not use,
#    and the routes to them.
#
# This file alone is a valid configuration, its root route standing in for yours:
#   amtool check-config alertmanager-route.yml

"""


def alertmanager_config(sink: str) -> str:
    """The complete example alertmanager.yml for ``sink``: the shipped one, its inhibition
    the sink's."""
    text = shipped.read("alertmanager.yml")
    if sink in _INHIBITIONS:
        text = replace_section(text, "inhibit_rules", _INHIBITIONS[sink] + "\n")
    return text


def route_snippet(sink: str) -> str:
    """``alertmanager-route.yml`` for ``sink``: the route, inhibition and receivers of
    ``alertmanager_config(sink)`` under a header that says where each piece goes."""
    sections = top_level_sections(alertmanager_config(sink),
                                  ("route", "inhibit_rules", "receivers"))
    return _ROUTE_HEADER.format(what_inhibits=_WHAT_INHIBITS[sink]) + sections + "\n"
