"""Each app has its own engine; savepoints undo only their own writes and after-commit work."""

from __future__ import annotations

import pytest
from sqlalchemy import text

from models import db
from services.platform.schema import upgrade


def test_two_apps_keep_their_own_engines(app, make_app, run_dir):
    other_url = f"sqlite:///{run_dir / 'second-app.db'}"
    upgrade(other_url)
    with app.app_context():
        first_engine = db.engine
        db.session.execute(text("SELECT 1"))
        other = make_app(database_url=other_url)
        # Building the second app left the first app's engine and session alone.
        assert db.engine is first_engine
        assert db.session.execute(text("SELECT 1")).scalar() == 1
        with other.app_context():
            assert str(db.engine.url) == other_url
            assert db.session.get_bind() is other.extensions["db"].engine
        assert db.session.get_bind() is first_engine
    assert app.extensions["db"].engine is first_engine


def test_add_unless_exists_undoes_only_its_own_savepoint(ctx, company_factory):
    from models import Company, CompanyEvent
    from services.platform.transactions import add_unless_exists

    taken = company_factory()
    earlier = CompanyEvent(company_id=taken.id, kind="earlier_work")
    db.session.add(earlier)
    db.session.flush()
    assert add_unless_exists(Company(salon_id=taken.salon_id)) is False
    assert add_unless_exists(Company(salon_id=taken.salon_id + 10_000)) is True
    db.session.commit()
    kinds = [e.kind for e in db.session.query(CompanyEvent).filter_by(company_id=taken.id)]
    assert kinds == ["earlier_work"]
    assert db.session.query(Company).filter_by(salon_id=taken.salon_id + 10_000).count() == 1


def test_after_commit_work_survives_a_savepoint_rolled_back_and_dies_with_the_transaction(ctx, company_factory):
    from models import Company
    from services.platform.transactions import add_unless_exists, on_commit, savepoint

    taken, ran = company_factory(), []
    on_commit(lambda: ran.append("before"))
    assert add_unless_exists(Company(salon_id=taken.salon_id)) is False  # a duplicate: its savepoint undone
    with pytest.raises(RuntimeError), savepoint():
        on_commit(lambda: ran.append("in the failed savepoint"))
        raise RuntimeError("a receiver failed")
    with savepoint():
        on_commit(lambda: ran.append("in a savepoint released"))
    on_commit(lambda: ran.append("after"))
    db.session.commit()
    assert ran == ["before", "in a savepoint released", "after"]

    db.session.execute(text("SELECT 1"))  # a transaction of its own each
    on_commit(lambda: ran.append("rolled back"))
    db.session.rollback()
    db.session.execute(text("SELECT 1"))
    on_commit(lambda: ran.append("closed"))
    db.session.close()
    db.session.execute(text("SELECT 1"))
    db.session.commit()
    assert ran == ["before", "in a savepoint released", "after"]
