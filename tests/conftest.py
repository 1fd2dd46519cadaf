"""Fixtures: apps on SQLite and PostgreSQL against real Redis, clients, a CLI
runner, an ``auth`` helper, and real gunicorns for the tests that need one.

Services come from TEST_PG_ADMIN_URL/TEST_PG_DATABASE (PostgreSQL) and
TEST_REDIS_URL. Where one is unreachable its tests skip with the reason, except
under CI=true, where a missing service fails the run. The processes themselves
(gunicorn, SMTP, nginx, a browser) are in servers.py, nginx_server.py and
browser.py.
"""

import os
import signal
from contextlib import contextmanager

import pytest
import redis
import sqlalchemy as sa

from authapi import create_app, mail
from authapi.extensions import db

# Re-exported: test modules import these from here (``from .conftest import ...``).
from .clients import (  # noqa: F401
    PASSWORD, AuthActions, LiveAuth, assert_refused, bearer, claims_of, error_code, me,
    post_login, refresh, sign,
)
from .servers import (  # noqa: F401
    IN_CI, ROOT, Inbox, Server, base_env, free_port, require_service, running_inbox, token_from,
)

PG_ADMIN_URL = os.environ.get("TEST_PG_ADMIN_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
PG_DATABASE = os.environ.get("TEST_PG_DATABASE", "authapi_test")
REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/15")


# ---------------------------------------------------------------- services


def _probe_redis() -> str | None:
    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=1).ping()
    except redis.RedisError as exc:
        return f"{REDIS_URL}: {exc}"
    return None


def _pg_url(database: str) -> str:
    return PG_ADMIN_URL.rsplit("/", 1)[0] + "/" + database


def _probe_postgres() -> str | None:
    try:
        engine = sa.create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
        with engine.connect() as conn:
            exists = conn.scalar(
                sa.text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": PG_DATABASE}
            )
            if not exists:
                conn.execute(sa.text(f'CREATE DATABASE "{PG_DATABASE}"'))
        engine.dispose()
    except Exception as exc:  # any driver or network failure means "not here"
        return f"{PG_ADMIN_URL}: {type(exc).__name__}: {exc}".splitlines()[0]
    return None


@pytest.fixture(scope="session")
def redis_url():
    require_service("Redis", _probe_redis())
    return REDIS_URL


@pytest.fixture(scope="session")
def postgres_url():
    require_service("PostgreSQL", _probe_postgres())
    return _pg_url(PG_DATABASE)


def flush_redis(url: str):
    redis.Redis.from_url(url).flushdb()


# ---------------------------------------------------------------- databases


def reset_database(app):
    with app.app_context():
        if db.engine.dialect.name == "postgresql":
            with db.engine.begin() as conn:
                # The events name users by id, without a foreign key: the
                # cascade from users does not reach them.
                conn.execute(sa.text("TRUNCATE users, sessions, security_events RESTART IDENTITY CASCADE"))
        else:
            with db.engine.begin() as conn:
                for table in reversed(db.metadata.sorted_tables):
                    conn.execute(table.delete())


def migrate(app):
    from flask_migrate import upgrade

    with app.app_context():
        upgrade()


class Migrations:
    """Which databases the migrations have brought to head in this run, so each
    is migrated once, whichever fixture reaches it first."""

    def __init__(self):
        self._done: set[str] = set()

    def ensure(self, database_url: str, app_on_it):
        """Migrate ``database_url`` through ``app_on_it()`` unless done already."""
        if database_url not in self._done:
            migrate(app_on_it())
            self._done.add(database_url)

    def record(self, database_url: str):
        """``database_url`` was migrated another way (``flask db upgrade``)."""
        self._done.add(database_url)


@pytest.fixture(scope="session")
def migrations():
    return Migrations()


@pytest.fixture(scope="session")
def sqlite_url(tmp_path_factory):
    return f"sqlite:///{tmp_path_factory.mktemp('db') / 'authapi.db'}"


@pytest.fixture(scope="session", params=["sqlite", "postgresql"])
def database_url(request, sqlite_url):
    if request.param == "sqlite":
        return sqlite_url
    return request.getfixturevalue("postgres_url")


