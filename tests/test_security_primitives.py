"""API keys, connect tokens and webhook secrets."""

from __future__ import annotations

import time

import jwt
import pytest

from models import ApiKey, db
from services.access import api_keys, tokens, webhook_secrets
from services.platform.errors import Unauthorized
from tests.support import TEST_SECRET


def test_api_key_is_shown_once_and_stored_as_a_hash(ctx, company_factory):
    made = company_factory()
    assert made.api_key.startswith("sk_") and len(made.api_key) >= 35
    stored = db.session.query(ApiKey).filter_by(company_id=made.id).one()
    assert stored.key_hash == api_keys.hash_key(made.api_key) and made.api_key not in stored.key_hash
    assert api_keys.authenticate(made.api_key) == api_keys.Principal(company_id=made.id, key_id=stored.id)
    assert api_keys.revoke_keys(made.id) == 1
    assert api_keys.authenticate(made.api_key) is None


def test_admin_key_comes_from_the_settings(ctx, service_env):
    principal = api_keys.authenticate(service_env["ADMIN_API_KEY"])
    assert principal is not None and principal.is_admin and principal.may_act_for(42)
    assert api_keys.authenticate("sk_wrong") is None
    assert api_keys.authenticate(None) is None


def test_connect_token_round_trip(ctx):
    token = tokens.issue_connect_token(7, 962302)
    claims = tokens.verify_connect_token(token)
    assert claims["company_id"] == 7 and claims["salon_id"] == 962302 and claims["type"] == "connect"
    assert claims["exp"] - claims["iat"] == 24 * 3600


def _forge(claims: dict, key: str | None = TEST_SECRET, algorithm: str = "HS256") -> str:
    return jwt.encode(claims, None if algorithm == "none" else key, algorithm=algorithm)


@pytest.mark.parametrize(
    "token",
    [
        pytest.param(lambda now: _forge({"company_id": 1, "type": "connect", "iat": now, "exp": now + 60},
                                        algorithm="none"), id="alg-none"),
        pytest.param(lambda now: _forge({"company_id": 1, "type": "connect", "iat": now, "exp": now + 60},
                                        key="another-key-of-sufficient-length-000000"), id="wrong-key"),
        pytest.param(lambda now: _forge({"company_id": 1, "type": "connect", "iat": now - 120, "exp": now - 60}),
                     id="expired"),
        pytest.param(lambda now: _forge({"company_id": 1, "type": "connect", "iat": now}), id="no-exp"),
        pytest.param(lambda now: _forge({"company_id": 1, "type": "admin", "iat": now, "exp": now + 60}),
                     id="wrong-type"),
        pytest.param(lambda now: _forge({"company_id": "1", "type": "connect", "iat": now, "exp": now + 60}),
                     id="string-company"),
        pytest.param(lambda now: "not.a.token", id="garbage"),
    ],
)
def test_connect_token_attacks_are_rejected(ctx, token):
    with pytest.raises(Unauthorized, match="Недействительный токен"):
        tokens.verify_connect_token(token(int(time.time())))


def test_tampered_claims_are_rejected(ctx):
    header, payload, signature = tokens.issue_connect_token(1, 1).split(".")
    other_payload = tokens.issue_connect_token(2, 1).split(".")[1]
    with pytest.raises(Unauthorized):
        tokens.verify_connect_token(f"{header}.{other_payload}.{signature}")


def test_webhook_secret_rotates_and_revokes(ctx, company_factory):
    from models import Company

    made = company_factory()
    company = db.session.get(Company, made.id)
    assert webhook_secrets.verify_webhook_secret(company, made.webhook_secret)
    assert made.webhook_url.endswith(f"/marketplace/webhook/{made.id}?secret={made.webhook_secret}")
    webhook_secrets.rotate_webhook_secret(company)
    assert not webhook_secrets.verify_webhook_secret(company, made.webhook_secret)
    rotated = webhook_secrets.webhook_secret(company)
    webhook_secrets.revoke_webhook_secret(company)
    assert webhook_secrets.webhook_secret(company) is None and webhook_secrets.is_revoked(company)
    assert not webhook_secrets.verify_webhook_secret(company, None)
    assert not webhook_secrets.verify_webhook_secret(company, rotated)
    # A reinstall starts a new generation: no URL issued before the uninstall comes back to life.
    webhook_secrets.rotate_webhook_secret(company)
    assert webhook_secrets.webhook_secret(company) not in (made.webhook_secret, rotated, None)
