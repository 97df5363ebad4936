"""Rate limits: public per client IP, protected per API key, headers, 429 shape, Redis storage, proxies."""

from __future__ import annotations

import logging
import sys
import time
from urllib.parse import urlsplit

import pytest
import redis

from models import IntegrationStatus
from web import limits


@pytest.fixture(scope="module")
def limited_app(make_app):
    return make_app(ratelimit_enabled=True, ratelimit_public="3/minute", ratelimit_protected="2/minute")


@pytest.fixture(scope="module")
def proxied_app(make_app):
    return make_app(ratelimit_enabled=True, ratelimit_public="2/minute", trusted_proxies=1)


def _headers_ok(response, limit: int, remaining: int) -> None:
    assert response.headers["X-RateLimit-Limit"] == str(limit)
    assert response.headers["X-RateLimit-Remaining"] == str(remaining)
    reset = int(response.headers["X-RateLimit-Reset"])
    assert time.time() - 1 <= reset <= time.time() + 61


def test_public_limit_per_ip_with_headers_and_429(limited_app, ctx):
    client = limited_app.test_client()
    for remaining in (2, 1, 0):
        response = client.post("/marketplace/register", json={})
        assert response.status_code == 400 and "Retry-After" not in response.headers
        _headers_ok(response, 3, remaining)
    response = client.post("/marketplace/register", json={"salon_id": 1})
    assert response.status_code == 429
    body = response.json
    assert body["success"] is False and body["error"] == "Too many requests"
    assert 1 <= body["retry_after"] <= 60
    assert int(response.headers["Retry-After"]) in (body["retry_after"], body["retry_after"] - 1)
    _headers_ok(response, 3, 0)
    # Public endpoints share the one per-IP budget.
    assert client.get("/marketplace/install").status_code == 429


def test_landing_and_self_test_share_the_public_budget_while_health_stays_open(limited_app, ctx):
    client = limited_app.test_client()
    env = {"REMOTE_ADDR": "10.0.0.7"}
    assert client.get("/marketplace/", environ_base=env).status_code == 200
    assert client.get("/marketplace/test", environ_base=env).status_code == 200
    assert client.get("/marketplace/connect", environ_base=env).status_code == 401
    for path in ("/marketplace/", "/marketplace/test", "/marketplace/connect"):
        refused = client.get(path, environ_base=env)
        assert refused.status_code == 429 and refused.headers["X-RateLimit-Limit"] == "3"
    for _ in range(5):
        assert client.get("/marketplace/health/live", environ_base=env).status_code == 200
        assert "X-RateLimit-Limit" not in client.get("/marketplace/health", environ_base=env).headers


def test_another_ip_has_its_own_budget(limited_app, ctx):
    client = limited_app.test_client()
    for _ in range(3):
        client.post("/marketplace/register", json={}, environ_base={"REMOTE_ADDR": "10.0.0.1"})
    assert client.post("/marketplace/register", json={}, environ_base={"REMOTE_ADDR": "10.0.0.1"}).status_code == 429
    assert client.post("/marketplace/register", json={}, environ_base={"REMOTE_ADDR": "10.0.0.2"}).status_code == 400


def test_forwarded_for_counts_only_through_trusted_proxies(limited_app, proxied_app, ctx):
    # No trusted proxy: a forged X-Forwarded-For does not buy a fresh budget.
    client = limited_app.test_client()
    for n in range(3):
        client.post("/marketplace/register", json={}, headers={"X-Forwarded-For": f"1.1.1.{n}"})
    assert client.post("/marketplace/register", json={}, headers={"X-Forwarded-For": "1.1.1.9"}).status_code == 429

    # One trusted proxy: the address it appended is the client.
    client = proxied_app.test_client()
    env = {"REMOTE_ADDR": "192.168.0.10"}
    for _ in range(2):
        client.post("/marketplace/register", json={}, headers={"X-Forwarded-For": "5.5.5.5"}, environ_base=env)
    blocked = client.post("/marketplace/register", json={}, headers={"X-Forwarded-For": "5.5.5.5"}, environ_base=env)
    assert blocked.status_code == 429
    # A client that prepends a fake address still gets the proxy-appended one counted.
    spoofed = client.post(
        "/marketplace/register", json={}, headers={"X-Forwarded-For": "9.9.9.9, 5.5.5.5"}, environ_base=env
    )
    assert spoofed.status_code == 429
    other = client.post("/marketplace/register", json={}, headers={"X-Forwarded-For": "6.6.6.6"}, environ_base=env)
    assert other.status_code == 400


