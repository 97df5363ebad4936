"""``flask --app wsgi whatsapp …``: reconcile a session with its gateway; drive the built-in simulator."""

from __future__ import annotations

import click
from flask import current_app
from flask.cli import AppGroup

from models import Message, db
from services.platform.errors import ServiceError
from services.platform.jobs import Job
from services.whatsapp import gateway

whatsapp_cli = AppGroup("whatsapp", help="WhatsApp sessions (reconciliation, simulator controls).")


@whatsapp_cli.command("simulate-scan")
@click.argument("company_id", type=int)
@click.option("--phone", default="+79001234567", show_default=True, help="The number that links its WhatsApp.")
def simulate_scan(company_id: int, phone: str) -> None:
    """Simulator: the salon's phone scans the QR now shown for COMPANY_ID."""
    try:
        linked = gateway.simulate_scan(company_id, phone)
    except ServiceError as exc:
        raise click.ClickException(exc.message) from None
    click.echo(f"scanned: company {company_id} links +{linked}")


@whatsapp_cli.command("simulate-disconnect")
@click.argument("company_id", type=int)
@click.option("--code", type=int, default=428, show_default=True,
              help="WhatsApp's reason: 401 logged out, 403/406 banned, 402 temporary ban, 440 replaced, 428 …")
def simulate_disconnect(company_id: int, code: int) -> None:
    """Simulator: WhatsApp drops COMPANY_ID's session with CODE."""
    try:
        gateway.simulate_disconnect(company_id, code)
    except ServiceError as exc:
        raise click.ClickException(exc.message) from None
    click.echo(f"disconnected: company {company_id} with code {code}")


@whatsapp_cli.command("reconcile")
@click.argument("company_id", type=int)
def reconcile(company_id: int) -> None:
    """Ask the gateway for the real state of COMPANY_ID's session now and repair our row (as beat does)."""
    celery = current_app.extensions["celery"]
    celery.loader.import_default_modules()  # the task modules, as a worker imports them
    outcome = celery.tasks[Job.WHATSAPP_RECONCILE].apply(args=[company_id]).get()
    click.echo(f"company {company_id}: {outcome}")
    if outcome == "unreachable":
        raise click.ClickException("the WhatsApp gateway could not be reached")


@whatsapp_cli.command("simulate-reply")
@click.argument("company_id", type=int)
@click.argument("phone")
@click.argument("text")
def simulate_reply(company_id: int, phone: str, text: str) -> None:
    """Simulator: the client with PHONE writes TEXT to COMPANY_ID's WhatsApp (e.g. «1» to confirm)."""
    try:
        message_id = gateway.simulate_reply(company_id, phone, text)
    except ServiceError as exc:
        raise click.ClickException(exc.message) from None
    click.echo(f"received: company {company_id} got {text!r} from {phone} (message {message_id})")


@whatsapp_cli.command("simulate-ack")
@click.argument("company_id", type=int)
@click.argument("message")
@click.option("--ack", type=click.Choice(["delivered", "read", "failed"]), default="read", show_default=True)
def simulate_ack(company_id: int, message: str, ack: str) -> None:
    """Simulator: the client's phone reports our MESSAGE (its number in `messages list`, or the gateway's
    message id) delivered, read or failed."""
    gateway_id = message
    if message.isdigit():
        row = db.session.get(Message, int(message))
        if row is None or row.company_id != company_id or not row.gateway_message_id:
            raise click.ClickException(f"company {company_id} has no sent message {message}")
        gateway_id = row.gateway_message_id
    level = {"delivered": 2, "read": 3, "failed": -1}[ack]
    try:
        gateway.simulate_ack(company_id, gateway_id, level)
    except ServiceError as exc:
        raise click.ClickException(exc.message) from None
    click.echo(f"acknowledged: message {message} {ack}")
