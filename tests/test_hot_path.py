"""What the hot path sends to the database (issue 8), on SQLite and PostgreSQL:
a view marked read_only reads in autocommit, one statement per query; any
other request, a write or an unmarked GET, keeps its transaction; nothing is loaded again after a commit."""

import contextlib
import sqlite3

import psycopg
import pytest
from sqlalchemy import event, func, select

from authapi import mail
from authapi.extensions import READ_ONLY_MARK, db
from authapi.models import User

from .conftest import bearer


@contextlib.contextmanager
def statements(app):
    """Every statement the app sends to its database, with whether the
    driver's connection was in autocommit at the time (its own state, not
    SQLAlchemy's setting, so a pooled connection left in autocommit would
    show). On SQLite, from SQLAlchemy's execution events; on PostgreSQL, from
    psycopg's cursors themselves, so that a statement a hot path sends
    through the driver (services/profile.py) is seen as well."""
    # Registration's verification email is written by a background job.
    mail.wait_for_background_jobs()
    seen = []

    def record(conn, cursor, statement, parameters, context, executemany):
        seen.append((statement.split()[0].upper(), driver_autocommit(conn.connection.dbapi_connection)))

    class RecordingCursor(psycopg.Cursor):
        def execute(self, query, *args, **kwargs):
            seen.append((str(query).split()[0].upper(), self.connection.autocommit))
            return super().execute(query, *args, **kwargs)

    def recording(dbapi_connection, connection_record, connection_proxy):
        dbapi_connection.cursor_factory = RecordingCursor

    with app.app_context():
        engine = db.engine
    postgresql = engine.dialect.name == "postgresql"
    target, name, listener = (engine.pool, "checkout", recording) if postgresql else (
        engine, "before_cursor_execute", record)
    event.listen(target, name, listener)
    try:
        yield seen
    finally:
        event.remove(target, name, listener)
        if postgresql:
            # Connections checked out since keep the recorder; none is
            # checked out now, so a new pool leaves none behind.
            engine.dispose()


def driver_autocommit(dbapi_connection) -> bool:
    if isinstance(dbapi_connection, sqlite3.Connection):
        return dbapi_connection.isolation_level is None  # pysqlite's autocommit
    return dbapi_connection.autocommit  # psycopg


@pytest.mark.parametrize("method", ["GET", "HEAD"])
def test_reading_the_own_account_is_one_statement_in_autocommit(app, client, auth, method):
    _, pair = auth.user()

    with statements(app) as seen:
        response = client.open("/users/me", method=method, headers=bearer(pair["access_token"]))

    assert response.status_code == 200
    assert seen == [("SELECT", True)]


def test_listing_sessions_reads_in_autocommit(app, client, auth):
    _, pair = auth.user()

    with statements(app) as seen:
        response = client.get("/auth/sessions", headers=bearer(pair["access_token"]))

    assert response.status_code == 200
    assert seen and all(autocommit for _, autocommit in seen), seen


def test_refresh_writes_in_a_transaction_and_loads_nothing_after_its_commit(app, client, auth):
    _, pair = auth.user()

    with statements(app) as seen:
        response = client.post("/auth/refresh", headers=bearer(pair["refresh_token"]))

    assert response.status_code == 200
    # The compare-and-swap of the session, holding the account to its rules
    # in the same statement; nothing after the commit.
    assert seen == [("UPDATE", False)]


def test_a_write_after_reads_on_the_same_connection_has_its_transaction(app, client, auth):
    # One pooled connection serves the GETs and then the POST: the reads'
    # autocommit must not stay on it.
    _, pair = auth.user()
    for _ in range(3):
        assert client.get("/users/me", headers=bearer(pair["access_token"])).status_code == 200

    with statements(app) as seen:
        response = client.post("/auth/refresh", headers=bearer(pair["refresh_token"]))

    assert response.status_code == 200
    assert seen == [("UPDATE", False)]


def test_login_loads_nothing_after_its_commit(app, client, auth):
    user = auth.register()
    # A user's first login reads its revocation state (one SELECT) to write
    # its user key; later logins find it there.
    auth.login(user["username"])

    with statements(app) as seen:
        auth.login(user["username"])

    # The user, its compare-and-swap, the session, the cap on the user's
    # device tokens, the new one and the login.succeeded event: one INSERT
    # more than before the audit trail, in the same transaction.
    assert [kind for kind, _ in seen] == ["SELECT", "UPDATE", "INSERT", "DELETE", "INSERT", "INSERT"]
    assert not any(autocommit for _, autocommit in seen)


# Views that read no database through the session: they need no mark.
READS_NO_DATABASE = {
    "static", "api-docs.openapi_json", "api-docs.openapi_swagger_ui", "docs_assets.asset",
}


def test_every_get_view_is_marked_read_only_or_reads_no_database(app):
    for rule in app.url_map.iter_rules():
        if "GET" not in rule.methods or rule.endpoint in READS_NO_DATABASE:
            continue
        view = app.view_functions[rule.endpoint]
        assert getattr(view, READ_ONLY_MARK, False), rule.endpoint


def test_an_unmarked_get_keeps_its_transaction(make_app):
    # Autocommit is a view's own statement, never a guess from the method: a
    # GET that writes would otherwise lose its transaction.
    app = make_app()

    @app.get("/count-users")
    def count_users():
        return {"users": db.session.scalar(select(func.count()).select_from(User))}

    with statements(app) as seen:
        response = app.test_client().get("/count-users")

    assert response.status_code == 200
    assert seen == [("SELECT", False)]
