"""Faults against a real gunicorn: Redis stopped and started again, PostgreSQL
connections killed or the database restarted, slow clients and oversized headers. The app must fail
closed (503, never 200 or 500 for a token it cannot check) and serve again
without a restart."""

import os
import shutil
import socket
import tempfile
import threading
import time
import uuid
from pathlib import Path

import jwt
import pytest
import requests
import sqlalchemy as sa
from sqlalchemy import select

from authapi import create_app
from authapi.extensions import db
from authapi.models import AuthSession, User

from .conftest import PASSWORD, PG_ADMIN_URL, LiveAuth, Server, base_env, bearer, require_service
from .servers import PrivatePostgres, PrivateRedis, postgres_bin

APP_NAME = "authapi-fault-tests"  # application_name of the server's connections


@pytest.fixture(scope="module")
def private_redis():
    server = PrivateRedis()
    server.start()
    yield server
    if server.running():
        server.kill()


@pytest.fixture(scope="module")
def server(serve, private_redis, postgres_url):
    # Rate limits on, as in production, high enough never to bite here: their
    # Redis fails open while the token checks fail closed.
    return serve(
        workers=2,
        REDIS_URL=private_redis.url,
        DATABASE_URL=f"{postgres_url}?application_name={APP_NAME}",
        RATELIMIT_ENABLED="true",
        RATELIMIT_DEFAULT="100000 per minute",
        RATELIMIT_LOGIN="100000 per minute",
        RATELIMIT_REGISTER="100000 per minute",
    )


@pytest.fixture
def url(server, private_redis):
    if not private_redis.running():  # a failed test left it down
        private_redis.start()
    return server.url


def me(url, pair):
    return requests.get(url + "/users/me", headers=bearer(pair["access_token"]), timeout=30)


def workers_of(server) -> set[str]:
    pid = server.process.pid
    return set(Path(f"/proc/{pid}/task/{pid}/children").read_text().split())


def terminate_app_connections() -> int:
    engine = sa.create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            return len(conn.execute(sa.text(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = :name"
            ), {"name": APP_NAME}).all())
    finally:
        engine.dispose()


# ---------------------------------------------------------------- Redis


def token_requests(pair: dict, session_id: str):
    """Every kind of token-protected request, as (method, path, headers, json)."""
    access, refresh = bearer(pair["access_token"]), bearer(pair["refresh_token"])
    return [
        ("GET", "/users/me", access, None),
        ("PATCH", "/users/me", access, {"full_name": "Changed While Redis Was Down"}),
        ("GET", "/auth/sessions", access, None),
        ("DELETE", f"/auth/sessions/{session_id}", access, None),
        ("POST", "/auth/refresh", refresh, None),
        ("POST", "/auth/logout", access, None),
        ("POST", "/auth/logout-all", access, None),
        ("POST", "/auth/email/verify/request", access, None),
        ("POST", "/auth/password/change", access,
         {"current_password": PASSWORD, "new_password": "another long passphrase here"}),
        ("DELETE", "/users/me", access, {"password": PASSWORD}),
    ]


def test_redis_down_fails_closed_and_recovers_without_restart(server, url, private_redis):
    _, pair = LiveAuth(url).user("f")
    session_id = jwt.decode(pair["access_token"], options={"verify_signature": False})["sid"]
    assert me(url, pair).status_code == 200

    private_redis.kill()

    # Each request twice, so both workers answer.
    for method, path, headers, body in token_requests(pair, session_id) * 2:
        response = requests.request(method, url + path, headers=headers, json=body, timeout=30)
        assert response.status_code == 503, (method, path, response.status_code, response.text)
        assert response.json()["error"]["code"] == "service_unavailable"
    time.sleep(1.1)  # past a readiness answer made before the kill (reused for 1 s)
    ready = requests.get(url + "/health/ready", timeout=30)
    assert ready.status_code == 503
    assert ready.json()["checks"] == {"database": "ok", "redis": "error"}
    assert requests.get(url + "/health/live", timeout=30).status_code == 200

    private_redis.start()

    statuses = []
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and statuses[-4:] != [200] * 4:
        statuses.append(me(url, pair).status_code)
    assert statuses[-4:] == [200] * 4, statuses
    assert set(statuses) <= {200, 503}, statuses
    # Nothing was changed while the checks could not be made.
    assert me(url, pair).json()["full_name"] is None
    time.sleep(1.1)  # past the readiness answer made while Redis was down (reused for 1 s)
    assert requests.get(url + "/health/ready", timeout=30).status_code == 200
    assert requests.post(url + "/auth/logout", headers=bearer(pair["access_token"]), timeout=30).status_code == 200
    assert me(url, pair).status_code == 401


# ---------------------------------------------------------------- PostgreSQL


def test_killed_database_connections_are_replaced_without_restart(url):
    _, pair = LiveAuth(url).user("f")
    for _ in range(8):  # a pooled connection in each worker
        assert me(url, pair).status_code == 200

    assert terminate_app_connections() > 0

    statuses = [me(url, pair).status_code for _ in range(20)]
    assert set(statuses) <= {200, 503}, statuses
    assert statuses.count(503) <= 2, statuses
    assert statuses[-10:] == [200] * 10, statuses


