"""Where a group's state is delivered: the Pushgateway (``pushgateway``)."""
