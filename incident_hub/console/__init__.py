"""The operator's command line beyond `serve`: connectors, deliveries, mappings, reconciliation, and the
one place ordinary mistakes become one line on stderr."""
