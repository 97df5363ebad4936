"""The salon's own page, ``/marketplace/salon``: sign-in by a connect token or the install redirect,
sign-out, and the owner's changes — WhatsApp, messaging settings, templates and their live preview — each
behind the session cookie and its CSRF token."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from flask import make_response, redirect, render_template, request, url_for
from werkzeug.wrappers import Response

from models import db
from services.access import salon_sessions, tokens
from services.companies import salon_overview
from services.messaging import preview, settings
from services.platform.errors import InvalidInput, NotFound, Unauthorized
from services.platform.ids import parse_id
from services.whatsapp import sessions, unlink
from web.bodies import json_object
from web.limits import salon_limit
from web.marketplace import bp
from web.salon_chart import chart
from web.salon_forms import settings_payload, template_payload
from web.salon_session import (
    SIGNED_OUT,
    clear_cookie,
    current_session,
    private,
    require_salon,
    set_cookie,
    signed_out_page,
)


def signed_in_redirect(company_id: int) -> Response:
    """A new session for the company and a redirect to its page, with no token in the URL."""
    session_id, session = salon_sessions.open_session(company_id)
    response = redirect(url_for("marketplace.salon_page"), code=303)
    set_cookie(response, session_id, session)
    return private(response)


@bp.get("/salon")
@salon_limit
def salon_page() -> Any:
    """The page; ``?token=`` (a connect link) is exchanged for the session cookie first."""
    if "token" in request.args:
        try:
            claims = tokens.verify_connect_token(request.args["token"])
            if tokens.SESSION_CLAIM in claims:  # a page's live token: it never opens a session of its own
                raise Unauthorized(tokens.INVALID_TOKEN)
            company = sessions.get_company(int(claims["company_id"]))
        except (Unauthorized, NotFound):
            return private(make_response(signed_out_page("Ссылка недействительна")))
        return signed_in_redirect(company.id)
    session = current_session()
    if session is None:
        return private(make_response(signed_out_page()))
    return _page()


def _page(errors: dict[str, str] | None = None, status: int = 200) -> Response:
    """The page of the current session; after a refused change, its problems shown where they belong."""
    session = current_session()
    assert session is not None
    search = (request.args.get("q") or "").strip()[:100] or None
    before_id = parse_id(request.args.get("before"), "before")
    page = salon_overview.overview(session, search, before_id)
    body = render_template("salon.html", csrf_token=session.csrf_token, chart=chart(page["stats"], page["today"]),
                           errors=errors or {}, form=request.form if errors else {}, **page)
    return private(make_response(body, status))


@bp.app_template_filter("salon_time")
def salon_time(value: str | None, zone: ZoneInfo, form: str = "%d.%m %H:%M") -> str:
    """An ISO time as the salon reads it (``03.12 15:00``, or ``form``) in its own time zone."""
    return datetime.fromisoformat(value).astimezone(zone).strftime(form) if value else ""


@bp.app_template_test("salon_today")
def salon_today(message: dict[str, Any], zone: ZoneInfo, today: str) -> bool:
    """Whether a message is due on the salon's today (``today`` as ``YYYY-MM-DD``)."""
    return salon_time(message.get("due_at"), zone, "%Y-%m-%d") == today


def _change(payload: dict[str, Any], company_id: int, anchor: str) -> Response:
    """Save a settings change and show the page again; a 422 page with the problems inline when refused."""
    try:
        settings.change(sessions.get_company(company_id), payload)
    except InvalidInput as exc:
        db.session.rollback()
        return _page(exc.extra.get("errors") or {"form": exc.message}, 422)
    db.session.commit()
    return private(redirect(url_for("marketplace.salon_page") + anchor, code=303))


@bp.post("/salon/settings")
@salon_limit
@require_salon
def salon_settings(company_id: int) -> Response:
    """Kinds on/off, reminders, quiet hours, time zone, contact phone."""
    return _change(settings_payload(request.form), company_id, "#settings")


@bp.post("/salon/templates")
@salon_limit
@require_salon
def salon_template(company_id: int) -> Response:
    """Save one template, or put it back to the default."""
    return _change(template_payload(request.form), company_id, "#templates")


@bp.post("/salon/preview")
@salon_limit
@require_salon
def salon_preview(company_id: int) -> dict[str, Any]:
    """``{"kind", "template"}`` as the client would read it (the next booking, or a sample); a template
    that cannot be saved is a 400 naming the problem in ``errors.template``."""
    body = json_object()
    answer = preview.preview(sessions.get_company(company_id), body.get("kind"), body.get("template"))
    return {"success": True, **answer}


@bp.post("/salon/signout")
@salon_limit
@require_salon
def salon_signout(company_id: int) -> Any:
    """End the session everywhere and forget the cookie."""
    salon_sessions.end_session(request.cookies.get(salon_sessions.COOKIE))
    response = make_response(render_template("error.html", title=SIGNED_OUT, message=SIGNED_OUT,
                                             hint="Чтобы вернуться, откройте страницу снова из YClients."))
    clear_cookie(response)
    return private(response)


@bp.post("/salon/disconnect")
@salon_limit
@require_salon
def salon_disconnect(company_id: int) -> Response:
    """Unlink WhatsApp (the page asked for confirmation first) and show the page again."""
    unlink.disconnect(company_id)
    db.session.commit()
    return private(redirect(url_for("marketplace.salon_page"), code=303))
