"""Phone numbers: one parser for what people type, the forms stored and sent, masking for logs."""

from __future__ import annotations

import pytest

from models import Company, db
from services.phones import BAD_PHONE, from_whatsapp_id, mask_phone, normalise_phone, parse_phone, whatsapp_digits
from services.platform.errors import InvalidInput


@pytest.mark.parametrize(
    "typed",
    ["+79001234567", "79001234567", "89001234567", "8 900 123-45-67", "+7 (900) 123-45-67", "9001234567",
     " +7.900.123.45.67 "],
)
def test_russian_input_in_every_usual_spelling_is_one_number(typed):
    assert parse_phone(typed) == "+79001234567"


def test_international_numbers_keep_their_country():
    assert parse_phone("+44 20 7946 0958") == "+442079460958"
    assert parse_phone("+1 650 253 0000") == "+16502530000"


@pytest.mark.parametrize(
    "typed",
    ["", "12345", "+7900123456789012", "+7900abc4567", "+70000000000", "+79001234567\x00", "+7900\n1234567",
     "７９００１２３４５６７", "+7 900 123 45 67 ext 5", 79001234567, None, "1" * 40],
)
def test_anything_but_a_valid_number_is_refused(typed):
    with pytest.raises(InvalidInput) as raised:
        parse_phone(typed)
    assert raised.value.message == BAD_PHONE
    assert normalise_phone(typed) is None


def test_whatsapp_forms():
    assert whatsapp_digits("+79001234567") == "79001234567"
    assert from_whatsapp_id("79001234567@c.us") == "+79001234567"
    assert from_whatsapp_id("79001234567:12@s.whatsapp.net") == "+79001234567"
    assert from_whatsapp_id("79001234567") == "+79001234567"
    assert from_whatsapp_id("123456789012345@lid") is None
    assert from_whatsapp_id("120363025@g.us") is None
    assert from_whatsapp_id(None) is None


def test_masking_keeps_country_and_last_digits():
    assert mask_phone("+79001234567") == "+7900*****67"
    assert mask_phone("+7 (900) 123-45-67") == "+7900*****67"
    assert mask_phone("123") == "***"


def test_registration_and_pairing_store_the_same_number(client, ctx):
    """'8 900 …' used to be stored as +8900… at registration and sent as 7900… for pairing."""
    response = client.post("/marketplace/register", json={"salon_id": 962399, "phone": "8 900 123-45-67"},
                           headers={"X-API-Key": ctx.config["SETTINGS"].admin_api_key})
    assert response.status_code == 201, response.get_json()
    assert db.session.get(Company, response.get_json()["company_id"]).phone == "+79001234567"
    assert whatsapp_digits(parse_phone("8 900 123-45-67")) == "79001234567"
