"""The salon's own page, ``/marketplace/salon``: sign-in by a connect token or the install redirect,
sign-out, and the owner's changes (each behind the session cookie and its CSRF token)."""

from __future__ import annotations

from typing import Any

from flask import make_response, redirect, render_template, request, url_for
from werkzeug.wrappers import Response

from models import db
from services.access import salon_sessions, tokens
from services.companies import salon_overview
from services.platform.errors import NotFound, Unauthorized
from services.whatsapp import sessions, unlink
from web.limits import public_limit
from web.marketplace import bp
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
@public_limit
def salon_page() -> Any:
    """The page; ``?token=`` (a connect link) is exchanged for the session cookie first."""
    if "token" in request.args:
        try:
            company = sessions.get_company(int(tokens.verify_connect_token(request.args["token"])["company_id"]))
        except (Unauthorized, NotFound):
            return private(make_response(signed_out_page("Ссылка недействительна")))
        return signed_in_redirect(company.id)
    session = current_session()
    if session is None:
        return private(make_response(signed_out_page()))
    page = salon_overview.overview(session.company_id, session.expires_in)
    return private(make_response(render_template("salon.html", csrf_token=session.csrf_token, **page)))


@bp.post("/salon/signout")
@public_limit
@require_salon
def salon_signout(company_id: int) -> Any:
    """End the session everywhere and forget the cookie."""
    salon_sessions.end_session(request.cookies.get(salon_sessions.COOKIE))
    response = make_response(render_template("error.html", title=SIGNED_OUT, message=SIGNED_OUT,
                                             hint="Чтобы вернуться, откройте страницу снова из YClients."))
    clear_cookie(response)
    return private(response)


@bp.post("/salon/disconnect")
@public_limit
@require_salon
def salon_disconnect(company_id: int) -> Response:
    """Unlink WhatsApp (the page asked for confirmation first) and show the page again."""
    unlink.disconnect(company_id)
    db.session.commit()
    return private(redirect(url_for("marketplace.salon_page"), code=303))
