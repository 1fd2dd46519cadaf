"""/health/ready under load (issue 13, finding 12): concurrent probes share one
check, counted for real on the database (a SQLAlchemy event listener) and on a
Redis of the test's own (its command statistics), and a failure or a recovery
is still reported within about READY_TTL."""

import threading
import time

import pytest
import redis
import sqlalchemy as sa

from authapi.extensions import db

from authapi import create_app

from .conftest import base_env
from .test_faults import private_redis  # noqa: F401  a fixture
from .test_health import silent_port  # noqa: F401  a fixture

PROBES = 16
# How long one readiness answer is reused (authapi.health.READY_TTL, "about a second").
READY_TTL = 1.0


@pytest.fixture(scope="session")
def database_url(postgres_url):
    return postgres_url


@pytest.fixture
def app(make_app, private_redis):  # noqa: F811
    if not private_redis.running():
        private_redis.start()
    return make_app(REDIS_URL=private_redis.url)


def select_ones(app) -> list:
    """A list that grows by one with every SELECT 1 the app's engine runs."""
    seen = []
    with app.app_context():
        engine = db.engine

    @sa.event.listens_for(engine, "before_cursor_execute")
    def count(conn, cursor, statement, parameters, context, executemany):
        if statement.strip().upper() == "SELECT 1":
            seen.append(statement)

    return seen


def pings(private_redis) -> int:
    stats = redis.Redis(port=private_redis.port).info("commandstats")
    return stats.get("cmdstat_ping", {}).get("calls", 0)


def probe_at_once(app, count: int) -> list:
    barrier = threading.Barrier(count)
    answers = [None] * count

    def probe(index):
        client = app.test_client()
        barrier.wait()
        answers[index] = client.get("/health/ready")

    threads = [threading.Thread(target=probe, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    return answers


def test_concurrent_probes_share_one_check(app, private_redis):
    # A first probe opens the pooled Redis connection (redis-py checks a new
    # one with a PING of its own); then past READY_TTL, nothing is cached.
    assert app.test_client().get("/health/ready").status_code == 200
    time.sleep(READY_TTL + 0.1)
    selects, pings_before = select_ones(app), pings(private_redis)

    answers = probe_at_once(app, PROBES)

    assert [a.status_code for a in answers] == [200] * PROBES
    assert all(a.get_json() == {"status": "ok", "checks": {"database": "ok", "redis": "ok"}}
               for a in answers)
    assert len(selects) == 1
    assert pings(private_redis) - pings_before == 1


def test_probes_after_the_ttl_check_again(app, private_redis):
    selects = select_ones(app)
    client = app.test_client()

    client.get("/health/ready")
    time.sleep(READY_TTL + 0.1)
    client.get("/health/ready")

    assert len(selects) == 2


def wait_for(client, status: int, within: float):
    """The first answer with ``status`` and when it came, or the last answer."""
    started = time.monotonic()
    while True:
        answer = client.get("/health/ready")
        elapsed = time.monotonic() - started
        if answer.status_code == status or elapsed > within:
            return answer, elapsed
        time.sleep(0.05)


def test_a_failure_and_a_recovery_are_seen_within_the_ttl(app, private_redis):
    client = app.test_client()
    assert client.get("/health/ready").status_code == 200

    private_redis.kill()
    down, took = wait_for(client, 503, within=READY_TTL + 1.5)

    assert down.status_code == 503, took
    assert down.get_json() == {"status": "error", "checks": {"database": "ok", "redis": "error"}}
    # The cached answer lives READY_TTL; the check that sees the failure is quick
    # (a refused connection), well under its 2 s deadline.
    assert took <= READY_TTL + 1.0

    private_redis.start()
    up, took = wait_for(client, 200, within=READY_TTL + 1.5)

    assert up.status_code == 200, took
    assert took <= READY_TTL + 1.0


def check_threads() -> int:
    return sum(1 for thread in threading.enumerate() if thread.name.endswith("(run)"))


def test_a_hung_database_holds_one_thread_however_often_probed(silent_port, redis_url):  # noqa: F811
    env = base_env(f"postgresql://postgres@127.0.0.1:{silent_port}/authapi", redis_url)
    client = create_app("testing", environ=env).test_client()
    before = check_threads()

    answers = []
    for _ in range(3):
        answers.append(client.get("/health/ready"))
        time.sleep(READY_TTL + 0.1)

    assert [a.get_json()["checks"]["database"] for a in answers] == ["error"] * 3
    # The first check's thread still hangs in connect; no later one was started.
    assert check_threads() - before == 1
