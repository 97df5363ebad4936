"""``flask --app wsgi webhooks …``: list inbox events and replay failed or dead ones."""

from __future__ import annotations

import click
from flask.cli import AppGroup

from services.platform.errors import InvalidInput
from services.webhooks import admin

webhooks_cli = AppGroup("webhooks", help="Inspect and replay the webhook inbox.")


@webhooks_cli.command("list")
@click.option("--status", default=None, help="Only events in this status (failed, dead, rejected …).")
@click.option("--company", "company_id", type=int, default=None, help="Only this company's events.")
@click.option("--limit", type=int, default=50, show_default=True)
def list_command(status: str | None, company_id: int | None, limit: int) -> None:
    """List inbox events, newest first."""
    try:
        events = admin.list_events(status=status, company_id=company_id, limit=limit)
    except InvalidInput as exc:
        raise click.UsageError(exc.message) from None
    for e in events:
        problem = e.last_error or e.reject_reason or ""
        click.echo(f"{e.id}\t{e.status}\t{e.type}\tcompany={e.company_id}\tattempts={e.attempts}\t{problem[:120]}")
    click.echo(f"{len(events)} event(s)", err=True)


@webhooks_cli.command("replay")
@click.argument("event_ids", nargs=-1, type=int)
@click.option("--status", type=click.Choice(admin.REPLAYABLE), default=None, help="Replay every event in this status.")
@click.option("--limit", type=int, default=admin.MAX_LIST, show_default=True, help="At most this many with --status.")
def replay_command(event_ids: tuple[int, ...], status: str | None, limit: int) -> None:
    """Replay failed/dead events by id, or all of one status (``--status dead``)."""
    try:
        result = admin.replay(event_ids, status, limit=limit)
    except InvalidInput as exc:
        raise click.UsageError(exc.message) from None
    click.echo(f"replayed: {' '.join(map(str, result['replayed'])) or '-'}")
    if result["skipped"]:
        click.echo(f"skipped (not failed or dead): {' '.join(map(str, result['skipped']))}")


@webhooks_cli.command("stats")
def stats_command() -> None:
    """Counts of inbox events by status."""
    for status, count in admin.counts_by_status().items():
        click.echo(f"{status}\t{count}")
