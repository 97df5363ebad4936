"""Cross-cutting plumbing: settings, app accessors, logs, metrics, pub/sub, transactions, errors, schema, health."""
