"""Operator commands: ``flask --app wsgi keys|company|stats|callbacks …`` against the configured database."""

from __future__ import annotations

import json
from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar

import click
from flask import Flask
from flask.cli import AppGroup, with_appcontext

from models import ApiKey, db
from services.access import key_admin
from services.callbacks import activation
from services.companies import queries, report
from services.platform.errors import ServiceError

F = TypeVar("F", bound=Callable[..., Any])


def _one_transaction(command: F) -> F:
    """Commit when the command succeeds; roll back and exit 1 with the service's message otherwise."""

    @wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            result = command(*args, **kwargs)
            db.session.commit()
            return result
        except ServiceError as exc:
            db.session.rollback()
            raise click.ClickException(exc.message) from None

    return wrapper  # type: ignore[return-value]


def _key_line(key: ApiKey) -> str:
    owner = "admin" if key.company_id is None else f"company={key.company_id}"
    state = f"revoked {key.revoked_at:%Y-%m-%d %H:%M}" if key.revoked_at else "active"
    return f"{key.id}\t{key.prefix}…\t{owner}\tlabel={key.label}\tcreated {key.created_at:%Y-%m-%d %H:%M}\t{state}"


keys_cli = AppGroup("keys", help="Create, rotate, revoke and list API keys.")


@keys_cli.command("create")
@click.option("--company", "company_id", type=int, default=None, help="A key for this company.")
@click.option("--admin", "admin", is_flag=True, help="An admin key (all companies, stats, metrics).")
@click.option("--label", default=key_admin.DEFAULT_LABEL, show_default=True, help="What the key is for.")
@_one_transaction
def create_key_command(company_id: int | None, admin: bool, label: str) -> None:
    """Issue a new key; its plaintext is printed once, on stdout."""
    if admin == (company_id is not None):
        raise click.UsageError("give exactly one of --company ID or --admin")
    key, plaintext = key_admin.create_key(None if admin else company_id, label)
    click.echo(plaintext)
    click.echo(f"created {_key_line(key)} — store it now, it is not shown again", err=True)


@keys_cli.command("rotate")
@click.option("--company", "company_id", type=int, required=True)
@click.option("--label", default=key_admin.DEFAULT_LABEL, show_default=True, help="Which of the company's keys.")
@_one_transaction
def rotate_key_command(company_id: int, label: str) -> None:
    """Revoke the company's keys with this label and print the one new key."""
    revoked, key, plaintext = key_admin.rotate_company_key(company_id, label)
    click.echo(plaintext)
    click.echo(f"revoked {revoked} key(s); new {_key_line(key)}", err=True)


@keys_cli.command("revoke")
@click.option("--company", "company_id", type=int, default=None, help="Every active key of this company.")
@click.option("--prefix", default=None, help="Keys starting with this prefix (or one whole key).")
@_one_transaction
def revoke_key_command(company_id: int | None, prefix: str | None) -> None:
    """Revoke keys by company or by prefix."""
    if (company_id is None) == (prefix is None):
        raise click.UsageError("give exactly one of --company ID or --prefix P")
    revoked = key_admin.revoke_keys(company_id=company_id, prefix=prefix)
    for key in revoked:
        click.echo(_key_line(key))
    click.echo(f"revoked {len(revoked)} key(s)", err=True)


@keys_cli.command("list")
@click.option("--company", "company_id", type=int, default=None, help="Only this company's keys.")
@click.option("--admin", "admin_only", is_flag=True, help="Only admin keys.")
@_one_transaction
def list_keys_command(company_id: int | None, admin_only: bool) -> None:
    """Keys with their prefix, owner, label and state (never the key itself)."""
    keys = key_admin.list_keys(company_id, admin_only)
    for key in keys:
        click.echo(_key_line(key))
    click.echo(f"{len(keys)} key(s)", err=True)


company_cli = AppGroup("company", help="Look at one company.")


def _print_overview(report: dict[str, Any]) -> None:
    company = report["company"]
    click.echo(f"company {company['id']} (salon {company['salon_id']}) {company['title'] or ''}".rstrip())
    for name, value in company.items():
        if name not in ("id", "salon_id", "title"):
            click.echo(f"  {name}: {value}")
    session = report["whatsapp_session"]
    click.echo("whatsapp session: " + ("none" if session is None else ""))
    for name, value in (session or {}).items():
        click.echo(f"  {name}: {value}")
    sections: list[tuple[str, str, Callable[[dict[str, Any]], str]]] = [
        ("outages", "outages", lambda o: f"{o['service']} unreachable since {o['since']}"
         f" failures={o['failures']} error={o['error']}"),
        ("api_keys", "api keys", lambda k: f"{k['prefix']}… label={k['label']} created {k['created_at']}"
         + (f" revoked {k['revoked_at']}" if k["revoked_at"] else " active")),
        ("events", "recent events", lambda e: f"{e['id']} {e['created_at']} {e['kind']}"),
        ("callbacks", "recent callbacks", lambda c: f"{c['id']} {c['created_at']} {c['status']}"
         f" attempts={c['attempts']} http={c['http_status']}" + (f" error={c['error']}" if c["error"] else "")),
        ("webhook_events", "recent webhook events", lambda w: f"{w['id']} {w['received_at']}"
         f" {w['source']}/{w['type']} {w['status']} attempts={w['attempts']}"
         + (f" error={w['last_error']}" if w["last_error"] else "")),
    ]
    for key, title, line in sections:
        click.echo(f"{title}: {'none' if not report[key] else ''}".rstrip())
        for item in report[key]:
            click.echo("  " + line(item))


@company_cli.command("show")
@click.argument("company_id", type=int)
@click.option("--limit", type=int, default=10, show_default=True, help="How many recent rows of each kind.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
@_one_transaction
def show_company_command(company_id: int, limit: int, as_json: bool) -> None:
    """Status, WhatsApp session, recent events, callbacks and webhook events (no secrets)."""
    overview = report.company_overview(company_id, limit)
    if as_json:
        click.echo(json.dumps(overview, ensure_ascii=False, indent=2))
    else:
        _print_overview(overview)


@click.command("stats")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
@with_appcontext
@_one_transaction
def stats_command(as_json: bool) -> None:
    """The connection stats of ``GET /marketplace/companies``."""
    stats = queries.connection_stats()
    if as_json:
        click.echo(json.dumps(stats, ensure_ascii=False, indent=2))
        return
    for name, value in stats.items():
        if isinstance(value, dict):
            click.echo(f"{name}: " + " ".join(f"{k}={v}" for k, v in value.items()))
        else:
            click.echo(f"{name}: {value}")


callbacks_cli = AppGroup("callbacks", help="Activation callbacks to YClients.")


@callbacks_cli.command("resend")
@click.argument("company_id", type=int)
@_one_transaction
def resend_callback_command(company_id: int) -> None:
    """Queue the activation callback for the company again (sent by the worker)."""
    row = activation.resend_callback(company_id)
    click.echo(f"callback {row.id} for company {company_id}: {row.status}, queued for the worker")


def register_admin_commands(app: Flask) -> None:
    """Add the operator command groups to ``flask --app wsgi``."""
    for command in (keys_cli, company_cli, stats_command, callbacks_cli):
        app.cli.add_command(command)
