"""A salon's messaging settings: reading them (with defaults), turning them into planner rules, changing them.

Every field of ``PUT …/messaging`` is validated before anything is stored; all problems are
reported at once in ``errors`` (field → Russian message) beside the one error shape.
"""

from __future__ import annotations

import re
from datetime import time
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from models import Company, MessagingSettings, db
from services.messaging.planner import DEFAULT_REMINDERS, ReminderRule, Rules
from services.messaging.templates import DEFAULTS, EDITABLE, PLACEHOLDERS, Kind, TemplateError, validate
from services.phones import parse_phone
from services.platform.errors import InvalidInput
from services.platform.jobs import Job, enqueue

INVALID = "Некорректные настройки сообщений"
MAX_REMINDERS = 4
_CLOCK = re.compile(r"^([01]\d|2[0-3]):[0-5]\d$")
REMINDER_KINDS = (Kind.REMINDER, Kind.CONFIRMATION_REQUEST)


def _clock(value: str | None) -> time | None:
    return None if value is None else time.fromisoformat(value)


def settings_row(company_id: int) -> MessagingSettings:
    """The company's settings row (a default one, not yet stored, when the salon never changed them)."""
    row = db.session.get(MessagingSettings, company_id)
    if row is not None:
        return row
    return MessagingSettings(company_id=company_id, disabled_kinds=[], reminders=None, reask_at="10:00",
                             quiet_start="21:00", quiet_end="09:00", templates={}, contact_phone=None,
                             cancel_writes_attendance=False)


def _reminder_rules(stored: list[dict[str, Any]] | None) -> tuple[ReminderRule, ...]:
    if stored is None:
        return DEFAULT_REMINDERS
    rules = []
    for item in stored:
        at = item.get("day_before_at")
        rules.append(ReminderRule(str(item["id"]), Kind(item["kind"]), item.get("hours_before"),
                                  time.fromisoformat(at) if at else None))
    return tuple(rules)


def rules_for(company: Company, row: MessagingSettings | None = None) -> Rules:
    """What the planner needs of a salon's settings."""
    row = row or settings_row(company.id)
    disabled = set(row.disabled_kinds or ())
    return Rules(
        timezone=company.timezone,
        enabled=frozenset(kind for kind in Kind if kind.value not in disabled),
        reminders=_reminder_rules(row.reminders),
        reask_at=_clock(row.reask_at),
        quiet_start=_clock(row.quiet_start),
        quiet_end=_clock(row.quiet_end),
    )


def _reminder_json(rule: ReminderRule) -> dict[str, Any]:
    body: dict[str, Any] = {"id": rule.id, "kind": rule.kind.value}
    if rule.day_before_at is not None:
        body["day_before_at"] = rule.day_before_at.strftime("%H:%M")
    else:
        body["hours_before"] = rule.hours_before
    return body


def serialise(company: Company, row: MessagingSettings | None = None) -> dict[str, Any]:
    """The settings as ``GET …/messaging`` shows them, defaults filled in."""
    row = row or settings_row(company.id)
    disabled = set(row.disabled_kinds or ())
    templates = row.templates or {}
    return {
        "company_id": company.id,
        "timezone": company.timezone,
        "enabled": {kind.value: kind.value not in disabled for kind in EDITABLE},
        "reminders": [_reminder_json(rule) for rule in _reminder_rules(row.reminders)],
        "reask_at": row.reask_at,
        "quiet_hours": {"start": row.quiet_start, "end": row.quiet_end},
        "contact_phone": row.contact_phone,
        "cancel_writes_attendance": row.cancel_writes_attendance,
        "templates": {
            kind.value: {"text": templates.get(kind.value, DEFAULTS[kind]), "default": DEFAULTS[kind],
                         "customised": kind.value in templates}
            for kind in EDITABLE
        },
        "placeholders": PLACEHOLDERS,
    }


class _Errors(dict[str, str]):
    def check(self, field: str, ok: bool, message: str) -> bool:
        if not ok:
            self.setdefault(field, message)
        return ok


def _clock_field(errors: _Errors, field: str, value: Any, nullable: bool = True) -> str | None:
    if value is None and nullable:
        return None
    errors.check(field, isinstance(value, str) and bool(_CLOCK.match(value)), "Время в формате ЧЧ:ММ, например 09:00")
    return value if isinstance(value, str) else None


