"""The embedded default: every process of the service on one machine with no servers installed."""
