"""A WhatsApp gateway that behaves like WhatsApp's linked-device login, for development and tests.

State lives in Redis and every timer is a named task scheduled with a countdown, so any worker
process can advance any session: QR rotation (first code ``first_ttl``, later ones ``ttl``,
``count`` per attempt, then FAILED ``qr_timeout``), 8-character pairing codes, the 515 restart
after a scan, and the disconnect codes of a real session (``disconnect``). Events are WAHA-shaped.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, cast

from redis import Redis

from integrations.whatsapp.base import (
    Deliver,
    GatewayError,
    GatewayEvent,
    QrCode,
    Schedule,
    SessionInfo,
    WhatsAppGateway,
)

ROTATE_TASK = "whatsapp.simulator_rotate_qr"
ACK_TASK = "whatsapp.simulator_ack"
# WAHA's ack levels: -1 ERROR, 0 PENDING, 1 SERVER, 2 DEVICE, 3 READ, 4 PLAYED.
ACK_NAMES = {-1: "ERROR", 0: "PENDING", 1: "SERVER", 2: "DEVICE", 3: "READ", 4: "PLAYED"}
# The client's phone confirms delivery this long after a send (read only when simulated). The
# confirmations due are delivered together by one timer (``ACK_TASK``), not a timer per message.
DEVICE_ACK_AFTER = 1.0
# WhatsApp's pairing-code alphabet (no 0, O, I, U).
PAIRING_ALPHABET = "123456789ABCDEFGHJKLMNPQRSTVWXYZ"
RESTART_REQUIRED = 515
LOGGED_OUT_CODES = (401, 403, 406)
TERMINAL_CODES = (401, 402, 403, 406)
REPLACED = 440
STATE_TTL = 30 * 24 * 3600


@dataclass(frozen=True)
class SimulatorTimings:
    """QR lifetimes (seconds), how many codes one login attempt issues, how long a send takes to answer."""

    first_ttl: float
    ttl: float
    count: int
    send_seconds: float = 0.0


def _b64(n: int) -> str:
    return base64.b64encode(os.urandom(n)).decode()


def whatsapp_qr_string(keys: list[str]) -> str:
    """A QR payload in WhatsApp's format: ``2@<ref>,<noise key>,<identity key>,<adv secret>``."""
    return "2@" + ",".join([_b64(48), *keys])


