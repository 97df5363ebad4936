"""The salon page's sign-in cookie: setting it, reading it, and the CSRF check on every change."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar

from flask import render_template, request
from werkzeug.wrappers import Response

from services.access import salon_sessions
from services.access.salon_sessions import SalonSession
from services.platform import runtime
from services.platform.errors import Forbidden

F = TypeVar("F", bound=Callable[..., Any])
COOKIE_PATH = "/marketplace/salon"
SIGNED_OUT = "Вы вышли со страницы салона"
SIGN_IN_HINT = "Откройте её снова из YClients: Маркетплейс → WhatsApp, или по ссылке подключения."
_SAFE_SITES = ("same-origin", "none")
_SESSION = "ycwa.salon_session"


def set_cookie(response: Response, session_id: str, session: SalonSession) -> None:
    """Hand the browser the session: HttpOnly, SameSite=Lax, only for the salon page's paths."""
    response.set_cookie(
        salon_sessions.COOKIE, session_id, max_age=session.expires_in, path=COOKIE_PATH, httponly=True,
        samesite="Lax", secure=runtime.settings().public_base_url.startswith("https://"),
    )


def clear_cookie(response: Response) -> None:
    """Make the browser forget the session."""
    response.delete_cookie(salon_sessions.COOKIE, path=COOKIE_PATH, httponly=True, samesite="Lax")


def private(response: Response) -> Response:
    """Headers of every salon page answer: not cached, no referrer to other sites (our own still get the
    Origin the CSRF check reads), not framed by another site."""
    response.headers["Cache-Control"] = "no-store"
    response.headers["Referrer-Policy"] = "same-origin"
    response.headers["X-Frame-Options"] = "DENY"
    return response


def signed_out_page(title: str = "Нужно войти") -> tuple[str, int]:
    """The 401 page of a missing, expired or ended session."""
    return render_template("error.html", title=title, message="Сессия страницы салона закончилась или не начата.",
                           hint=SIGN_IN_HINT), 401


def current_session() -> SalonSession | None:
    """The session of this request's cookie (looked up once per request), or None."""
    # On the request, not on ``g``: an app context can outlive one request (tests push their own).
    if _SESSION not in request.environ:
        request.environ[_SESSION] = salon_sessions.find_session(request.cookies.get(salon_sessions.COOKIE))
    return request.environ[_SESSION]


def _same_site_request() -> bool:
    """A browser sending Sec-Fetch-Site or Origin says where the request comes from: it must be us."""
    site = request.headers.get("Sec-Fetch-Site")
    if site is not None and site not in _SAFE_SITES:
        return False
    origin = request.headers.get("Origin")
    return origin is None or origin == request.host_url.rstrip("/")


def require_salon(view: F) -> F:
    """Run the view with the session's company (``company_id`` argument); the 401 page without a session.
    Changes (any method but GET/HEAD) must also carry the session's CSRF token and come from this site."""

    @wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        session = current_session()
        if session is None:
            return signed_out_page()
        if request.method not in ("GET", "HEAD"):
            from_script = salon_sessions.CSRF_HEADER in request.headers
            presented = request.headers.get(salon_sessions.CSRF_HEADER) or request.form.get(salon_sessions.CSRF_FIELD)
            try:
                if not _same_site_request():
                    raise Forbidden(salon_sessions.BAD_CSRF)
                salon_sessions.check_csrf(session, presented)
            except Forbidden as exc:
                if from_script:
                    raise
                return render_template("error.html", title="Действие не выполнено", message=exc.message), 403
        return view(*args, company_id=session.company_id, **kwargs)

    return wrapper  # type: ignore[return-value]
