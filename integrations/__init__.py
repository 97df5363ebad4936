"""Outbound clients: the YClients partner API and the WhatsApp gateways."""
