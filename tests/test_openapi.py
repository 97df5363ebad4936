"""The OpenAPI document: valid OpenAPI 3, served as JSON, and in step with the app's routes."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

from openapi_spec_validator import validate

from services.platform.ids import MAX_BIG_ID, MAX_ID
from services.webhooks.admin import MAX_LIST
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


# Names of ids in parameters and request bodies: ``companyId``, ``company_id``, ``ids``, ``salon_ids[]``,
# and the connect page's ``company`` and ``salon``.
ID_NAME = re.compile(r"(Id|_id|^ids|_ids\[\]|^company|^salon)$")
ID_SCHEMA, YCLIENTS_ID_SCHEMA = {"$ref": "#/components/schemas/Id"}, {"$ref": "#/components/schemas/YClientsId"}


def _resolve(document: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in node:
        *_, section, name = node["$ref"].split("/")
        node = document["components"][section][name]
    return node


def _inputs(document: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """(name, schema) of every parameter and every request-body property, as written."""
    for item in document["paths"].values():
        for operation in item.values():
            for parameter in operation.get("parameters", []):
                parameter = _resolve(document, parameter)
                yield parameter["name"], parameter["schema"]
            for media in operation.get("requestBody", {}).get("content", {}).values():
                yield from _resolve(document, media["schema"]).get("properties", {}).items()


def test_ids_carry_the_id_parsers_bounds():
    document = openapi_document()
    schemas = document["components"]["schemas"]
    assert (schemas["Id"]["minimum"], schemas["Id"]["maximum"]) == (1, MAX_ID)
    assert (schemas["YClientsId"]["minimum"], schemas["YClientsId"]["maximum"]) == (1, MAX_BIG_ID)
    ids = [(name, schema) for name, schema in _inputs(document) if ID_NAME.search(name)]
    assert len(ids) >= 10
    for name, schema in ids:
        schema = schema.get("items", schema)
        # YClients' ids (salons) are BIGINT columns; ours are INTEGER keys.
        assert schema == (YCLIENTS_ID_SCHEMA if name.startswith("salon") else ID_SCHEMA), name


def test_the_inbox_tools_document_the_list_bound_they_enforce():
    admin = openapi_document()["paths"]["/marketplace/admin/webhooks"]
    limit = next(p for p in admin["get"]["parameters"] if p["name"] == "limit")
    assert limit["schema"]["maximum"] == MAX_LIST
    replay = openapi_document()["paths"]["/marketplace/admin/webhooks/replay"]["post"]
    assert replay["requestBody"]["content"]["application/json"]["schema"]["properties"]["ids"]["maxItems"] == MAX_LIST
