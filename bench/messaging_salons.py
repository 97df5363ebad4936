"""bench.messaging's salons and bookings, and the planning measurement: the real planner against a bulk INSERT."""

from __future__ import annotations

import random
import time
from datetime import UTC, datetime, timedelta
from typing import Any, cast
from zoneinfo import ZoneInfo

from sqlalchemy import MetaData, Table, insert, select, text

ZONES = ("Europe/Moscow", "Asia/Yekaterinburg", "Europe/Kaliningrad", "Asia/Novosibirsk", "Europe/Samara")
SERVICES = (["Стрижка"], ["Маникюр", "Покрытие гель-лак"], ["Окрашивание"], ["Массаж лица"])


# --- the salons -------------------------------------------------------------------------------------


def link_salons(count: int, first_salon_id: int) -> list[int]:
    """``count`` salons as activation leaves them: active, WhatsApp connected, the session WORKING."""
    from models import Company, IntegrationStatus, WhatsAppSession, db
    from services.whatsapp.gateway import session_name
    from services.whatsapp.sessions import SessionStatus

    now = datetime.now(UTC)
    rows = [{"salon_id": first_salon_id + n, "title": f"Салон {first_salon_id + n}", "address": "Москва, Тверская, 1",
             "timezone": ZONES[n % len(ZONES)], "integration_status": IntegrationStatus.ACTIVE,
             "whatsapp_phone": f"+7999{first_salon_id + n:07d}", "whatsapp_connected_at": now, "activated_at": now}
            for n in range(count)]
    ids = list(db.session.scalars(insert(Company).returning(Company.id), rows))
    db.session.execute(insert(WhatsAppSession), [
        {"company_id": company_id, "gateway_session": session_name(company_id), "status": SessionStatus.WORKING,
         "me_phone": row["whatsapp_phone"]} for company_id, row in zip(ids, rows, strict=True)])
    db.session.commit()
    return ids


def book(company_ids: list[int], bookings: int, first_record: int, seed: int) -> None:
    """``bookings`` future bookings spread over the salons (2 to 32 days ahead, 10:00–19:00 local), each with
    its own client: far enough ahead that none of their messages is due now."""
    from models import Booking, Client, Company, db

    rng = random.Random(seed)
    zones: dict[int, str] = {row.id: row.timezone for row in db.session.execute(
        select(Company.id, Company.timezone).where(Company.id.in_(company_ids)))}
    today = datetime.now(UTC).date()
    chunk = 5000
    for start in range(0, bookings, chunk):
        batch = range(start, min(bookings, start + chunk))
        clients = [{"company_id": company_ids[n % len(company_ids)], "client_id": first_record + n,
                    "name": rng.choice(("Анна", "Мария", "Ольга", "Елена")), "phone": f"+7900{first_record + n:07d}"}
                   for n in batch]
        client_ids = list(db.session.scalars(insert(Client).returning(Client.id), clients))
        rows = []
        for n, client_id in zip(batch, client_ids, strict=True):
            company_id = company_ids[n % len(company_ids)]
            zone = ZoneInfo(zones[company_id])
            day = today + timedelta(days=rng.randint(2, 32))
            starts = datetime(day.year, day.month, day.day, rng.randint(10, 19), rng.choice((0, 30)), tzinfo=zone)
            rows.append({"company_id": company_id, "record_id": first_record + n, "status": "active",
                         "starts_at": starts, "ends_at": starts + timedelta(hours=1), "staff_id": n % 7 + 1,
                         "staff_name": "Ольга", "services": rng.choice(SERVICES), "attendance": 0,
                         "client_id": client_id})
        db.session.execute(insert(Booking), rows)
        db.session.commit()


# --- 1. planning ------------------------------------------------------------------------------------


