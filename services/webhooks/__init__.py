"""The webhook inbox: ingestion (hot path), processing, lifecycle events and operator tools."""

from __future__ import annotations

from typing import cast

from sqlalchemy import Table

from models import WebhookEvent

# The inbox table for Core statements (the hot path and claims skip the ORM's unit of work).
EVENTS = cast(Table, WebhookEvent.__table__)