# Long on purpose: the writers, the killer and the final consistency check
# share one timeline; split up, the check would no longer see the kills.
def test_connections_killed_under_writes_leave_no_half_written_account(url, postgres_url, redis_url):
    outcomes = []  # (username, register status, login status, token pair or None)
    stop = threading.Event()

    def client(index):
        n = 0
        while not stop.is_set():
            n += 1
            name = f"k{index}x{n}x{uuid.uuid4().hex[:8]}"
            try:
                registered = requests.post(url + "/auth/register", json={
                    "email": f"{name}@example.com", "username": name, "password": PASSWORD}, timeout=30)
                logged_in = requests.post(url + "/auth/login", json={"username": name, "password": PASSWORD},
                                          timeout=30)
            except requests.RequestException as exc:
                outcomes.append((name, repr(exc), None, None))
                continue
            pair = logged_in.json() if logged_in.status_code == 200 else None
            outcomes.append((name, registered.status_code, logged_in.status_code, pair))

    threads = [threading.Thread(target=client, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    killed = 0
    for _ in range(6):
        time.sleep(0.5)
        killed += terminate_app_connections()
    stop.set()
    for thread in threads:
        thread.join()

    assert killed > 0
    statuses = {s for _, registered, logged_in, _ in outcomes for s in (registered, logged_in)}
    assert statuses <= {201, 200, 401, 503}, outcomes  # 401: login after a failed registration
    assert any(registered == 201 for _, registered, _, _ in outcomes)
    _, pair = LiveAuth(url).user("f")
    assert me(url, pair).status_code == 200

    app = create_app("testing", environ=base_env(postgres_url, redis_url))
    with app.app_context():
        for name, registered, logged_in, pair in outcomes:
            user = db.session.scalar(select(User).where(User.username == name))
            if registered == 201:
                assert user is not None, name
            if user is not None:
                # Whatever the client was told, a row is a whole account.
                assert user.password_hash.startswith("$argon2"), name
                assert user.email == f"{name}@example.com" and user.role == "user" and user.is_active
            elif logged_in == 200:
                pytest.fail(f"{name} logged in without an account")
            if pair is not None:
                claims = jwt.decode(pair["access_token"], options={"verify_signature": False})
                session = db.session.get(AuthSession, claims["sid"])
                assert session is not None and session.user_id == user.id == int(claims["sub"]), name


# ---------------------------------------------------------------- slow and oversized clients


def test_slow_clients_are_dropped_and_do_not_take_a_worker_down(server, url):
    workers = workers_of(server)
    slow = []
    # As many as the server has threads (2 workers x 4): half a request each, then silence.
    for _ in range(8):
        sock = socket.create_connection(("127.0.0.1", server.port))
        sock.sendall(b"GET /users/me HTTP/1.1\r\nHost: localhost\r\nX-Slow: ")
        slow.append(sock)
    try:
        # gunicorn.conf.py: a connection silent for 5 s mid-request is closed
        # (without that, gunicorn would wait on it for as long as it stays open).
        for sock in slow:
            # A worker may have taken more of them than it has threads: those
            # wait their turn, then their own 5 s.
            sock.settimeout(25)
            assert sock.recv(1024) == b""
    finally:
        for sock in slow:
            sock.close()
    assert requests.get(url + "/health/live", timeout=3).status_code == 200
    assert workers_of(server) == workers


@pytest.mark.parametrize("headers, path, status", [
    ({"X-Big": "a" * 9000}, "/health/live", 431),
    ({f"X-Many-{i}": "1" for i in range(120)}, "/health/live", 431),
    ({}, "/health/live?" + "q" * 5000, 414),
], ids=["long-field", "many-fields", "long-request-line"])
def test_oversized_requests_are_refused_without_taking_a_worker_down(server, url, headers, path, status):
    workers = workers_of(server)
    assert requests.get(url + path, headers=headers, timeout=10).status_code == status
    assert requests.get(url + "/health/live", timeout=10).status_code == 200
    assert workers_of(server) == workers


# ---------------------------------------------------------------- database restarted


@pytest.fixture(scope="module")
def private_postgres():
    problem = None
    if postgres_bin() is None:
        problem = "initdb and pg_ctl not found"
    elif os.geteuid() == 0 and not shutil.which("runuser"):
        problem = "running as root without runuser"
    require_service("a private PostgreSQL cluster", problem)
    # Not under pytest's own temporary directory: that one is private to this
    # user, and the cluster runs as postgres when the tests run as root.
    base = Path(tempfile.mkdtemp(prefix="authapi-pg-"))
    base.chmod(0o755)
    cluster = PrivatePostgres(base).init()
    cluster.pg_ctl("start")
    yield cluster
    cluster.pg_ctl("-m", "immediate", "stop")
    shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="module")
def restartable(private_postgres, private_redis, tmp_path_factory):
    env = base_env(private_postgres.url, private_redis.url)
    server = Server(env, tmp_path_factory.mktemp("gunicorn") / "gunicorn.log", workers=2)
    server.migrate().start()
    yield server
    server.stop()


def test_database_restart_is_survived_without_restarting_the_app(restartable, private_postgres, private_redis):
    if not private_redis.running():
        private_redis.start()
    url = restartable.url
    _, pair = LiveAuth(url).user("f")
    for _ in range(8):
        assert me(url, pair).status_code == 200

    private_postgres.pg_ctl("-m", "fast", "stop")
    try:
        for _ in range(4):
            down = me(url, pair)
            assert down.status_code == 503 and down.json()["error"]["code"] == "service_unavailable"
        ready = requests.get(url + "/health/ready", timeout=30)
        assert ready.status_code == 503 and ready.json()["checks"]["database"] == "error"
    finally:
        private_postgres.pg_ctl("start")

    statuses = [me(url, pair).status_code for _ in range(20)]
    assert set(statuses) <= {200, 503}, statuses
    assert statuses.count(503) <= 2, statuses
    assert statuses[-10:] == [200] * 10, statuses
    _, fresh = LiveAuth(url).user("f")
    assert me(url, fresh).status_code == 200
