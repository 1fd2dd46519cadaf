"""Fixtures: apps on SQLite and PostgreSQL against real Redis, clients, an
``auth`` helper, and a real gunicorn for the tests that need one.

Services come from TEST_DATABASE_URL (PostgreSQL) and TEST_REDIS_URL. Where one
is unreachable its tests skip with the reason, except under CI=true, where a
missing service fails the run.
"""

import asyncio
import email
import email.policy
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import redis
import requests
import sqlalchemy as sa

from authapi import create_app, mail
from authapi.extensions import db

ROOT = Path(__file__).resolve().parent.parent
IN_CI = os.environ.get("CI", "").lower() == "true"
PG_ADMIN_URL = os.environ.get("TEST_PG_ADMIN_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
PG_DATABASE = os.environ.get("TEST_PG_DATABASE", "authapi_test")
REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
PASSWORD = "correct horse battery staple"


def require_service(name: str, problem: str | None):
    """Skip (laptop) or fail (CI) when a backing service is missing."""
    if problem is None:
        return
    message = f"{name} is unavailable: {problem}"
    if IN_CI:
        pytest.fail(f"{message} (CI=true: services are required)", pytrace=False)
    pytest.skip(message)


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


def base_env(database_url: str, redis_url: str | None, **extra) -> dict:
    env = {
        "AUTHAPI_ENV": "testing",
        "DATABASE_URL": database_url,
        "SECRET_KEY": "test-secret-key-" + "x" * 32,
        "JWT_SECRET_KEY": "test-jwt-secret-key-" + "y" * 32,
        "RATELIMIT_ENABLED": "false",
    }
    if redis_url:
        env["REDIS_URL"] = redis_url
    env.update({k: str(v) for k, v in extra.items()})
    return env


def reset_database(app):
    with app.app_context():
        if db.engine.dialect.name == "postgresql":
            with db.engine.begin() as conn:
                conn.execute(sa.text("TRUNCATE users, sessions RESTART IDENTITY CASCADE"))
        else:
            with db.engine.begin() as conn:
                for table in reversed(db.metadata.sorted_tables):
                    conn.execute(table.delete())


def migrate(app):
    from flask_migrate import upgrade

    with app.app_context():
        upgrade()


@pytest.fixture(scope="session")
def sqlite_url(tmp_path_factory):
    return f"sqlite:///{tmp_path_factory.mktemp('db') / 'authapi.db'}"


@pytest.fixture(scope="session", params=["sqlite", "postgresql"])
def database_url(request, sqlite_url):
    if request.param == "sqlite":
        return sqlite_url
    return request.getfixturevalue("postgres_url")


_migrated: set[str] = set()


@pytest.fixture
def make_app(database_url, redis_url):
    """Build an app on this test's database and the test Redis, with extra
    environment settings. The schema comes from the migrations, once per database."""
    client = redis.Redis.from_url(redis_url)
    apps = []

    def factory(**extra):
        app = create_app("testing", environ=base_env(database_url, redis_url, **extra))
        if database_url not in _migrated:
            migrate(app)
            _migrated.add(database_url)
        apps.append(app)
        return app

    client.flushdb()
    reset_database(factory())
    yield factory
    # Emails are sent by background jobs: let them finish before the next test
    # reuses the ids they refer to.
    mail.wait_for_background_jobs()
    client.flushdb()
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


class AuthActions:
    """Register and log in users through the API, the way a client would."""

    def __init__(self, client):
        self.client = client
        self.count = 0

    def register(self, username=None, email=None, password=PASSWORD, **extra):
        self.count += 1
        username = username or f"user{self.count}"
        email = email or f"{username}@example.com"
        response = self.client.post(
            "/auth/register",
            json={"email": email, "username": username, "password": password, **extra},
        )
        assert response.status_code == 201, response.get_json()
        return response.get_json()

    def login(self, username, password=PASSWORD, **kwargs):
        response = self.client.post(
            "/auth/login", json={"username": username, "password": password}, **kwargs
        )
        assert response.status_code == 200, response.get_json()
        return response.get_json()

    def user(self, **kwargs):
        """A registered, logged-in user: (user json, token pair)."""
        user = self.register(**kwargs)
        return user, self.login(user["username"], kwargs.get("password", PASSWORD))


def bearer(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def auth(client):
    return AuthActions(client)


# ---------------------------------------------------------------- real SMTP


class Inbox:
    """An aiosmtpd handler that keeps what it receives; ``delay`` slows it down."""

    def __init__(self):
        self.messages = []
        self.delay = 0.0
        self.port = None
        self._changed = threading.Condition()

    async def handle_DATA(self, server, session, envelope):
        if self.delay:
            await asyncio.sleep(self.delay)
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        with self._changed:
            self.messages.append(message)
            self._changed.notify_all()
        return "250 Message accepted for delivery"

    def wait_for(self, to, subject=None, count=1, timeout=10.0):
        """The messages to ``to`` (and ``subject``), once there are ``count``."""

        def matching():
            return [
                m for m in self.messages
                if m["To"] == to and (subject is None or m["Subject"] == subject)
            ]

        with self._changed:
            self._changed.wait_for(lambda: len(matching()) >= count, timeout=timeout)
            found = matching()
        assert len(found) >= count, f"expected {count} email(s) to {to}, got {len(found)}"
        return found


@pytest.fixture
def smtp_server():
    from aiosmtpd.controller import Controller

    inbox = Inbox()
    inbox.port = free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=inbox.port)
    controller.start()
    yield inbox
    controller.stop()


# ---------------------------------------------------------------- real gunicorn


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Server:
    """``gunicorn wsgi:app`` in a subprocess, configured only by environment."""

    def __init__(self, env: dict, log_path: Path, workers: int = 4):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {**os.environ, **env}
        self.workers = workers
        self.log_path = log_path
        self.process = None

    def migrate(self):
        # Exactly as an operator would.
        subprocess.run(
            [sys.executable, "-m", "flask", "--app", "wsgi", "db", "upgrade"],
            cwd=ROOT, env=self.env, check=True, capture_output=True,
        )
        return self

    def start(self):
        log = open(self.log_path, "w")
        self.process = subprocess.Popen(
            [
                sys.executable, "-m", "gunicorn", "wsgi:app",
                "--bind", f"127.0.0.1:{self.port}",
                "--workers", str(self.workers),
                "--worker-class", "gthread", "--threads", "4",
            ],
            cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT,
        )
        log.close()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"gunicorn exited: {self.log_path.read_text()}")
            try:
                requests.get(self.url + "/auth/sessions", timeout=1)
                return self
            except requests.ConnectionError:
                time.sleep(0.2)
        self.stop()
        raise RuntimeError("gunicorn did not start in 30 s")

    def stop(self):
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()


@pytest.fixture(scope="module")
def gunicorn_server(database_url, redis_url, tmp_path_factory):
    """A real gunicorn with several workers on this module's database."""
    client = redis.Redis.from_url(redis_url)
    client.flushdb()
    env = base_env(database_url, redis_url)
    server = Server(env, tmp_path_factory.mktemp("gunicorn") / "gunicorn.log").migrate()
    _migrated.add(database_url)
    reset_database(create_app("testing", environ=env))
    server.start()
    yield server
    server.stop()
    client.flushdb()


@pytest.fixture(scope="module")
def serve(postgres_url, redis_url, tmp_path_factory):
    """Start real gunicorns on PostgreSQL and the test Redis with extra
    settings: ``serve(workers=2, **env)``. All stop when the module ends."""
    servers = []

    def start(workers: int = 2, **extra):
        if postgres_url not in _migrated:
            migrate(create_app("testing", environ=base_env(postgres_url, redis_url)))
            _migrated.add(postgres_url)
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
