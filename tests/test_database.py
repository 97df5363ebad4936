"""Each app has its own engine: building another app never re-binds or disposes the first one's."""

from __future__ import annotations

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
