"""Local servers that speak the protocols of the third parties the service calls (YClients, gateways)."""
