"""Gateways' ``message`` and ``message.ack`` events become plain facts, announced once they are plainly ours."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from integrations.whatsapp.base import message_key
from integrations.whatsapp.waha import message_id
from services.whatsapp import events


@pytest.mark.parametrize(("given", "key"), [
    ("true_79001234567@c.us_3EB0C767D26A1D8A3B", "3EB0C767D26A1D8A3B"),          # WAHA's serialised id
    ("false_79001234567@c.us_3A9F_79001234567@c.us", "3A9F"),                    # with a participant
    ({"_serialized": "true_79001234567@c.us_ABC", "id": "ABC"}, "ABC"),          # WEBJS's object
    ("3EB0C767D26A1D8A3B", "3EB0C767D26A1D8A3B"),                                # a bare key (NOWEB, Evolution)
    ("", None), (None, None), (42, None), ("x" * 300, None),
])
def test_message_keys_are_read_from_every_form(given, key):
    assert message_key(given) == key


def test_a_sent_message_and_its_receipts_name_the_same_key_on_every_waha_engine():
    webjs, noweb = {"id": {"_serialized": "true_7900@c.us_AAA", "id": "AAA"}}, \
        {"key": {"remoteJid": "7900@s.whatsapp.net", "fromMe": True, "id": "BBB"}}
    assert message_key(message_id(webjs)) == "AAA" == message_key("true_7900@c.us_AAA")
    assert message_key(message_id(noweb)) == "BBB" == message_key("true_7900@c.us_BBB")


@pytest.fixture
def heard(ctx):
    """What the signals announce (in an app context: messaging, when connected, also listens)."""
    messages, receipts = [], []
    events.message_received.connect(messages.append, weak=False)
    events.receipt_received.connect(receipts.append, weak=False)
    yield messages, receipts
    events.message_received.disconnect(messages.append)
    events.receipt_received.disconnect(receipts.append)


def test_a_clients_text_is_announced_with_its_phone_key_and_time(heard):
    messages, _ = heard
    payload = {"id": "false_79001234567@c.us_3A1", "timestamp": 1789000000, "from": "79001234567@c.us",
               "fromMe": False, "body": "1"}
    assert events.handle_message(7, payload) == "message"
    assert messages == [events.IncomingMessage(7, "3A1", "+79001234567", "1",
                                               datetime.fromtimestamp(1789000000, UTC))]


@pytest.mark.parametrize("payload", [
    {"id": "true_79001234567@c.us_1", "from": "79001234567@c.us", "fromMe": True, "body": "ours"},
    {"id": "false_1203@g.us_2", "from": "120363@g.us", "fromMe": False, "body": "a group"},
    {"id": "false_1@lid_3", "from": "123456789@lid", "fromMe": False, "body": "a hidden number"},
    {"id": "false_79001234567@c.us_4", "from": "79001234567@c.us", "fromMe": False, "body": "  "},
    {"id": "false_79001234567@c.us_5", "from": "79001234567@c.us", "body": "fromMe missing"},
    {"from": "79001234567@c.us", "fromMe": False, "body": "no id"},
])
def test_what_is_not_a_clients_text_is_not_announced(heard, payload):
    messages, _ = heard
    assert events.handle_message(7, payload).startswith("ignored")
    assert messages == []


@pytest.mark.parametrize(("ack", "status"), [(1, "sent"), (2, "delivered"), (3, "read"), (4, "read"),
                                             (-1, "failed")])
def test_acks_become_receipts(heard, ack, status):
    _, receipts = heard
    events.handle_ack(7, {"id": "true_79001234567@c.us_3EB0", "fromMe": True, "ack": ack})
    assert receipts == [events.Receipt(7, "3EB0", status)]


@pytest.mark.parametrize("payload", [{"id": "true_7@c.us_1", "ack": 0}, {"id": "true_7@c.us_1", "ack": True},
                                     {"id": "true_7@c.us_1", "ack": "3"}, {"ack": 3},
                                     {"id": "false_7@c.us_1", "fromMe": False, "ack": 3}])
def test_pending_odd_or_foreign_acks_are_ignored(heard, payload):
    _, receipts = heard
    assert events.handle_ack(7, payload) == "ignored"
    assert receipts == []
