"""The delivery process as operators run it: the Procfile's ``worker:``
command in real subprocesses against PostgreSQL, delivering to a real
receiver that verifies every signature. Two processes deliver each event
exactly once; a killed process's claimed attempt is delivered by another
once the claim (WEBHOOK_TIMEOUT + 30 s) has expired; SIGTERM and SIGINT stop
it cleanly; it outlives its database; no secret in its output; and the
delivery latency (event committed -> receiver got it) under light load, with
PostgreSQL's NOTIFY and with SQLite's poll. In process: test_webhooks.py."""

import signal
import shutil
import statistics
import tempfile
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from sqlalchemy import update

from authapi import create_app
from authapi.extensions import db
from authapi.models import WebhookDelivery, utcnow
from authapi.services import events

from .conftest import migrate
from .servers import base_env
from .test_faults import private_postgres  # noqa: F401  a PostgreSQL of this module's own
from .webhook_helpers import app, receiver  # noqa: F401 (fixtures)
from .webhook_helpers import (
    SETTINGS, DeliveryProcess, add_event, add_events, assert_no_secret, deliveries, metric_values,
    settled, wait_until,
)


@pytest.fixture
def database_url(postgres_url):
    # Row locks (FOR UPDATE SKIP LOCKED) and NOTIFY are PostgreSQL's; SQLite's
    # latency is measured on a file of its own below.
    return postgres_url


@pytest.fixture
def delivery_process(database_url, redis_url, receiver, tmp_path):
    """Start delivery processes on the test's database: ``delivery_process(**settings)``."""
    started = []

    def start(database=None, **settings):
        env = base_env(database or database_url, redis_url, WEBHOOK_URLS=receiver.url + "/hooks",
                       **{**SETTINGS, **settings})
        process = DeliveryProcess(env, tmp_path / f"worker-{len(started)}.log")
        started.append(process)
        return process

    yield start
    for process in started:
        if process.process:
            process.stop()
        assert_no_secret(process.log())


# ---------------------------------------------------------------- several processes


def test_two_processes_deliver_each_event_exactly_once(app, receiver, delivery_process):
    before = metric_values(app.test_client())
    receiver.delay = 0.05  # long enough for both processes to be busy at once
    first, second = delivery_process().start(), delivery_process().start()
    ids = add_events(app, 40)

    receiver.wait_for(40, timeout=60)
    wait_until(lambda: settled(app, 40))

    assert receiver.ids() == {event_id: 1 for event_id in ids}
    assert {row.status for row in deliveries(app)} == {"delivered"}
    by_first, by_second = first.delivered_ids(), second.delivered_ids()
    assert by_first and by_second and not by_first & by_second
    assert by_first | by_second == set(ids)
    # /metrics of the web process counts what the other processes delivered.
    after = metric_values(app.test_client())
    key = ("authapi_webhook_deliveries_total", (("outcome", "delivered"),))
    assert after[key] - before.get(key, 0) == 40
    assert after[("authapi_webhook_backlog", ())] == 0


def test_a_killed_processs_claim_expires_then_another_delivers_it(app, receiver, delivery_process):
    receiver.hold = threading.Event()
    killed = delivery_process(WEBHOOK_TIMEOUT=2).start()
    event_id = add_event(app)
    (held,) = receiver.wait_for(1)

    killed.process.kill()
    killed.process.wait()
    receiver.hold.set()
    receiver.hold = None

    (row,) = deliveries(app)
    assert (row.status, row.attempts) == ("pending", 0)
    claimed_for = row.claimed_until - datetime.fromtimestamp(held["received_at"], timezone.utc)
    assert timedelta(seconds=31) < claimed_for <= timedelta(seconds=32)  # WEBHOOK_TIMEOUT + 30 s
    other = delivery_process(WEBHOOK_TIMEOUT=2)
    assert other.once() == "Made 0 delivery attempts.\n"  # the claim still stands

    with app.app_context():  # 32 seconds pass
        db.session.execute(update(WebhookDelivery).values(claimed_until=utcnow() - timedelta(seconds=1)))
        db.session.commit()
    assert other.once() == "Made 1 delivery attempts.\n"

    assert receiver.ids() == {event_id: 2}  # at least once: the same webhook-id again
    (row,) = deliveries(app)
    assert (row.status, row.attempts, row.claimed_until) == ("delivered", 1, None)


# ---------------------------------------------------------------- stopping


