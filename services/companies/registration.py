"""Registering a salon (a company): from ``POST /register`` or YClients' signed install redirect.

Who gets what:

* a new salon is registered for the admin key, for a YClients install signature once the partner
  API confirms our application is installed there (``services.companies.installation``), or for
  anyone when no partner token is configured (development);
* an existing salon is re-attached with a new API key only for its own key or the admin key;
* a signature for an existing salon yields a connect-page session and nothing else (no key, no
  webhook secret, no change to its data), recorded as a ``reattached`` company event. The
  signature does not name the salon, so it cannot prove the salon is the signer's. An uninstalled
  or frozen salon is restarted by it only once YClients confirms the new installation.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select

from models import Company, IntegrationStatus, SessionStatus, WhatsAppSession, db
from services.access import api_keys, install_signature, tokens, webhook_secrets
from services.access.api_keys import Principal
from services.access.install_signature import MarketplaceUser
from services.access.webhook_secrets import webhook_url
from services.callbacks.activation import enqueue_callback
from services.companies import company_events, installation
from services.phones import parse_phone
from services.platform import runtime
from services.platform.errors import Conflict, Forbidden, InvalidInput, Unauthorized
from services.platform.ids import MAX_BIG_ID, as_id
from services.platform.text import has_controls
from services.platform.transactions import add_unless_exists

log = logging.getLogger(__name__)

MISSING_SALON_ID = "Отсутствует обязательный параметр salon_id"
BAD_SALON_ID = "Параметр salon_id должен быть положительным целым числом"
BAD_EMAIL = "Некорректный email"
BAD_JSON = "Некорректный JSON в теле запроса"
ALREADY_REGISTERED = "Салон уже зарегистрирован: нужен API-ключ компании, ключ администратора или подпись YClients"
PROOF_REQUIRED = "Для регистрации нужна подпись YClients (user_data, user_data_sign) или ключ администратора"
REGISTERED = "Компания успешно зарегистрирована"
REATTACHED = "Компания уже была зарегистрирована: выдан новый API-ключ"
OTHER_USER = (
    "Этот салон подключил другой пользователь YClients: откройте приложение из его кабинета "
    "или обратитесь в поддержку"
)
CONNECT_ONLY = (
    "Компания уже зарегистрирована: выдана ссылка на страницу подключения; "
    "API-ключ выдаётся только по ключу компании или ключу администратора"
)

EMAIL = re.compile(
    r"^[^@\s]{1,64}@[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9-]{1,63})*\.[A-Za-z]{2,63}$"
)
DEFAULT_KEY_LABEL = "default"
# A new install after these reactivates the company.
REACTIVATED_FROM = (IntegrationStatus.UNINSTALLED, IntegrationStatus.FROZEN)


@dataclass(frozen=True)
class RegistrationRequest:
    """Validated input of ``POST /register``."""

    salon_id: int
    phone: str | None = None
    email: str | None = None


@dataclass(frozen=True)
class Registration:
    """What registering produced; ``api_key`` is None when no key was issued (install redirect)."""

    company: Company
    created: bool
    api_key: str | None
    connect_url: str
    webhook_url: str | None

    def as_json(self) -> dict[str, Any]:
        """The reference's 201 body plus ``webhook_url``."""
        message = REGISTERED if self.created else REATTACHED if self.api_key else CONNECT_ONLY
        return {
            "success": True,
            "company_id": self.company.id,
            "salon_id": self.company.salon_id,
            "api_key": self.api_key,
            "connect_url": self.connect_url,
            "webhook_url": self.webhook_url,
            "message": message,
        }


def parse_salon_id(value: Any) -> int:
    """A positive integer salon id from JSON or a query string; ``InvalidInput`` otherwise."""
    if value is None or (isinstance(value, str) and not value.strip()):
        raise InvalidInput(MISSING_SALON_ID)
    salon_id = as_id(value, MAX_BIG_ID)
    if salon_id is None:
        raise InvalidInput(BAD_SALON_ID)
    return salon_id


def parse_registration(payload: Any) -> RegistrationRequest:
    """Validate the body; the first failing field decides the message (reference order)."""
    if not isinstance(payload, dict):
        raise InvalidInput(BAD_JSON)
    salon_id = parse_salon_id(payload.get("salon_id"))
    phone = payload.get("phone")
    phone = None if phone in (None, "") else parse_phone(phone)
    email = payload.get("email")
    if email in (None, ""):
        email = None
    elif not isinstance(email, str) or len(email) > 254 or has_controls(email) or not EMAIL.match(email.strip()):
        raise InvalidInput(BAD_EMAIL)
    else:
        email = email.strip()
    return RegistrationRequest(salon_id, phone, email)


def connect_url(company: Company) -> str:
    """The connect page of the company, with a fresh connect token."""
    token = tokens.issue_connect_token(company.id, company.salon_id)
    return f"/marketplace/connect?token={token}&company={company.id}&salon={company.salon_id}"


