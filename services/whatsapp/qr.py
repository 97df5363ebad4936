"""QR and pairing codes for the connect page: PNG data URIs and their Redis cache.

Each cached code expires with the code itself, so every web process serves the same current code
and never a stale one.
"""

from __future__ import annotations

import base64
import io
import json
import math
import time
from typing import Any, cast

import qrcode
from qrcode.constants import ERROR_CORRECT_M

from services.platform import runtime


def render_data_uri(value: str) -> str:
    """The QR of ``value`` as ``data:image/png;base64,…``."""
    code = qrcode.QRCode(error_correction=ERROR_CORRECT_M, box_size=8, border=2)
    code.add_data(value)
    code.make(fit=True)
    buffer = io.BytesIO()
    code.make_image().save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def format_pairing_code(raw: str) -> str:
    """WhatsApp's 8-character code shown as ``XXXX-XXXX``."""
    chars = "".join(ch for ch in raw.upper() if ch.isalnum())
    return f"{chars[:4]}-{chars[4:8]}" if len(chars) == 8 else chars


def _key(kind: str, company_id: int) -> str:
    return runtime.settings().key(kind, company_id)


def _store(kind: str, company_id: int, body: dict[str, Any], expires_in: float) -> None:
    ttl_ms = max(1, int(expires_in * 1000))
    body = {**body, "expires_at": time.time() + expires_in}
    runtime.redis().set(_key(kind, company_id), json.dumps(body), px=ttl_ms)


def _load(kind: str, company_id: int) -> dict[str, Any] | None:
    raw = cast("bytes | None", runtime.redis().get(_key(kind, company_id)))
    if not raw:
        return None
    body: dict[str, Any] = json.loads(raw)
    left = float(body.pop("expires_at", 0)) - time.time()
    if left <= 0 and "error" not in body:
        return None
    body["expires_in"] = max(0, math.ceil(left))
    return body


def cache_qr(company_id: int, data_uri: str, expires_in: float, attempt: int, seq: int) -> None:
    """Keep the rendered QR for exactly its remaining lifetime."""
    _store("qr", company_id, {"qr": data_uri, "attempt": attempt, "seq": seq}, expires_in)


def cached_qr(company_id: int) -> dict[str, Any] | None:
    """``{"qr", "expires_in", "attempt", "seq"}`` of the live QR, or None."""
    return _load("qr", company_id)


def cache_pairing(company_id: int, nonce: str, expires_in: float, code: str | None = None,
                  error: str | None = None) -> None:
    """Keep a pairing code (or the reason there is none) for the request ``nonce`` waiting on it."""
    body: dict[str, Any] = {"nonce": nonce}
    body.update({"code": code} if code else {"error": error or "unknown"})
    _store("pairing", company_id, body, expires_in)


def cached_pairing(company_id: int) -> dict[str, Any] | None:
    """``{"code" | "error", "nonce", "expires_in"}`` of the latest pairing request, or None."""
    return _load("pairing", company_id)


def forget(company_id: int) -> None:
    """Drop the cached QR and pairing code (new attempt, connected, logged out)."""
    runtime.redis().delete(_key("qr", company_id), _key("pairing", company_id))
