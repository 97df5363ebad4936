"""Who may do what: API keys, connect tokens, webhook secrets, the YClients install signature."""
