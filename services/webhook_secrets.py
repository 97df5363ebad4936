"""Per-company webhook secrets, derived (never stored) and carried in the webhook URL."""

from __future__ import annotations

import base64
import hashlib
import hmac

from models import Company
from services import runtime


def webhook_secret(company: Company) -> str | None:
    """The company's current secret, or None once revoked (uninstall)."""
    generation = company.webhook_secret_generation
    if generation is None:
        return None
    message = f"webhook:{company.id}:{generation}".encode()
    digest = hmac.new(runtime.settings().secret_key.encode(), message, hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")[:32]


def verify_webhook_secret(company: Company, presented: str | None) -> bool:
    """Constant-time check of a presented secret against the company's current one."""
    expected = webhook_secret(company)
    if not expected or not presented:
        return False
    return hmac.compare_digest(expected.encode(), presented.encode())


def webhook_url(company: Company) -> str | None:
    """The absolute URL YClients posts this company's events to (None once revoked)."""
    secret = webhook_secret(company)
    if secret is None:
        return None
    return f"{runtime.settings().public_base_url}/marketplace/webhook/{company.id}?secret={secret}"


def rotate_webhook_secret(company: Company) -> None:
    """Start a new generation: the old URL stops working."""
    company.webhook_secret_generation = (company.webhook_secret_generation or 0) + 1


def revoke_webhook_secret(company: Company) -> None:
    """No secret at all: every delivery is rejected until a new generation is started."""
    company.webhook_secret_generation = None
