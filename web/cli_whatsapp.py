"""``flask --app wsgi whatsapp …``: drive the built-in WhatsApp simulator from a terminal."""

from __future__ import annotations

import click
from flask.cli import AppGroup

from services.platform.errors import ServiceError
from services.whatsapp import gateway

whatsapp_cli = AppGroup("whatsapp", help="WhatsApp sessions (simulator controls).")


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
