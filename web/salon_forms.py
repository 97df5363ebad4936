"""The salon page's HTML forms turned into the messaging settings' JSON shape (the service validates it)."""

from __future__ import annotations

from typing import Any

from werkzeug.datastructures import MultiDict

from services.messaging.settings import MAX_REMINDERS
from services.messaging.templates import EDITABLE


def _hours(text: str) -> Any:
    """``"2"`` → 2, ``"1,5"`` → 1.5; anything else is passed on for the service to name the problem."""
    try:
        value = float(text.replace(",", "."))
    except ValueError:
        return text
    return int(value) if value.is_integer() else value


def settings_payload(form: MultiDict[str, str]) -> dict[str, Any]:
    """The settings form: kinds on/off, reminders (``N`` hours before, or ``ЧЧ:ММ`` the day before), the
    re-ask time, quiet hours (both empty: none), time zone, contact phone, writing cancellations back."""
    reminders: list[dict[str, Any]] = []
    for n in range(MAX_REMINDERS):
        when = form.get(f"reminder.{n}.when", "").strip()
        if not when:
            continue
        kind = form.get(f"reminder.{n}.kind", "reminder")
        reminders.append({"kind": kind, "day_before_at": when} if ":" in when
                         else {"kind": kind, "hours_before": _hours(when)})
    start, end = form.get("quiet.start", "").strip(), form.get("quiet.end", "").strip()
    return {
        "enabled": {kind.value: form.get(f"enabled.{kind.value}") == "on" for kind in EDITABLE},
        "reminders": reminders,
        "reask_at": form.get("reask_at", "").strip() or None,
        "quiet_hours": {"start": start, "end": end} if start or end else None,
        "timezone": form.get("timezone", "").strip(),
        "contact_phone": form.get("contact_phone", "").strip() or None,
        "cancel_writes_attendance": form.get("cancel_writes_attendance") == "on",
    }


def template_payload(form: MultiDict[str, str]) -> dict[str, Any]:
    """One template saved (``action=save``) or put back to the default (``action=reset``)."""
    kind = form.get("kind", "")
    text = None if form.get("action") == "reset" else form.get("text", "")
    return {"templates": {kind: text}}