# ---------------------------------------------------------------- apps


@pytest.fixture
def make_app(database_url, redis_url, migrations):
    """Build an app on this test's database and the test Redis, with extra
    environment settings. The schema comes from the migrations, once per database."""
    apps = []

    def factory(**extra):
        app = create_app("testing", environ=base_env(database_url, redis_url, **extra))
        migrations.ensure(database_url, lambda: app)
        apps.append(app)
        return app

    flush_redis(redis_url)
    reset_database(factory())
    yield factory
    # Emails are sent by background jobs: let them finish before the next test
    # reuses the ids they refer to.
    mail.wait_for_background_jobs()
    flush_redis(redis_url)
    # Close each app's connection pool now rather than at some garbage
    # collection: several suites share one PostgreSQL and its max_connections.
    for app in apps:
        with app.app_context():
            for engine in db.engines.values():
                engine.dispose()


@pytest.fixture
def app(make_app):
    return make_app()


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def runner(app):
    # Click >= 8.2 keeps stdout and stderr apart in the result.
    return app.test_cli_runner()


@pytest.fixture
def auth(client):
    return AuthActions(client)


@pytest.fixture
def pair(auth):
    """A logged-in user's token pair."""
    return auth.user()[1]


# ---------------------------------------------------------------- real SMTP


@pytest.fixture
def smtp_server():
    with running_inbox() as inbox:
        yield inbox


def mail_settings(smtp_port: int) -> dict:
    """Settings that send the app's email to the test SMTP server on
    ``smtp_port``, with links to a front end at app.example.com."""
    return {
        "MAIL_BACKEND": "smtp",
        "SMTP_HOST": "127.0.0.1",
        "SMTP_PORT": smtp_port,
        "PASSWORD_RESET_URL": "https://app.example.com/reset?token={token}",
        "EMAIL_VERIFY_URL": "https://app.example.com/verify?token={token}",
    }


@pytest.fixture
def mail_app(make_app, smtp_server):
    """An app that sends its email to ``smtp_server``. Flows that mail one
    address twice in a row run with the resend cap off (the cap's own tests:
    test_email_limits.py)."""
    return make_app(
        MAIL_FROM="auth@example.com", EMAIL_RESEND_SECONDS=0, **mail_settings(smtp_server.port)
    )


# ---------------------------------------------------------------- real gunicorn


@contextmanager
def fresh_server(env: dict, tmp_path_factory, workers: int = 4):
    """A real gunicorn on ``env``: its database migrated the operator's way and
    emptied, its Redis flushed before and after. ``server.app`` is an app on
    the same settings, for reaching the database directly."""
    flush_redis(env["REDIS_URL"])
    server = Server(env, tmp_path_factory.mktemp("gunicorn") / "gunicorn.log", workers).migrate()
    server.app = create_app("testing", environ=env)
    reset_database(server.app)
    server.start()
    try:
        yield server
    finally:
        server.stop()
        flush_redis(env["REDIS_URL"])


@pytest.fixture(scope="module")
def gunicorn_server(database_url, redis_url, migrations, tmp_path_factory):
    """A real gunicorn with several workers on this module's database."""
    with fresh_server(base_env(database_url, redis_url), tmp_path_factory) as server:
        migrations.record(database_url)
        yield server


@pytest.fixture(scope="module")
def serve(postgres_url, redis_url, migrations, tmp_path_factory):
    """Start real gunicorns on PostgreSQL and the test Redis with extra
    settings: ``serve(workers=2, **env)``. All stop when the module ends."""
    servers = []

    def start(workers: int = 2, **extra):
        migrations.ensure(
            postgres_url, lambda: create_app("testing", environ=base_env(postgres_url, redis_url))
        )
        env = base_env(postgres_url, redis_url, **extra)
        log_path = tmp_path_factory.mktemp("gunicorn") / "gunicorn.log"
        server = Server(env, log_path, workers=workers)
        servers.append(server)
        return server.start()

    yield start
    # Quick shutdown of all at once (SIGQUIT): a graceful one waits on idle workers.
    for server in servers:
        if server.process and server.process.poll() is None:
            server.process.send_signal(signal.SIGQUIT)
    for server in servers:
        server.stop()
