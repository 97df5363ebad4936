"""Deciding what to send for a booking, and when: pure functions of (visit before, visit after, rules, now).

Nothing here reads the database, the clock or a gateway; the caller passes everything in, so the
rules can be tested with any time zone and any instant.

- A new booking, a move (time, master or services) and a cancellation (deleted, or attendance −1)
  are announced, as the mirror's change hook sorts them (``services.webhooks.changes.ChangeKind``);
  status-only changes (confirmed, came) are not.
- Reminders follow the salon's rules, computed in the salon's time zone: "the evening before at
  18:00" is 18:00 local on the day before the visit, whatever the server's zone.
- Nothing is planned for a visit that has started, or for a client without a phone number.
- Quiet hours move a message to the end of the quiet window (local time); a message that would
  then arrive after its deadline (the visit's start) is not planned at all.

Each planned message carries a slot: with the booking and kind it forms the message's idempotency
key, so planning the same change twice — a retried task, a replayed webhook — yields the same keys.
Reminder slots name the visit's start, so a move plans new reminders and the old ones are dropped.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

from services.messaging.templates import Kind
from services.webhooks.changes import ChangeKind

# A reminder due a little in the past (a webhook processed late) still goes; one due earlier does not.
LATE_GRACE = timedelta(minutes=15)


class Priority:
    """Lower goes first: booking messages and replies before reminders."""

    NOW = 0
    SCHEDULED = 1


@dataclass(frozen=True)
class Visit:
    """What messages about a booking depend on: when, whether it still stands, whom to write to."""

    starts_at: datetime | None
    cancelled: bool = False
    client_phone: str | None = None


@dataclass(frozen=True)
class ReminderRule:
    """One reminder: ``hours_before`` the visit, or ``day_before_at`` (local time on the day before)."""

    id: str
    kind: Kind = Kind.REMINDER
    hours_before: float | None = None
    day_before_at: time | None = None

    def due(self, starts_at: datetime, zone: ZoneInfo) -> datetime:
        """When this reminder is due for a visit starting at ``starts_at``."""
        if self.day_before_at is not None:
            day = starts_at.astimezone(zone).date() - timedelta(days=1)
            return datetime.combine(day, self.day_before_at, tzinfo=zone)
        return starts_at - timedelta(hours=self.hours_before or 0)


DEFAULT_REMINDERS = (
    ReminderRule("evening", Kind.CONFIRMATION_REQUEST, day_before_at=time(18, 0)),
    ReminderRule("2h", Kind.REMINDER, hours_before=2),
)


@dataclass(frozen=True)
class Rules:
    """A salon's messaging settings, as the planner needs them."""

    timezone: str = "Europe/Moscow"
    enabled: frozenset[Kind] = field(default_factory=lambda: frozenset(Kind))
    reminders: tuple[ReminderRule, ...] = DEFAULT_REMINDERS
    reask_at: time | None = time(10, 0)
    quiet_start: time | None = time(21, 0)
    quiet_end: time | None = time(9, 0)

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)


@dataclass(frozen=True)
class Planned:
    """One message to send: its kind, slot (for the idempotency key), when, and until when it is useful."""

    kind: Kind
    slot: str
    due_at: datetime
    expires_at: datetime
    priority: int


@dataclass(frozen=True)
class Plan:
    """The outcome of planning one change: messages to add, and why nothing was planned when so."""

    messages: tuple[Planned, ...] = ()
    # The reminders (kind, slot) the visit should have now; waiting reminders of others are dropped.
    reminders: frozenset[tuple[Kind, str]] = frozenset()
    # Announcements of this booking still waiting that this change makes pointless.
    supersedes: frozenset[Kind] = frozenset()
    skipped: str | None = None


def in_quiet_hours(moment: datetime, rules: Rules) -> bool:
    """True when ``moment`` falls in the salon's quiet window (local time; the window may cross midnight)."""
    if rules.quiet_start is None or rules.quiet_end is None or rules.quiet_start == rules.quiet_end:
        return False
    local = moment.astimezone(rules.zone).time()
    if rules.quiet_start < rules.quiet_end:
        return rules.quiet_start <= local < rules.quiet_end
    return local >= rules.quiet_start or local < rules.quiet_end


