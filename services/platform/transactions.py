"""Work that must happen only once the current transaction has committed (enqueue, publish)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import event
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, SessionTransaction

from models import db

log = logging.getLogger(__name__)
_KEY = "on_commit"
_MARKS = "on_commit_savepoints"  # savepoint transaction -> how much work was asked for before it began


def add_unless_exists(row: Any) -> bool:
    """Insert ``row`` inside a savepoint; False when a UNIQUE constraint says another transaction
    inserted it first (only the savepoint is undone: the rest of the transaction stands)."""
    try:
        with db.session.begin_nested():
            db.session.add(row)
        return True
    except IntegrityError:
        return False


@contextmanager
def savepoint() -> Iterator[None]:
    """Run the block in a savepoint: when it raises, its writes and the after-commit work it asked for are
    undone (the rest of the transaction stands) and the exception goes on."""
    with db.session.begin_nested():
        yield


def on_commit(fn: Callable[[], Any]) -> None:
    """Run ``fn`` after the current session commits; drop it if the session rolls back."""
    db.session().info.setdefault(_KEY, []).append(fn)


@event.listens_for(Session, "after_commit")
def _run_after_commit(session: Session) -> None:
    callbacks = session.info.pop(_KEY, [])
    for fn in callbacks:
        try:
            fn()
        except Exception:
            # The data is committed; a lost enqueue is recovered by the beat sweeps.
            log.exception("after-commit action failed")


@event.listens_for(Session, "after_transaction_create")
def _mark_savepoint(session: Session, transaction: SessionTransaction) -> None:
    if transaction.nested:
        session.info.setdefault(_MARKS, {})[transaction] = len(session.info.get(_KEY, ()))


@event.listens_for(Session, "after_soft_rollback")
def _drop_on_savepoint_rollback(session: Session, previous_transaction: SessionTransaction) -> None:
    """A savepoint rolled back: only the work asked for inside it is dropped (``add_unless_exists`` meeting
    a duplicate must not cancel what the transaction asked for before)."""
    kept = session.info.get(_MARKS, {}).pop(previous_transaction, None)
    if previous_transaction.nested and kept is not None:
        del session.info.get(_KEY, [])[kept:]


@event.listens_for(Session, "after_transaction_end")
def _drop_on_end(session: Session, transaction: SessionTransaction) -> None:
    """The outermost transaction ended: what after_commit did not take was never committed (rolled back, or
    the session closed)."""
    if transaction.parent is None:
        session.info.pop(_KEY, None)
        session.info.pop(_MARKS, None)