def test_protected_limit_is_per_api_key(limited_app, ctx, company_factory):
    first, second = company_factory(), company_factory()
    client = limited_app.test_client()
    for remaining in (1, 0):
        response = client.get(f"/marketplace/status/{first.id}", headers={"X-API-Key": first.api_key})
        assert response.status_code == 200 and "Retry-After" not in response.headers
        _headers_ok(response, 2, remaining)
    blocked = client.get(f"/marketplace/status/{first.id}", headers={"X-API-Key": first.api_key})
    assert blocked.status_code == 429 and blocked.headers["Retry-After"]
    # Same IP, another key: its own budget.
    assert client.get(f"/marketplace/status/{second.id}", headers={"X-API-Key": second.api_key}).status_code == 200


@pytest.mark.parametrize(
    ("path", "credential"),
    [
        ("/marketplace/companies", "X-API-Key"),
        ("/marketplace/metrics", "X-API-Key"),
        ("/marketplace/metrics", "Authorization"),
        ("/marketplace/status/1", "Authorization"),
        ("/marketplace/admin/webhooks", "X-API-Key"),
    ],
)
def test_made_up_credentials_share_one_budget_per_client_ip(limited_app, ctx, path, credential):
    import secrets

    client = limited_app.test_client()
    env = {"REMOTE_ADDR": "10.9.0.1"}

    def guess() -> int:
        value = "sk_" + secrets.token_urlsafe(32)
        headers = {credential: value if credential == "X-API-Key" else f"Bearer {value[3:]}"}
        return client.get(path, headers=headers, environ_base=env).status_code

    assert [guess() for _ in range(2)] == [401, 401]
    assert [guess() for _ in range(3)] == [429, 429, 429]
    assert client.get(path, environ_base=env).status_code == 429  # no credential: the same budget
    other = client.get(path, headers={credential: "sk_x"}, environ_base={"REMOTE_ADDR": "10.9.0.2"})
    assert other.status_code == 401


def test_the_metrics_token_and_the_admin_key_have_budgets_of_their_own(make_app, ctx, admin_headers):
    app = make_app(ratelimit_enabled=True, ratelimit_protected="2/minute", metrics_token="metrics-token-0123456789")
    client = app.test_client()
    env = {"REMOTE_ADDR": "10.9.0.3"}
    for _ in range(2):
        wrong = client.get("/marketplace/metrics", headers={"X-API-Key": "sk_wrong"}, environ_base=env)
        assert wrong.status_code == 401
    assert client.get("/marketplace/metrics", environ_base=env).status_code == 429
    bearer = {"Authorization": "Bearer metrics-token-0123456789"}
    assert client.get("/marketplace/metrics", headers=bearer, environ_base=env).status_code == 200
    assert client.get("/marketplace/metrics", headers=admin_headers, environ_base=env).status_code == 200


def test_counters_live_in_redis(limited_app, ctx, backends):
    limited_app.test_client().post("/marketplace/register", json={})
    with redis.Redis.from_url(backends.redis_url) as client:
        keys = [k.decode() for k in client.scan_iter(f"{backends.namespace}:limits*")]
    assert keys and any("public" in k for k in keys)


def test_a_second_app_sees_the_same_counters(limited_app, make_app, ctx):
    """Two apps (as two processes would) on one Redis share one budget."""
    for _ in range(3):
        limited_app.test_client().post("/marketplace/register", json={})
    other = make_app(ratelimit_enabled=True, ratelimit_public="3/minute")
    assert other.test_client().post("/marketplace/register", json={}).status_code == 429


