"""The session policy against events as gateways really send them, and reconciliation, in one process:
events without id or timestamp, re-sent STARTING, closed companies, sessions we ended, the QR budget,
the disconnect debounce, a single-session gateway, and the gateway's real state repairing our rows."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from integrations.whatsapp import SessionInfo
from models import Company, CompanyEvent, IntegrationStatus, SessionStatus, WhatsAppSession, db, utcnow
from services.whatsapp import reconcile, session_events, sessions


def _event(company_id: int, status: str, **extra: Any) -> dict[str, Any]:
    """A WAHA Core 2024.10 event: no id, no timestamp, no code."""
    me = extra.pop("me", None)
    return {"event": "session.status", "session": f"company-{company_id}", "me": me, "company_id": company_id,
            "payload": {"name": f"company-{company_id}", "status": status, **extra}}


def _apply(event: dict[str, Any]) -> str:
    outcome = session_events.handle_event(event)
    db.session.commit()
    return outcome


def _row(company_id: int) -> WhatsAppSession:
    db.session.expire_all()
    return sessions.session_for(company_id)


def _company(company_id: int) -> Company:
    db.session.expire_all()
    return sessions.get_company(company_id)


def _attempt(company_id: int) -> None:
    assert sessions.begin_attempt(company_id) == f"company-{company_id}"
    db.session.commit()


def _linked(company_factory: Any) -> int:
    made = company_factory(status=IntegrationStatus.ACTIVE)
    row = sessions.session_for(made.id)
    row.status = SessionStatus.WORKING
    db.session.commit()
    return int(made.id)


def test_events_without_id_or_timestamp_all_apply_and_a_resent_starting_changes_nothing(company_factory):
    made = company_factory()
    _attempt(made.id)
    assert _apply(_event(made.id, "STARTING")) == "unchanged"
    for _ in range(3):
        assert _apply(_event(made.id, "SCAN_QR_CODE")) == "qr"
    assert _row(made.id).qr_count == 3
    assert _apply(_event(made.id, "WORKING", me={"id": "79001234567@c.us"})) == "connected"


def test_an_event_id_seen_before_is_a_duplicate_and_an_older_timestamp_is_stale(company_factory):
    made = company_factory()
    _attempt(made.id)
    first = {**_event(made.id, "SCAN_QR_CODE"), "id": "evt_01", "timestamp": 2_000}
    assert _apply(first) == "qr"
    assert _apply(dict(first)) == "stale"
    assert _apply({**_event(made.id, "SCAN_QR_CODE"), "id": "evt_00", "timestamp": 1_000}) == "stale"
    assert _row(made.id).qr_count == 1


def test_a_closed_company_is_never_revived(company_factory):
    for status in (IntegrationStatus.UNINSTALLED, IntegrationStatus.FROZEN):
        made = company_factory(status=status)
        assert _apply(_event(made.id, "WORKING", me={"id": "79001234567@c.us"})) == "closed"
        assert _row(made.id).status == SessionStatus.STOPPED
        assert _company(made.id).whatsapp_phone is None


def test_a_session_we_ended_ignores_the_gateway_rotating_on(company_factory):
    made = company_factory()
    _attempt(made.id)
    assert sessions.end_session(made.id, "stopped") == f"company-{made.id}"
    db.session.commit()
    for status in ("SCAN_QR_CODE", "STARTING", "WORKING"):
        assert _apply(_event(made.id, status)) == "ended"
    assert _row(made.id).status == SessionStatus.STOPPED


def test_an_attempt_past_its_qr_budget_is_ended_by_us(company_factory):
    made = company_factory()
    _attempt(made.id)
    budget = sessions.qr_timings()[2]
    for _ in range(budget):
        assert _apply(_event(made.id, "SCAN_QR_CODE")) == "qr"
    assert _apply(_event(made.id, "SCAN_QR_CODE")) == "qr_timeout"
    row = _row(made.id)
    assert (row.status, row.failure_reason, row.qr_count) == (SessionStatus.FAILED, "qr_timeout", budget)
    assert sessions.end_attempt_target(made.id, row.attempt) == f"company-{made.id}"
    assert _apply(_event(made.id, "SCAN_QR_CODE")) == "ended"  # the engine keeps rotating: not obeyed


def test_a_failure_is_a_disconnect_only_when_it_outlasts_the_debounce(company_factory):
    company_id = _linked(company_factory)
    assert _apply(_event(company_id, "FAILED")) == "failing"
    assert _company(company_id).integration_status == IntegrationStatus.ACTIVE
    assert _apply(_event(company_id, "WORKING", me={"id": "79001234567@c.us"})) == "connected"
    assert sessions.confirm_disconnect(company_id, "failed", None) == "recovered"
    db.session.commit()
    assert _company(company_id).integration_status == IntegrationStatus.ACTIVE
    assert _apply(_event(company_id, "FAILED")) == "failing"
    assert sessions.confirm_disconnect(company_id, "failed", None) == "disconnected"
    db.session.commit()
    assert _company(company_id).integration_status == IntegrationStatus.DISCONNECTED
    assert db.session.query(CompanyEvent).filter_by(company_id=company_id, kind="disconnected").count() == 1


def test_a_terminal_code_disconnects_at_once(company_factory):
    company_id = _linked(company_factory)
    assert _apply(_event(company_id, "FAILED", code=401)) == "logged_out"
    assert _company(company_id).integration_status == IntegrationStatus.DISCONNECTED


def test_a_single_session_gateway_refuses_a_second_salon_with_a_reason(company_factory):
    first, second = company_factory(), company_factory()
    assert sessions.begin_attempt(first.id, "default") == "default"
    db.session.commit()
    assert sessions.begin_attempt(second.id, "default") is None
    db.session.commit()
    row = _row(second.id)
    assert (row.status, row.failure_reason) == (SessionStatus.FAILED, "gateway_single_session")
    assert db.session.query(CompanyEvent).filter_by(company_id=second.id, kind="gateway_refused").count() == 1
    # Once the first salon is gone, the second one gets the session.
    _company(first.id).integration_status = IntegrationStatus.UNINSTALLED
    db.session.commit()
    assert sessions.begin_attempt(second.id, "default") == "default"


def _age(company_id: int, status: str, seconds: float) -> None:
    row = sessions.session_for(company_id)
    row.status, row.updated_at = status, utcnow() - timedelta(seconds=seconds)
    db.session.commit()


def test_reconciliation_picks_sessions_that_should_have_moved_on(company_factory):
    stuck, scanning, quiet, fresh = (company_factory() for _ in range(4))
    _age(stuck.id, SessionStatus.STARTING, 3600)
    _age(scanning.id, SessionStatus.SCAN_QR_CODE, 3600)
    _age(quiet.id, SessionStatus.WORKING, 7 * 24 * 3600)
    _age(fresh.id, SessionStatus.SCAN_QR_CODE, 1)
    assert set(reconcile.due()) == {stuck.id, scanning.id, quiet.id}


def test_reconciliation_repairs_rows_from_the_gateways_answer(company_factory):
    scanning, starting, lost, linked = (company_factory() for _ in range(4))
    _age(scanning.id, SessionStatus.SCAN_QR_CODE, 3600)
    assert reconcile.apply(scanning.id, SessionInfo("SCAN_QR_CODE")) == "qr_timeout"
    _age(starting.id, SessionStatus.STARTING, 3600)
    assert reconcile.apply(starting.id, SessionInfo("WORKING", "79001234567")) == "connected"
    db.session.commit()
    assert _company(starting.id).whatsapp_phone == "+79001234567"
    _age(lost.id, SessionStatus.WORKING, 3600)
    assert reconcile.apply(lost.id, SessionInfo("STOPPED", exists=False)) == "reconnecting"
    _age(linked.id, SessionStatus.STARTING, 3600)
    assert reconcile.apply(linked.id, SessionInfo("STARTING")) == "start_timeout"
    db.session.commit()
    assert _row(linked.id).failure_reason == "start_timeout"


def test_reconciliation_ends_a_closed_companys_live_session_again(company_factory):
    made = company_factory(status=IntegrationStatus.UNINSTALLED)
    assert reconcile.apply(made.id, SessionInfo("WORKING", "79001234567")) == "ended_again"
    assert reconcile.apply(made.id, SessionInfo("STOPPED", exists=False)) == "closed"


def test_the_operator_command_reconciles_one_company(ctx, company_factory):
    made = company_factory()
    _age(made.id, SessionStatus.SCAN_QR_CODE, 3600)
    result = ctx.test_cli_runner().invoke(args=["whatsapp", "reconcile", str(made.id)])
    # The simulator holds no such session: the attempt the row still shows is gone at the gateway.
    assert result.exit_code == 0, result.output
    assert result.output.strip() == f"company {made.id}: gateway_lost"
    assert _row(made.id).status == SessionStatus.FAILED and _row(made.id).failure_reason == "gateway_lost"


def test_health_says_why_a_single_session_gateway_refuses_salons(ctx, company_factory):
    first, second = company_factory(), company_factory()
    sessions.begin_attempt(first.id, "default")
    sessions.begin_attempt(second.id, "default")
    db.session.commit()
    body = ctx.test_client().get("/marketplace/health").get_json()
    whatsapp = body["checks"]["whatsapp"]
    assert whatsapp["ok"] is False and whatsapp["refused"] == 1 and "WAHA Plus" in whatsapp["error"]
    overview = ctx.test_cli_runner().invoke(args=["company", "show", str(second.id)])
    assert "gateway_single_session" in overview.output and "WAHA Core" in overview.output
