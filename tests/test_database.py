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
