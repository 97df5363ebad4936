"""Reading credentials from a request: API keys (``X-API-Key``) and connect tokens."""

from __future__ import annotations

import hmac
from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar

from flask import request
from werkzeug.wrappers import Request

from services.access import api_keys, tokens
from services.access.api_keys import Principal
from services.platform import runtime
from services.platform.errors import Forbidden, Unauthorized

F = TypeVar("F", bound=Callable[..., Any])
_PRINCIPAL = "ycwa.principal"


def presented_api_key() -> str | None:
    """The ``sk_…`` key from ``X-API-Key`` or ``Authorization: Bearer sk_…``, if any."""
    key = request.headers.get("X-API-Key")
    if key:
        return key.strip()
    scheme, _, value = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() == "bearer" and value.strip().startswith("sk_"):
        return value.strip()
    return None


def presented_token(source: Request | None = None) -> str | None:
    """A connect token from ``Authorization: Bearer``, ``x-auth-token`` or ``?token=`` of ``source``
    (the current request unless given, as Socket.IO gives its handshake's)."""
    req = request if source is None else source
    scheme, _, value = req.headers.get("Authorization", "").partition(" ")
    if scheme.lower() == "bearer" and value.strip() and not value.strip().startswith("sk_"):
        return value.strip()
    return req.headers.get("x-auth-token") or req.args.get("token") or None


def current_principal() -> Principal | None:
    """The principal of the presented API key (cached per request), or None."""
    # Cached on the request, not on ``g``: an app context can outlive one request (tests push their own).
    if _PRINCIPAL not in request.environ:
        request.environ[_PRINCIPAL] = api_keys.authenticate(presented_api_key())
    return request.environ[_PRINCIPAL]


def metrics_token_presented() -> bool:
    """Whether ``Authorization: Bearer`` carries the configured ``METRICS_TOKEN``."""
    configured = runtime.settings().metrics_token
    scheme, _, value = request.headers.get("Authorization", "").partition(" ")
    if not configured or scheme.lower() != "bearer" or not value.strip():
        return False
    return hmac.compare_digest(value.strip().encode(), configured.encode())


def presented_valid_credential() -> str | None:
    """The presented API key, connect token or metrics token when it is valid; None for none or a bad one."""
    if presented_api_key():
        return presented_api_key() if current_principal() is not None else None
    token = presented_token()
    if token is None:
        return None
    if metrics_token_presented():
        return token
    try:
        tokens.verify_connect_token(token)
    except Unauthorized:
        return None
    return token


def require_company(view: F) -> F:
    """Allow the key of the company the route names (``company_id``) or the admin key: 401 without a
    valid key, 403 for another company's."""

    @wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        principal = current_principal()
        if principal is None:
            raise Unauthorized("Unauthorized")
        if not principal.may_act_for(kwargs["company_id"]):
            raise Forbidden("Нет доступа к этой компании")
        return view(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


def require_admin(view: F) -> F:
    """Allow only the admin key; 401 ``Unauthorized`` otherwise."""

    @wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        principal = current_principal()
        if principal is None or not principal.is_admin:
            raise Unauthorized("Unauthorized")
        return view(*args, **kwargs)

    return wrapper  # type: ignore[return-value]