def _reminders_field(errors: _Errors, value: Any) -> list[dict[str, Any]] | None:
    if not errors.check("reminders", isinstance(value, list) and len(value) <= MAX_REMINDERS,
                        f"Список напоминаний, не больше {MAX_REMINDERS}"):
        return None
    parsed: list[dict[str, Any]] = []
    for n, item in enumerate(value):
        field = f"reminders[{n}]"
        if not errors.check(field, isinstance(item, dict), "Напоминание задаётся объектом"):
            continue
        kind = item.get("kind", Kind.REMINDER.value)
        errors.check(field, kind in [k.value for k in REMINDER_KINDS],
                     "Вид напоминания: reminder или confirmation_request")
        hours, at = item.get("hours_before"), item.get("day_before_at")
        if at is not None:
            _clock_field(errors, field, at, nullable=False)
            rule = {"id": f"d{at}", "kind": kind, "day_before_at": at}
        else:
            ok = isinstance(hours, int | float) and not isinstance(hours, bool) and 1 <= hours <= 48
            errors.check(field, ok, "За сколько часов до визита: от 1 до 48, или day_before_at")
            rule = {"id": f"h{hours}", "kind": kind, "hours_before": hours}
        errors.check(field, rule["id"] not in {r["id"] for r in parsed}, "Такое напоминание уже есть")
        parsed.append(rule)
    return parsed


def _templates_field(errors: _Errors, value: Any, current: dict[str, str]) -> dict[str, str]:
    templates = dict(current)
    if not errors.check("templates", isinstance(value, dict), "Шаблоны задаются объектом вид → текст"):
        return templates
    editable = {kind.value for kind in EDITABLE}
    for name, text in value.items():
        field = f"templates.{name}"
        if not errors.check(field, name in editable, "Неизвестный вид сообщения"):
            continue
        if text in (None, ""):
            templates.pop(name, None)  # back to the default
            continue
        try:
            templates[name] = validate(text)
        except TemplateError as exc:
            errors.check(field, False, str(exc))
    return templates


def update(company: Company, payload: dict[str, Any]) -> MessagingSettings:
    """Apply the fields present in ``payload``; ``InvalidInput`` with ``errors`` when any is wrong. Caller commits."""
    row = settings_row(company.id)
    errors = _Errors()
    changes: dict[str, Any] = {}
    if "enabled" in payload:
        value = payload["enabled"]
        editable = {kind.value for kind in EDITABLE}
        if errors.check("enabled", isinstance(value, dict) and set(value) <= editable
                        and all(isinstance(v, bool) for v in value.values()), "Вид сообщения → true или false"):
            disabled = set(row.disabled_kinds or ())
            disabled |= {name for name, on in value.items() if not on}
            disabled -= {name for name, on in value.items() if on}
            changes["disabled_kinds"] = sorted(disabled)
    if "reminders" in payload:
        changes["reminders"] = _reminders_field(errors, payload["reminders"])
    if "reask_at" in payload:
        changes["reask_at"] = _clock_field(errors, "reask_at", payload["reask_at"])
    if "quiet_hours" in payload:
        quiet = payload["quiet_hours"]
        if quiet is None:
            changes["quiet_start"] = changes["quiet_end"] = None
        elif errors.check("quiet_hours", isinstance(quiet, dict), 'Тихие часы: {"start": "21:00", "end": "09:00"}'):
            changes["quiet_start"] = _clock_field(errors, "quiet_hours.start", quiet.get("start"), nullable=False)
            changes["quiet_end"] = _clock_field(errors, "quiet_hours.end", quiet.get("end"), nullable=False)
    if "contact_phone" in payload:
        phone = payload["contact_phone"]
        try:
            changes["contact_phone"] = None if phone in (None, "") else parse_phone(phone)
        except InvalidInput as exc:
            errors.check("contact_phone", False, exc.message)
    if "cancel_writes_attendance" in payload:
        value = payload["cancel_writes_attendance"]
        if errors.check("cancel_writes_attendance", isinstance(value, bool), "true или false"):
            changes["cancel_writes_attendance"] = value
    if "templates" in payload:
        changes["templates"] = _templates_field(errors, payload["templates"], row.templates or {})
    timezone = payload.get("timezone", company.timezone)
    if "timezone" in payload:
        try:
            ok = isinstance(timezone, str) and "/" in timezone and ZoneInfo(timezone) is not None
        except (ZoneInfoNotFoundError, ValueError):
            ok = False
        errors.check("timezone", ok, "Часовой пояс по базе IANA, например Europe/Moscow")
    unknown = set(payload) - {"enabled", "reminders", "reask_at", "quiet_hours", "contact_phone",
                              "cancel_writes_attendance", "templates", "timezone"}
    for name in sorted(unknown):
        errors.check(str(name)[:40], False, "Неизвестная настройка")
    if errors:
        raise InvalidInput(INVALID, errors=dict(errors))
    for name, value in changes.items():
        setattr(row, name, value)
    if "timezone" in payload:
        company.timezone = timezone
    if db.session.get(MessagingSettings, company.id) is None:
        db.session.add(row)
    db.session.flush()
    return row


def change(company: Company, payload: dict[str, Any]) -> MessagingSettings:
    """``update`` the settings, then re-plan the salon's reminders by the new rules after commit. Caller commits."""
    row = update(company, payload)
    enqueue(Job.MESSAGING_REPLAN, company.id)
    return row
