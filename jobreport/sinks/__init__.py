"""Where a group's state is delivered: the Pushgateway (``pushgateway``), a remote-write
receiver (``remote_write``), node_exporter's textfile directory (``textfile``); what every
sink is and can do (``base``), the HTTP side the first two share (``http``, ``transport``),
and the sinks the settings ask for (``configured``)."""
