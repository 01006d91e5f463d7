"""The Prometheus side that ships with jobreport: rules for the configured jobs (``rules``)."""
