"""The salon's WhatsApp: the session state machine, QR and pairing codes, the gateway in use."""
