"""Per-company webhook secrets, derived (never stored) and carried in the webhook URL."""

from __future__ import annotations

import base64
import hashlib
import hmac
from typing import Protocol

from models import Company
from services.platform import runtime


class HasWebhookSecret(Protocol):
    """Anything carrying a company's id and secret generation (a Company row, a lighter tuple)."""

    @property
    def id(self) -> int: ...

    @property
    def webhook_secret_generation(self) -> int | None: ...


def webhook_secret(company: HasWebhookSecret) -> str | None:
    """The company's current secret, or None while revoked (after an uninstall)."""
    if is_revoked(company):
        return None
    message = f"webhook:{company.id}:{company.webhook_secret_generation}".encode()
    digest = hmac.new(runtime.settings().secret_key.encode(), message, hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")[:32]


def verify_webhook_secret(company: HasWebhookSecret, presented: str | None) -> bool:
    """Constant-time check of a presented secret against the company's current one."""
    expected = webhook_secret(company)
    if not expected or not presented:
        return False
    return hmac.compare_digest(expected.encode(), presented.encode())


def presented_digest(presented: str | None) -> str | None:
    """A keyed digest of a presented secret, for keeping a delivery without its working URL (the spool)."""
    if not presented:
        return None
    key = runtime.settings().secret_key.encode()
    return hmac.new(key, b"presented-webhook-secret:" + presented.encode(), hashlib.sha256).hexdigest()


def verify_webhook_secret_digest(company: HasWebhookSecret, digest: str | None) -> bool:
    """``verify_webhook_secret`` for a secret kept only as its ``presented_digest``."""
    expected = presented_digest(webhook_secret(company))
    if not expected or not digest:
        return False
    return hmac.compare_digest(expected.encode(), digest.encode())


def is_revoked(company: HasWebhookSecret) -> bool:
    """True while no secret is valid (after an uninstall, until the next rotation)."""
    return company.webhook_secret_generation is None or company.webhook_secret_generation <= 0


def webhook_url(company: Company) -> str | None:
    """The absolute URL YClients posts this company's events to (None once revoked)."""
    secret = webhook_secret(company)
    if secret is None:
        return None
    return f"{runtime.settings().public_base_url}/marketplace/webhook/{company.id}?secret={secret}"


def rotate_webhook_secret(company: Company) -> None:
    """Start a new generation: every earlier URL stops working (also after a revocation)."""
    company.webhook_secret_generation = abs(company.webhook_secret_generation or 0) + 1


def revoke_webhook_secret(company: Company) -> None:
    """No valid secret until the next rotation; the generation is kept (negated) so a later
    rotation never brings an old URL back to life."""
    company.webhook_secret_generation = -abs(company.webhook_secret_generation or 0)


def gateway_events_secret(company_id: int) -> str:
    """The secret in the URL a WhatsApp gateway posts this company's session events to (derived, never
    stored; apart from the YClients one, so neither party can forge the other's deliveries)."""
    message = f"gateway-events:{company_id}".encode()
    digest = hmac.new(runtime.settings().secret_key.encode(), message, hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")[:32]


def verify_gateway_events_secret(company_id: int, presented: str | None) -> bool:
    """Constant-time check of the secret a gateway delivery presents."""
    if not presented:
        return False
    return hmac.compare_digest(gateway_events_secret(company_id).encode(), presented.encode())


def gateway_events_url(company_id: int) -> str:
    """The absolute URL the gateway posts this company's WhatsApp events to, secret included."""
    base = runtime.settings().public_base_url.rstrip("/")
    return f"{base}/marketplace/whatsapp/events/{company_id}?secret={gateway_events_secret(company_id)}"
