"""The company audit trail, and pushing live events to the company's sockets after commit."""

from __future__ import annotations

from typing import Any

from models import CompanyEvent, db
from services.platform import runtime
from services.platform.transactions import on_commit


def record(company_id: int, kind: str, **data: Any) -> CompanyEvent:
    """Append ``kind`` (registered, qr_issued, connected, activated …) to the company's trail."""
    entry = CompanyEvent(company_id=company_id, kind=kind, data=data or None)
    db.session.add(entry)
    return entry


def publish_after_commit(company_id: int, event: str, data: dict[str, Any]) -> None:
    """Send ``event`` to the company's sockets once the current transaction has committed."""
    bus = runtime.bus()
    on_commit(lambda: bus.emit(company_id, event, data))
