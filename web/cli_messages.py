"""``flask --app wsgi messages …``: a salon's message log and numbers, resending failed messages, re-planning."""

from __future__ import annotations

import json

import click
from flask.cli import AppGroup

from models import db
from services.companies.queries import get_company
from services.messaging import booking_changes, history, outbox
from services.platform import clock
from services.platform.errors import ServiceError

messages_cli = AppGroup("messages", help="A salon's messages to its clients.")


def _fail(exc: ServiceError) -> None:
    raise click.UsageError(exc.message)


@messages_cli.command("list")
@click.argument("company_id", type=int)
@click.option("--state", default=None, help="Only messages in this state (queued, sent, failed, skipped …).")
@click.option("--search", default=None, help="A client's phone or name.")
@click.option("--limit", type=int, default=50, show_default=True)
def list_command(company_id: int, state: str | None, search: str | None, limit: int) -> None:
    """The salon's messages, newest first."""
    try:
        get_company(company_id)
        found = history.list_messages(company_id, state=state, search=search, limit=limit)
    except ServiceError as exc:
        _fail(exc)
    for m in found:
        when = m["sent_at"] or m["due_at"]
        click.echo(f"{m['id']}\t{m['state']}\t{m['kind']}\t{m['phone']}\t{when}\t{(m['reason'] or '')[:80]}")
    click.echo(f"{len(found)} message(s)", err=True)


@messages_cli.command("stats")
@click.argument("company_id", type=int)
@click.option("--days", type=int, default=30, show_default=True)
def stats_command(company_id: int, days: int) -> None:
    """Sent, delivered, read, failed, confirmed, cancelled and opted out over the last days (JSON)."""
    try:
        click.echo(json.dumps(history.stats(get_company(company_id), days), ensure_ascii=False, indent=2))
    except ServiceError as exc:
        _fail(exc)


@messages_cli.command("resend")
@click.argument("company_id", type=int)
@click.argument("message_ids", nargs=-1, type=int)
def resend_command(company_id: int, message_ids: tuple[int, ...]) -> None:
    """Send failed messages again (all of the salon's, or these) while they are still useful."""
    try:
        get_company(company_id)
    except ServiceError as exc:
        _fail(exc)
    again = outbox.resend(company_id, message_ids, clock.now())
    db.session.commit()
    click.echo(f"back in line: {' '.join(map(str, again)) or '-'}")


@messages_cli.command("plan")
@click.argument("company_id", type=int)
def plan_command(company_id: int) -> None:
    """Plan the salon's future bookings again (adds what is missing, drops what no longer holds)."""
    try:
        get_company(company_id)
    except ServiceError as exc:
        _fail(exc)
    added = booking_changes.replan_company(company_id)
    db.session.commit()
    click.echo(f"planned {added} new message(s)")
