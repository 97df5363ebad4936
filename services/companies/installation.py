"""Asking YClients whether our application is installed in a salon, before a signature may create or restart it.

YClients' install signature covers the user, not the salon (``services.access.install_signature``):
it proves that some YClients user opened our application, not that the ``salon_id`` beside it is
theirs. So before a signature registers a salon or restarts an uninstalled or frozen one, the
partner API is asked about that salon (``GET /marketplace/salon/{salon_id}/application/{id}``):
only ``pending`` (waiting for our activation) and ``active`` installations go ahead.

When YClients cannot answer (not configured, unreachable, too slow, 5xx or 429, our partner token
refused) the answer is no, with a message saying to try again. The check is what stops a signature
from being carried to another salon: failing open would let anyone holding a signature register
salons during any YClients outage, or any outage they can cause between us and YClients. Nothing
has been written when it fails, so the owner loses nothing by retrying.
"""

from __future__ import annotations

import logging

from integrations.yclients import Outcome, YClientsPartnerClient
from models import db
from services.platform import runtime
from services.platform.errors import Forbidden, Unavailable, UpstreamError

log = logging.getLogger(__name__)

NOT_INSTALLED = "Приложение не установлено в этом салоне YClients"
FROZEN = "Приложение заморожено в этом салоне YClients (не оплачено)"
UNREACHABLE = "Не удалось проверить в YClients установку приложения, попробуйте через минуту"
REFUSED = "YClients отказал в проверке установки приложения: обратитесь в поддержку"
NOT_CONFIGURED = "Проверка установки в YClients невозможна: YCLIENTS_APPLICATION_ID не настроен"


def confirm_installed(salon_id: int) -> None:
    """Return when YClients says our application is installed in ``salon_id``; raise otherwise.

    ``Forbidden`` when it is not (or is frozen), ``Unavailable`` when YClients could not be asked,
    ``UpstreamError`` when it refused our partner token. Ends the session's transaction first: none
    is held open across the call.
    """
    settings = runtime.settings()
    if not settings.yclients_partner_token or settings.yclients_application_id is None:
        raise Unavailable(NOT_CONFIGURED)
    db.session.rollback()  # nothing is written before the check; this only ends the read transaction
    client = YClientsPartnerClient(
        settings.yclients_api_url, settings.yclients_partner_token, settings.yclients_timeout_seconds
    )
    found = client.installation(salon_id, settings.yclients_application_id)
    if found.installed:
        return
    response = found.response
    if response.outcome is Outcome.RETRY:
        log.warning("installation of salon %s could not be checked: %s", salon_id, response.message)
        raise Unavailable(UNREACHABLE)
    if response.http_status in (401, 403):
        log.error("YClients refused the installation check of salon %s: %s", salon_id, response.message)
        raise UpstreamError(REFUSED)
    log.warning("salon %s: YClients reports no usable installation (%s)", salon_id, found.status or response.message)
    raise Forbidden(FROZEN if found.status == "freezed" else NOT_INSTALLED)