def out_of_quiet_hours(moment: datetime, rules: Rules) -> datetime:
    """``moment``, or the end of the quiet window it falls in (the next local ``quiet_end``)."""
    if not in_quiet_hours(moment, rules):
        return moment
    assert rules.quiet_end is not None
    local = moment.astimezone(rules.zone)
    end = datetime.combine(local.date(), rules.quiet_end, tzinfo=rules.zone)
    if end <= local:
        end += timedelta(days=1)
    return end


def _message(kind: Kind, slot: str, due: datetime, expires: datetime, priority: int, rules: Rules,
             now: datetime) -> Planned | None:
    if kind not in rules.enabled:
        return None
    due = out_of_quiet_hours(max(due, now), rules)
    if due >= expires:
        return None
    return Planned(kind, slot, due, expires, priority)


def reminder_slot(rule: ReminderRule, starts_at: datetime) -> str:
    """The slot of a reminder: the rule and the visit's start (a move makes new slots)."""
    return f"{rule.id}@{starts_at.isoformat()}"


def _reminders(visit: Visit, rules: Rules, now: datetime) -> tuple[list[Planned], set[tuple[Kind, str]]]:
    assert visit.starts_at is not None
    planned, slots = [], set()
    zone = rules.zone
    candidates = [(rule.kind, reminder_slot(rule, visit.starts_at), rule.due(visit.starts_at, zone))
                  for rule in rules.reminders]
    if rules.reask_at is not None and Kind.CONFIRMATION_REQUEST in {r.kind for r in rules.reminders}:
        day = visit.starts_at.astimezone(zone).date()
        reask_due = datetime.combine(day, rules.reask_at, tzinfo=zone)
        candidates.append((Kind.CONFIRMATION_REASK, f"reask@{visit.starts_at.isoformat()}", reask_due))
    for kind, slot, due in candidates:
        slots.add((kind, slot))
        if due < now - LATE_GRACE:
            continue  # booked after the moment this reminder was for
        found = _message(kind, slot, due, visit.starts_at, Priority.SCHEDULED, rules, now)
        if found is not None:
            planned.append(found)
    return planned, slots


ANNOUNCED = {ChangeKind.CREATED: Kind.BOOKING_CREATED, ChangeKind.MOVED: Kind.BOOKING_MOVED,
             ChangeKind.CANCELLED: Kind.BOOKING_CANCELLED}


def plan(change: ChangeKind, before: Visit | None, after: Visit, rules: Rules, now: datetime, version: str,
         waiting: frozenset[Kind] = frozenset()) -> Plan:
    """What a booking change (sorted by the mirror's hook) means for its client. ``version`` names the
    change (the inbox event id), so a move is announced once per change however often it is planned.
    ``waiting`` are the kinds of this booking's messages not sent yet: an announcement still waiting
    is rendered from the booking when it goes, so a move does not announce itself beside it, and a
    cancellation of a booking the client has not been told about yet is not announced at all."""
    visit = before if after.cancelled and before is not None else after
    if visit.starts_at is None:
        return Plan(skipped="no visit time")
    if visit.starts_at <= now:
        return Plan(skipped="visit in the past")
    if not visit.client_phone:
        return Plan(skipped="no client phone")
    messages: list[Planned] = []
    kind = ANNOUNCED.get(change)
    supersedes: frozenset[Kind] = frozenset()
    if kind is Kind.BOOKING_MOVED:
        supersedes = frozenset({Kind.BOOKING_MOVED})
        if Kind.BOOKING_CREATED in waiting:
            kind = None
    elif kind is Kind.BOOKING_CANCELLED:
        supersedes = frozenset({Kind.BOOKING_CREATED, Kind.BOOKING_MOVED})
        if Kind.BOOKING_CREATED in waiting:
            kind = None
    if kind is not None:
        slot = version if kind is Kind.BOOKING_MOVED else ""
        found = _message(kind, slot, now, visit.starts_at, Priority.NOW, rules, now)
        if found is not None:
            messages.append(found)
    slots: set[tuple[Kind, str]] = set()
    if not after.cancelled:
        reminders, slots = _reminders(after, rules, now)
        messages.extend(reminders)
    return Plan(tuple(messages), frozenset(slots), supersedes)
