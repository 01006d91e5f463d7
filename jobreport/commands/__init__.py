"""The library side of the commands that act on the sinks directly: ``status`` (what the
sinks that can list their groups hold), ``delete`` (remove a group), ``push`` (ad hoc
values), ``prune`` (the groups of hosts that are gone), ``check`` (settings, store, sinks)
and ``backlogs`` (what each sink has not received yet). Each reaches the sinks through the
Sink protocol and the capabilities they declare (``jobreport.sinks.base``), raises a
``JobReportError`` the command line turns into one line, and takes its deadline from the
configured budget."""
