"""The activation callback to YClients."""
