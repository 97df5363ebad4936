"""Ids from paths, query strings and bodies: one parser, bounded by the columns that hold them."""

from __future__ import annotations

import pytest

from services.platform.ids import MAX_BIG_ID, MAX_ID, as_id


@pytest.mark.parametrize(
    ("value", "expected"),
    [(1, 1), ("42", 42), (" 42 ", 42), (MAX_ID, MAX_ID), (MAX_ID + 1, None), (0, None), (-1, None), (True, None),
     ("", None), ("4 2", None), ("４２", None), ("1e3", None), (1.0, None), ("9" * 400, None), (None, None)],
)
def test_as_id(value, expected):
    assert as_id(value) == expected


def test_big_ids_for_yclients_columns():
    assert as_id(MAX_BIG_ID, MAX_BIG_ID) == MAX_BIG_ID
    assert as_id(MAX_BIG_ID + 1, MAX_BIG_ID) is None
    assert as_id(str(2**70), MAX_BIG_ID) is None


@pytest.mark.parametrize("company_id", [2**31, 2**63, 2**64 + 5, 10**30])
def test_ids_past_the_columns_are_404_or_400_never_500(client, company_factory, admin_headers, company_id):
    made = company_factory()
    assert client.get(f"/marketplace/status/{company_id}", headers={"X-API-Key": made.api_key}).status_code == 404
    assert client.get(f"/marketplace/callback/{company_id}", headers=admin_headers).status_code == 404
    listed = client.get(f"/marketplace/admin/webhooks?company_id={company_id}", headers=admin_headers)
    assert listed.status_code == 400 and listed.get_json()["success"] is False
    before = client.get(f"/marketplace/admin/webhooks?before_id={company_id}", headers=admin_headers)
    assert before.status_code == 400
    replay = client.post("/marketplace/admin/webhooks/replay", json={"ids": [company_id]}, headers=admin_headers)
    assert replay.status_code == 400
    callback = client.post("/marketplace/callback", json={"company_id": company_id}, headers=admin_headers)
    assert callback.status_code == 400
    salon = client.post("/marketplace/callback", json={"salon_id": 2**64}, headers=admin_headers)
    assert salon.status_code == 400