class SimulatorGateway(WhatsAppGateway):
    """The simulated gateway; ``schedule`` runs its timers as tasks, ``deliver`` hands events on."""

    def __init__(self, redis: Redis, prefix: str, timings: SimulatorTimings, schedule: Schedule,
                 deliver: Deliver) -> None:
        self._redis = redis
        self._prefix = prefix
        self.timings = timings
        self._schedule = schedule
        self._deliver = deliver

    # --- state -----------------------------------------------------------------------------------

    def _key(self, session: str) -> str:
        return f"{self._prefix}:{session}"

    def _load(self, session: str) -> dict[str, Any]:
        raw = cast("bytes | None", self._redis.get(self._key(session)))
        return json.loads(raw) if raw else {"status": "STOPPED", "attempt": None}

    @contextmanager
    def _locked(self, session: str) -> Iterator[tuple[dict[str, Any], list[GatewayEvent]]]:
        """Read-modify-write one session under a Redis lock; events are delivered after the write."""
        events: list[GatewayEvent] = []
        with self._redis.lock(self._key(session) + ":lock", timeout=10, blocking_timeout=10):
            state = self._load(session)
            yield state, events
            self._redis.set(self._key(session), json.dumps(state), ex=STATE_TTL)
        for event in events:
            self._deliver(event)

    def _event(self, session: str, state: dict[str, Any], **payload: Any) -> GatewayEvent:
        phone = state.get("linked_phone") if state["status"] == "WORKING" else None
        # Strictly increasing, so the receiver can tell the order of events delivered in parallel.
        stamp = max(int(time.time() * 1000), int(state.get("last_timestamp") or 0) + 1)
        state["last_timestamp"] = stamp
        return {
            "id": "evt_" + uuid.uuid4().hex,
            "timestamp": stamp,
            "event": "session.status",
            "session": session,
            "me": {"id": f"{phone}@c.us", "pushName": "Салон"} if phone else None,
            "payload": {"status": state["status"], **payload},
        }

    def _new_attempt(self, session: str, state: dict[str, Any], events: list[GatewayEvent]) -> None:
        # A random attempt id: a timer left over from an earlier attempt (or an earlier life of this
        # session name) can never match.
        state.update(attempt=uuid.uuid4().hex, keys=[_b64(32), _b64(32), _b64(32)],
                     status="STARTING", pairing_code=None, pairing_phone=None)
        events.append(self._event(session, state))
        self._issue_qr(session, state, 0, events)

    def _issue_qr(self, session: str, state: dict[str, Any], index: int, events: list[GatewayEvent]) -> None:
        ttl = self.timings.first_ttl if index == 0 else self.timings.ttl
        state.update(status="SCAN_QR_CODE", qr_index=index, qr=whatsapp_qr_string(state["keys"]),
                     qr_expires_at=time.time() + ttl)
        events.append(self._event(session, state))
        self._schedule(ROTATE_TASK, [session, state["attempt"], index + 1], ttl)

    # --- the gateway -----------------------------------------------------------------------------

    def start(self, session: str, webhook_url: str | None = None, hmac_key: str | None = None) -> None:
        with self._locked(session) as (state, events):
            if state["status"] == "WORKING":
                events.append(self._event(session, state))
            elif state.get("linked_phone"):
                state["status"] = "WORKING"
                events.append(self._event(session, state))
            else:
                self._new_attempt(session, state, events)

    def restart(self, session: str, webhook_url: str | None = None, hmac_key: str | None = None) -> None:
        self.start(session)

    def rotate(self, session: str, attempt: str, index: int) -> bool:
        """The QR timer: issue code ``index`` of ``attempt``, or end the attempt; False when stale."""
        with self._locked(session) as (state, events):
            current = state.get("attempt") == attempt and state.get("qr_index") == index - 1
            if state["status"] != "SCAN_QR_CODE" or not current:
                return False
            if index >= self.timings.count:
                state.update(status="FAILED", qr=None, qr_expires_at=None, pairing_code=None)
                events.append(self._event(session, state, reason="qr_timeout"))
            else:
                self._issue_qr(session, state, index, events)
            return True

    def qr(self, session: str) -> QrCode | None:
        state = self._load(session)
        if state["status"] != "SCAN_QR_CODE" or not state.get("qr"):
            return None
        return QrCode(state["qr"], max(0.0, float(state["qr_expires_at"]) - time.time()))

    def request_pairing_code(self, session: str, phone_digits: str) -> str:
        with self._locked(session) as (state, _events):
            if state["status"] != "SCAN_QR_CODE":
                raise GatewayError("session is not waiting for a login", 422)
            code = "".join(secrets.choice(PAIRING_ALPHABET) for _ in range(8))
            state.update(pairing_code=code, pairing_phone=phone_digits)
            return code

    def attempt_ends_in(self, session: str) -> float | None:
        """Seconds until the current login attempt runs out of QR codes (a pairing code lives as long)."""
        state = self._load(session)
        if state["status"] != "SCAN_QR_CODE":
            return None
        later = self.timings.count - 1 - int(state.get("qr_index", 0))
        return max(0.0, float(state["qr_expires_at"]) - time.time()) + later * self.timings.ttl

    def scan(self, session: str, phone_digits: str | None = None) -> str:
        """The phone scanned the QR (or typed the pairing code): WhatsApp then asks for a 515 restart."""
        with self._locked(session) as (state, events):
            if state["status"] != "SCAN_QR_CODE":
                raise GatewayError("session is not waiting for a scan", 409)
            phone = phone_digits or state.get("pairing_phone") or "79001234567"
            state.update(status="STARTING", linked_phone=phone, qr=None, qr_expires_at=None, pairing_code=None)
            events.append(self._event(session, state, code=RESTART_REQUIRED))
            return str(phone)

    def disconnect(self, session: str, code: int) -> None:
        """Drop a session the way WhatsApp does with ``code`` (401 logged out, 440 replaced, 428 …)."""
        with self._locked(session) as (state, events):
            if code in LOGGED_OUT_CODES:
                state["linked_phone"] = None
            if code in TERMINAL_CODES:
                state["status"] = "FAILED"
            elif code == REPLACED:
                state["status"] = "STOPPED"
            else:
                state["status"] = "STARTING"
            state.update(qr=None, qr_expires_at=None)
            events.append(self._event(session, state, code=code))

    def info(self, session: str) -> SessionInfo:
        state = self._load(session)
        phone = state.get("linked_phone") if state["status"] == "WORKING" else None
        return SessionInfo(state["status"], phone)

    def stop(self, session: str) -> None:
        with self._locked(session) as (state, events):
            state.update(status="STOPPED", qr=None, qr_expires_at=None, pairing_code=None)
            events.append(self._event(session, state))

    def logout(self, session: str) -> None:
        with self._locked(session) as (state, events):
            state.update(status="STOPPED", linked_phone=None, qr=None, qr_expires_at=None, pairing_code=None)
            events.append(self._event(session, state))

    def _working(self, session: str) -> dict[str, Any]:
        state = self._load(session)
        if state["status"] != "WORKING":
            raise GatewayError("session is not connected", 422)
        return state

    def _log(self, session: str, entry: dict[str, Any]) -> None:
        key = self._key(session) + ":outbox"
        self._redis.rpush(key, json.dumps({**entry, "at": time.time()}))
        self._redis.expire(key, STATE_TTL)

    def _message_event(self, session: str, state: dict[str, Any], kind: str, payload: dict[str, Any]) -> GatewayEvent:
        return {"id": "evt_" + uuid.uuid4().hex, "timestamp": int(time.time() * 1000), "event": kind,
                "session": session, "me": {"id": f"{state.get('linked_phone')}@c.us", "pushName": "Салон"},
                "payload": payload}

    def send_text(self, session: str, phone_digits: str, text: str) -> str:
        self._working(session)
        # WAHA's serialized form of an id of ours: fromMe_chatId_id.
        message_id = f"true_{phone_digits}@c.us_{uuid.uuid4().hex[:20].upper()}"
        self._log(session, {"type": "text", "id": message_id, "chatId": f"{phone_digits}@c.us", "text": text})
        if self.timings.send_seconds:
            time.sleep(self.timings.send_seconds)  # sent; the answer is slow (a caller may time out or die)
        self._redis.zadd(self._prefix + ":acks", {json.dumps([session, message_id, 2]): time.time() + DEVICE_ACK_AFTER})
        self._ack_timer(DEVICE_ACK_AFTER)
        return message_id

    def _ack_timer(self, seconds: float) -> None:
        if self._redis.set(self._prefix + ":acks_timer", 1, nx=True, ex=int(seconds) + 60):
            self._schedule(ACK_TASK, [], seconds)

    def acks_due(self) -> int:
        """Timer: the phones' confirmations that are due, delivered (each once, whichever timer takes it); the
        timer set again for those still to come. How many were delivered."""
        key = self._prefix + ":acks"
        self._redis.delete(self._prefix + ":acks_timer")  # sends from now on set the timer again
        delivered = 0
        for item in cast("list[bytes]", self._redis.zrangebyscore(key, "-inf", time.time())):
            if self._redis.zrem(key, item):
                session, message_id, ack = json.loads(item)
                self.ack(session, message_id, ack)
                delivered += 1
        nearest = cast("list[tuple[bytes, float]]", self._redis.zrange(key, 0, 0, withscores=True))
        if nearest:
            self._ack_timer(max(0.0, nearest[0][1] - time.time()))
        return delivered

    def ack(self, session: str, message_id: str, ack: int) -> None:
        """The client's phone reports our message ``message_id`` delivered (2), read (3) or failed (-1)."""
        state = self._load(session)
        chat = message_id.split("_")[1] if message_id.count("_") >= 2 else None
        self._deliver(self._message_event(session, state, "message.ack", {
            "id": message_id, "from": f"{state.get('linked_phone')}@c.us", "to": chat, "fromMe": True, "ack": ack,
            "ackName": ACK_NAMES.get(ack, "ERROR")}))

    def typing(self, session: str, phone_digits: str, seconds: float) -> None:
        # Shown until the next message, as WhatsApp does: the caller sends when ``seconds`` have passed.
        self._working(session)
        self._log(session, {"type": "typing", "chatId": f"{phone_digits}@c.us", "seconds": seconds})

    def number_exists(self, session: str, phone_digits: str) -> bool:
        self._working(session)
        return not self._redis.sismember(self._prefix + ":not_on_whatsapp", phone_digits)

    def reply(self, session: str, phone_digits: str, text: str) -> str:
        """A client writes ``text`` to the salon's number; the incoming message's id (WAHA's serialized form)."""
        state = self._working(session)
        message_id = f"false_{phone_digits}@c.us_3A{uuid.uuid4().hex[:18].upper()}"
        self._deliver(self._message_event(session, state, "message", {
            "id": message_id, "timestamp": int(time.time()), "from": f"{phone_digits}@c.us", "fromMe": False,
            "to": f"{state.get('linked_phone')}@c.us", "body": text, "hasMedia": False}))
        return message_id

    def sent(self, session: str) -> list[dict[str, Any]]:
        """What the session sent (texts and typing), oldest first, each with its time ``at``."""
        raw = cast("list[bytes]", self._redis.lrange(self._key(session) + ":outbox", 0, -1))
        return [json.loads(item) for item in raw]

    def set_number_exists(self, phone_digits: str, exists: bool) -> None:
        """Simulator control: whether ``phone_digits`` has a WhatsApp account (every number has, by default)."""
        key = self._prefix + ":not_on_whatsapp"
        if exists:
            self._redis.srem(key, phone_digits)
        else:
            self._redis.sadd(key, phone_digits)
