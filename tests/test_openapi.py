"""The OpenAPI document: valid OpenAPI 3, served as JSON, and in step with the app's routes."""

from __future__ import annotations

import re

from openapi_spec_validator import validate

from web.marketplace.openapi import openapi_document

IGNORED_METHODS = {"HEAD", "OPTIONS"}


def _normalise(path: str) -> str:
    return re.sub(r"<(?:[^:>]+:)?[^>]+>|\{[^}]+\}", "{}", path)


def _app_operations(app) -> set[tuple[str, str]]:
    return {
        (_normalise(rule.rule), method.lower())
        for rule in app.url_map.iter_rules()
        if rule.endpoint != "static"
        for method in (rule.methods or set()) - IGNORED_METHODS
    }


def _documented_operations() -> set[tuple[str, str]]:
    return {
        (_normalise(path), method)
        for path, item in openapi_document()["paths"].items()
        for method in item
        if method in {"get", "post", "put", "patch", "delete"}
    }


def test_the_document_is_valid_openapi_3():
    validate(openapi_document())


def test_every_route_is_documented_and_every_documented_route_exists(app):
    app_ops, documented = _app_operations(app), _documented_operations()
    assert app_ops - documented == set(), "routes missing from docs/openapi.yaml"
    assert documented - app_ops == set(), "documented operations the app does not have"


def test_it_is_served_as_json(client):
    response = client.get("/marketplace/openapi.json")
    assert response.status_code == 200 and response.is_json
    assert response.json == openapi_document()
    assert response.json["openapi"].startswith("3.")


def test_reference_fields_are_described():
    schemas = openapi_document()["components"]["schemas"]
    assert schemas["Status"]["required"] == [
        "success", "company_id", "whatsapp_connected", "whatsapp_phone", "integration_status", "connected_at"
    ]
    assert set(schemas["Stats"]["properties"]["by_status"]["required"]) == {"active", "pending", "inactive"}
    assert set(schemas["Registration"]["required"]) >= {"company_id", "salon_id", "api_key", "connect_url"}


def test_the_live_protocol_is_described_as_the_code_has_it(app):
    from web import live_protocol, socketio_server

    document = openapi_document()
    events = document["x-live-events"]
    assert set(events["client-to-server"]) == {"authenticate", *live_protocol.ACTIONS}
    assert {"authenticated", "status", "qr", "pairingCode", "whatsapp.connected", "error"} <= set(
        events["server-to-client"])
    assert document["x-socketio"]["namespace"] == socketio_server.NAMESPACE
    assert document["x-websocket"]["path"] in {rule.rule for rule in app.url_map.iter_rules()}
