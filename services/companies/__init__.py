"""Salons (companies): registration, status and stats, the audit trail, the operator report."""