def measure_planning(company_ids: list[int]) -> dict[str, Any]:
    """Every salon re-planned through the real planner, then the same rows bulk-inserted into a copy."""
    from models import Message, db
    from services.messaging import booking_changes

    [(bookings,)] = db.session.execute(text("SELECT count(*) FROM bookings WHERE company_id = ANY(:ids)"),
                                       {"ids": company_ids}).all()
    started = time.perf_counter()
    planned = 0
    for company_id in company_ids:
        planned += booking_changes.replan_company(company_id)
        db.session.commit()
    planning_s = time.perf_counter() - started

    # The baseline: the same rows, as the planner stored them, into a table of the same shape.
    columns = [c for c in Message.__table__.columns if c.name != "id"]
    rows = [dict(row._mapping) for row in db.session.execute(
        select(*columns).where(Message.company_id.in_(company_ids)))]
    db.session.execute(text("CREATE TABLE bench_messages_copy (LIKE messages INCLUDING ALL)"))
    db.session.commit()
    copy = cast(Table, Message.__table__).to_metadata(MetaData(), name="bench_messages_copy")
    started = time.perf_counter()
    for start in range(0, len(rows), 1000):
        db.session.execute(insert(copy), rows[start:start + 1000])
        db.session.commit()
    insert_s = time.perf_counter() - started
    db.session.execute(text("DROP TABLE bench_messages_copy"))
    db.session.execute(text("ANALYZE"))
    db.session.commit()
    return {"salons": len(company_ids), "bookings": bookings, "messages": planned, "planning_s": planning_s,
            "bookings_per_s": bookings / planning_s, "messages_per_s": planned / planning_s,
            "baseline_rows": len(rows), "baseline_s": insert_s, "baseline_rows_per_s": len(rows) / insert_s,
            "ratio": (planned / planning_s) / (len(rows) / insert_s) if rows and planned else float("nan")}


def mirror_salons(sources: list[int], targets: list[int]) -> int:
    """Give each target salon the bookings, clients and planned messages of a source salon of the same time
    zone (target ``n`` mirrors source ``n % len(sources)``): what the planner would have stored for them,
    since it is a function of (booking, rules) for bookings this far ahead. The messages added."""
    from models import Message, db
    from services.messaging.outbox import idempotency_key
    from services.messaging.templates import Kind

    if not targets:
        return 0
    pairs = [(target, sources[n % len(sources)]) for n, target in enumerate(targets)]
    db.session.execute(text("CREATE TEMPORARY TABLE bench_mirror (company_id int, source_id int)"))
    db.session.execute(text("INSERT INTO bench_mirror VALUES (:t, :s)"), [{"t": t, "s": s} for t, s in pairs])
    db.session.execute(text(
        "INSERT INTO clients (company_id, client_id, name, phone, created_at, updated_at) "
        "SELECT m.company_id, c.client_id, c.name, c.phone, c.created_at, c.updated_at "
        "FROM clients c JOIN bench_mirror m ON m.source_id = c.company_id"))
    db.session.execute(text(
        "INSERT INTO bookings (company_id, record_id, status, starts_at, ends_at, staff_id, staff_name, services, "
        "attendance, client_id, created_at, updated_at) "
        "SELECT m.company_id, b.record_id, b.status, b.starts_at, b.ends_at, b.staff_id, b.staff_name, b.services, "
        "b.attendance, tc.id, b.created_at, b.updated_at FROM bookings b "
        "JOIN bench_mirror m ON m.source_id = b.company_id JOIN clients sc ON sc.id = b.client_id "
        "JOIN clients tc ON tc.company_id = m.company_id AND tc.client_id = sc.client_id"))
    found = db.session.execute(text(
        "SELECT m.company_id, tb.id AS booking_id, msg.phone, msg.kind, msg.slot, msg.state, msg.priority, msg.due_at, "
        "msg.expires_at, msg.created_at FROM messages msg JOIN bench_mirror m ON m.source_id = msg.company_id "
        "JOIN bookings sb ON sb.id = msg.booking_id "
        "JOIN bookings tb ON tb.company_id = m.company_id AND tb.record_id = sb.record_id")).all()
    rows = [{"company_id": r.company_id, "booking_id": r.booking_id, "phone": r.phone, "kind": r.kind, "slot": r.slot,
             "idempotency_key": idempotency_key(r.company_id, r.booking_id, Kind(r.kind), r.slot), "state": r.state,
             "priority": r.priority, "due_at": r.due_at, "expires_at": r.expires_at, "attempts": 0,
             "created_at": r.created_at, "updated_at": r.created_at} for r in found]
    for start in range(0, len(rows), 5000):
        db.session.execute(insert(Message), rows[start:start + 5000])
    db.session.execute(text("DROP TABLE bench_mirror"))
    db.session.execute(text("ANALYZE"))
    db.session.commit()
    return len(rows)
