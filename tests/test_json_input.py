"""The one JSON reader: every body and frame is bounded in size and depth, refused in the one error shape."""

from __future__ import annotations

import json

import pytest

from services.platform import json_input
from services.platform.json_input import BAD_JSON, JsonRejected

DEEP_ARRAY = b"[" * 60_000  # within the size limit: only its depth is wrong
DEEP_OBJECT = b'{"a":' * 40 + b"1" + b"}" * 40


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (DEEP_ARRAY, "malformed JSON"),
        (DEEP_OBJECT, "nested deeper than 32 levels"),
        (b"", "empty document"),
        (b"{", "malformed JSON"),
        (b'{"x": NaN}', "NaN is not a number"),
        (b'{"x": 1e999}', "number out of range"),
        (b'{"x": "a\\u0000b"}', "NUL character"),
        (b'{"x": "\\ud800"}', "invalid Unicode"),
        (b'"' + b"x" * (json_input.MAX_BYTES + 1) + b'"', "larger than"),
    ],
)
def test_the_reader_refuses_with_a_reason(raw, reason):
    with pytest.raises(JsonRejected) as refused:
        json_input.load(raw)
    assert reason in refused.value.reason and refused.value.message == BAD_JSON


def test_the_reader_accepts_ordinary_documents_at_the_depth_limit():
    nested = b'{"a":' * 31 + b"[1]" + b"}" * 31
    assert json_input.load(nested)
    assert json_input.load_object('{"name": "Анна", "note": "line\\nbreak"}') == {"name": "Анна", "note": "line\nbreak"}
    with pytest.raises(JsonRejected):
        json_input.load_object(b"[1]")


@pytest.mark.parametrize(
    "path",
    ["/marketplace/register", "/marketplace/callback", "/marketplace/pairing-code/{token}",
     "/marketplace/simulator/scan/{token}", "/marketplace/admin/webhooks/replay"],
)
@pytest.mark.parametrize("body", [DEEP_ARRAY, DEEP_OBJECT, b'{"a": "\\u0000"}', b"{not json"])
def test_every_json_endpoint_answers_400_in_the_error_shape(client, company_factory, admin_headers, path, body):
    made = company_factory()
    response = client.post(path.format(token=made.token), data=body, content_type="application/json",
                           headers=admin_headers)
    assert response.status_code == 400, response.data[:200]
    assert response.get_json() == {"success": False, "error": BAD_JSON}


def test_a_body_past_the_limit_is_413_in_the_error_shape(client, admin_headers):
    body = json.dumps({"salon_id": 1, "email": "x" * json_input.MAX_BYTES}).encode()
    response = client.post("/marketplace/register", data=body, content_type="application/json", headers=admin_headers)
    assert response.status_code == 413
    assert response.get_json()["success"] is False


def test_the_callback_refuses_a_deep_body_before_looking_at_credentials(client):
    response = client.post("/marketplace/callback", data=DEEP_ARRAY, content_type="application/json")
    assert response.status_code == 400