def _find(salon_id: int) -> Company | None:
    return db.session.scalar(select(Company).where(Company.salon_id == salon_id))


def _apply_user(company: Company, user: MarketplaceUser | None) -> None:
    if user is None:
        return
    company.marketplace_user_id = user.id
    company.marketplace_user_name = user.name
    company.marketplace_user_phone = user.phone
    company.marketplace_user_email = user.email
    company.title = company.title or user.salon_name


def _create(salon_id: int, source: str, user: MarketplaceUser | None, **fields: Any) -> Company | None:
    """Insert the company, or None when another request inserted the same salon first."""
    company = Company(salon_id=salon_id, integration_status=IntegrationStatus.PENDING, **fields)
    _apply_user(company, user)
    if not add_unless_exists(company):
        return None
    company_events.record(company.id, "registered", source=source)
    return company


def _reactivate(company: Company, source: str) -> None:
    """A new install of an uninstalled or frozen salon starts it again."""
    if company.integration_status not in REACTIVATED_FROM:
        return
    if webhook_secrets.is_revoked(company):
        webhook_secrets.rotate_webhook_secret(company)
    session = db.session.scalar(select(WhatsAppSession).where(WhatsAppSession.company_id == company.id))
    if session is not None and session.status == SessionStatus.WORKING:
        company.integration_status = IntegrationStatus.CONNECTED
        enqueue_callback(company.id)  # YClients must be told again about the new install
    else:
        company.integration_status = IntegrationStatus.PENDING
    company_events.record(company.id, "reinstalled", source=source)


def register_company(
    request: RegistrationRequest, principal: Principal | None, user: MarketplaceUser | None
) -> Registration:
    """Register a new salon, or re-attach an existing one for a caller that proves the right to it.

    ``user`` is a verified YClients install signature. Caller commits.
    """
    if user is not None:
        install_signature.bind_signature(user.signature, request.salon_id)
    for _ in range(2):
        existing = _find(request.salon_id)
        if existing is not None:
            return _reattach(existing, request, principal, user)
        if runtime.settings().yclients_partner_token and not (principal and principal.is_admin):
            if user is None:
                raise Unauthorized(PROOF_REQUIRED)
            installation.confirm_installed(request.salon_id)
        company = _create(request.salon_id, "api", user, phone=request.phone, email=request.email)
        if company is not None:
            key = api_keys.issue_key(company.id, label=DEFAULT_KEY_LABEL)
            return Registration(company, True, key, connect_url(company), webhook_url(company))
    raise Conflict(ALREADY_REGISTERED)


def _reattach(
    company: Company, request: RegistrationRequest, principal: Principal | None, user: MarketplaceUser | None
) -> Registration:
    if not (principal and principal.may_act_for(company.id)):
        if user is None:
            raise Conflict(ALREADY_REGISTERED)
        return _marketplace_visit(company, user, "api")
    company.phone = request.phone or company.phone
    company.email = request.email or company.email
    _apply_user(company, user)
    _reactivate(company, "api")
    api_keys.revoke_keys(company.id, label=DEFAULT_KEY_LABEL)
    key = api_keys.issue_key(company.id, label=DEFAULT_KEY_LABEL)
    company_events.record(company.id, "key_rotated", label=DEFAULT_KEY_LABEL)
    return Registration(company, False, key, connect_url(company), webhook_url(company))


def _marketplace_visit(company: Company, user: MarketplaceUser, source: str) -> Registration:
    """A signature for a registered salon: a connect-page session only, recorded (see the module doc).

    Refused when the salon was installed by another YClients user: the connect page can unlink and
    relink its WhatsApp, and a signature does not prove the signer belongs to this salon."""
    if company.marketplace_user_id is not None and user.id != company.marketplace_user_id:
        log.warning("company %s: install signature of YClients user %s refused (installed by user %s)",
                    company.id, user.id, company.marketplace_user_id)
        raise Forbidden(OTHER_USER)
    if company.integration_status in REACTIVATED_FROM:
        installation.confirm_installed(company.salon_id)
        _reactivate(company, source)
    company_events.record(
        company.id, "reattached", source=source, marketplace_user_id=user.id,
        same_user=user.id is not None and user.id == company.marketplace_user_id,
    )
    return Registration(company, False, None, connect_url(company), None)


def install_company(salon_id: int, user: MarketplaceUser) -> Registration:
    """Register or re-attach the salon of a verified install redirect (no API key is shown). Caller commits."""
    install_signature.bind_signature(user.signature, salon_id)
    for _ in range(2):
        company = _find(salon_id)
        if company is not None:
            return _marketplace_visit(company, user, "install")
        installation.confirm_installed(salon_id)
        company = _create(salon_id, "install", user)
        if company is not None:
            return Registration(company, True, None, connect_url(company), webhook_url(company))
    raise Conflict(ALREADY_REGISTERED)