def test_sigterm_finishes_the_attempt_in_flight_and_starts_no_other(app, receiver, delivery_process):
    receiver.hold = threading.Event()
    process = delivery_process(WEBHOOK_TIMEOUT=10).start()
    first, *rest = add_events(app, 3)
    receiver.wait_for(1)

    process.process.send_signal(signal.SIGTERM)
    receiver.hold.set()

    assert process.process.wait(timeout=15) == 0
    assert "webhook delivery stopped" in process.log()
    assert receiver.ids() == {first: 1}
    rows = {row.event_id: row for row in deliveries(app)}
    assert (rows[first].status, rows[first].attempts) == ("delivered", 1)
    assert [(rows[i].status, rows[i].attempts, rows[i].claimed_until) for i in rest] == [("pending", 0, None)] * 2


@pytest.mark.parametrize("signal_number", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_an_idle_process_stops_cleanly_on_a_signal(delivery_process, signal_number):
    process = delivery_process().start()
    started = time.monotonic()

    process.process.send_signal(signal_number)

    assert process.process.wait(timeout=10) == 0
    assert time.monotonic() - started < 5
    assert "Traceback" not in process.log() and "webhook delivery stopped" in process.log()


# ---------------------------------------------------------------- the database going away


@pytest.fixture
def private_database(private_postgres, redis_url, receiver):  # noqa: F811
    """An app on the private PostgreSQL cluster, migrated, sending to ``receiver``."""
    app = create_app("testing", environ=base_env(private_postgres.url, redis_url,
                                                 WEBHOOK_URLS=receiver.url + "/hooks", **SETTINGS))
    migrate(app)
    yield app
    with app.app_context():
        db.engine.dispose()


def test_the_process_outlives_its_database(private_database, private_postgres, receiver, delivery_process):  # noqa: F811
    process = delivery_process(database=private_postgres.url).start()
    add_event(private_database)
    receiver.wait_for(1)
    wait_until(lambda: settled(private_database, 1))

    private_postgres.pg_ctl("-m", "fast", "stop")
    try:
        process.wait_for_log("database unavailable")
    finally:
        private_postgres.pg_ctl("start")
    with private_database.app_context():
        db.engine.dispose()  # the test's own pool held connections to the old server
    second = add_event(private_database)

    got = receiver.wait_for(2, timeout=60)
    assert got[-1]["headers"]["webhook-id"] == second
    wait_until(lambda: settled(private_database, 2))
    assert process.process.poll() is None
    process.process.send_signal(signal.SIGTERM)
    assert process.process.wait(timeout=15) == 0
    assert "Traceback" not in process.log()


# ---------------------------------------------------------------- latency


def measure_latency(app, receiver, count: int = 20) -> list[float]:
    """Seconds from each event's commit to its arrival, one event at a time.
    Light load: each event comes a while after the previous one arrived, the
    pauses spread over the poll's second so that every phase of it is met."""
    latencies = []
    for index in range(count):
        threading.Event().wait((index * 0.618) % 1.0)  # the load's shape, not a rule's time
        with app.app_context():
            events.record("user.updated", user_id=None)
            db.session.commit()
            committed = time.time()
        got = receiver.wait_for(index + 1)
        latencies.append(got[index]["received_at"] - committed)
    return latencies


def report(name: str, latencies: list[float]) -> float:
    median = statistics.median(latencies)
    print(f"\nwebhook delivery latency, {name}: median {median * 1000:.0f} ms, "
          f"max {max(latencies) * 1000:.0f} ms over {len(latencies)} events")
    return median


def test_delivery_latency_with_notify_on_postgresql(app, receiver, delivery_process):
    delivery_process().start()

    median = report("PostgreSQL (NOTIFY)", measure_latency(app, receiver))

    # Woken by the commit's NOTIFY, not by the 1 s poll.
    assert median < 0.25


def test_delivery_latency_with_the_poll_on_sqlite(redis_url, receiver, delivery_process):
    directory = Path(tempfile.mkdtemp(prefix="authapi-sqlite-"))
    try:
        url = f"sqlite:///{directory / 'authapi.db'}"
        app = create_app("testing", environ=base_env(url, redis_url, WEBHOOK_URLS=receiver.url + "/hooks",
                                                     **SETTINGS))
        migrate(app)
        delivery_process(database=url).start()

        latencies = measure_latency(app, receiver)

        # Found by the next look, within the 1 s poll.
        assert report("SQLite (1 s poll)", latencies) < 0.9
        assert max(latencies) < 1.5
    finally:
        shutil.rmtree(directory, ignore_errors=True)