def test_webhook_ingestion_is_never_limited(limited_app, ctx, company_factory):
    made = company_factory()
    client = limited_app.test_client()
    for _ in range(4):
        client.post("/marketplace/register", json={})
    for _ in range(5):
        url = urlsplit(made.webhook_url)
        response = client.post(f"{url.path}?{url.query}", json={"type": "booking_created", "data": {}})
        assert response.status_code != 429


def test_switching_limits_off_is_per_app(app, limited_app, ctx):
    for _ in range(5):
        limited_app.test_client().post("/marketplace/register", json={})
    client = app.test_client()  # the default test app has RATELIMIT_ENABLED=false
    for _ in range(5):
        response = client.post("/marketplace/register", json={})
        assert response.status_code == 400 and "X-RateLimit-Limit" not in response.headers


def test_unlimited_views_skip_the_limiter_before_it_resolves_limits(limited_app, ctx, company_factory, monkeypatch):
    from web.extensions import limiter

    resolved: list[str | None] = []
    resolve = limiter.limit_manager.resolve_limits
    monkeypatch.setattr(limiter.limit_manager, "resolve_limits",
                        lambda app, endpoint, *rest: resolved.append(endpoint) or resolve(app, endpoint, *rest))
    made = company_factory()
    url = urlsplit(made.webhook_url)
    client = limited_app.test_client()
    delivery = {"type": "booking_created", "data": {"id": 1}}
    assert client.post(f"{url.path}?{url.query}", json=delivery).status_code == 200
    assert client.post("/marketplace/webhook/yclients", json={}).status_code in (200, 401)
    assert resolved == []
    client.post("/marketplace/register", json={})
    assert resolved and set(resolved) == {"marketplace.register"}


def test_a_signed_in_salon_page_has_its_own_budget_and_everything_else_counts_on_the_ip(make_app, ctx,
                                                                                          company_factory):
    """Live refreshes and previews of salons behind one address do not share its public budget."""
    app = make_app(ratelimit_enabled=True, ratelimit_public="2/minute", ratelimit_protected="4/minute")
    env = {"REMOTE_ADDR": "10.0.9.1"}
    first, second = app.test_client(), app.test_client()
    for client in (first, second):  # signing in counts on the address, like every public page
        made = company_factory(status=IntegrationStatus.ACTIVE)
        signed_in = client.get("/marketplace/salon", query_string={"token": made.token}, environ_base=env)
        assert signed_in.status_code == 303 and signed_in.headers["X-RateLimit-Limit"] == "2"
    assert app.test_client().get("/marketplace/salon", environ_base=env).status_code == 429
    assert app.test_client().get("/marketplace/", environ_base=env).status_code == 429
    for _ in range(4):
        page = first.get("/marketplace/salon", environ_base=env)
        assert page.status_code == 200 and page.headers["X-RateLimit-Limit"] == "4"
    assert first.get("/marketplace/salon", environ_base=env).status_code == 429
    assert second.get("/marketplace/salon", environ_base=env).status_code == 200


def test_swallowed_storage_errors_are_logged_in_brief_once_a_period():
    brief = limits.SwallowedErrorsInBrief(every=0.2)

    def swallowed() -> logging.LogRecord:
        try:
            raise redis.ConnectionError("Connection refused")
        except redis.ConnectionError:
            record = logging.getLogger(limits.LIMITER_LOGGER).makeRecord(
                limits.LIMITER_LOGGER, logging.ERROR, __file__, 1, "Failed to rate limit. Swallowing error", (),
                sys.exc_info())
        return record

    kept = [record for record in (swallowed() for _ in range(50)) if brief.filter(record)]
    assert len(kept) == 1
    first = kept[0]
    assert first.levelno == logging.WARNING and first.exc_info is None
    assert first.getMessage() == ("rate limit storage unreachable, requests let through unlimited "
                                  "(1 since the last report): Connection refused")
    time.sleep(0.25)
    later = swallowed()
    assert brief.filter(later) and "(50 since the last report)" in later.getMessage()
    other = logging.LogRecord(limits.LIMITER_LOGGER, logging.INFO, __file__, 1, "Rate limit storage recovered", (),
                              None)
    assert brief.filter(other) and other.getMessage() == "Rate limit storage recovered"
