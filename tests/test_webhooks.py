"""Webhooks (API.md §10) in process, on SQLite and PostgreSQL, against a real
HTTP receiver that verifies each delivery with ``standardwebhooks``: the
outbox written with the event (and rolled back with it), WEBHOOK_EVENTS,
several URLs, the exact body and headers, retries with doubling backoff
against a receiver that fails, times out, redirects or refuses connections
(the worker's clock moved, not slept on), ``webhooks status``, the metrics,
the purge, and no secret anywhere. The delivery processes as real
subprocesses: test_webhook_worker.py; start-up and operating them:
test_webhook_setup.py."""

import logging
import math
from datetime import timedelta

import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from authapi.extensions import db
from authapi.models import SecurityEvent, User, WebhookDelivery, utcnow
from authapi.services import events
from authapi.webhooks.worker import Worker

from .clients import PASSWORD, AuthActions, bearer
from .events_helpers import make_admin
from .webhook_helpers import app, receiver  # noqa: F401 (fixtures)
from .webhook_helpers import (
    SECRET, SETTINGS, Clock, add_event, closed_url, deliver, deliveries, metric_values,
)


# ---------------------------------------------------------------- the outbox


def test_a_change_is_delivered_signed_with_the_exact_body_and_headers(app, client, auth, receiver):
    admin = make_admin(app, auth)
    listed = client.get("/events", headers=admin["headers"], query_string={"type": "user.registered"})
    registered = listed.get_json()["items"][0]
    _, clock = deliver(app)

    got = {d["headers"]["webhook-id"]: d for d in receiver.wait_for(len(deliveries(app)))}
    delivery = got[registered["id"]]  # verified by the receiver with Webhook.verify
    assert delivery["path"] == "/hooks"
    assert delivery["headers"]["content-type"] == "application/json"
    assert delivery["headers"]["webhook-timestamp"] == str(math.floor(clock.now.timestamp()))
    assert delivery["headers"]["webhook-signature"].startswith("v1,")
    assert delivery["message"] == {"type": "user.registered", "timestamp": registered["occurred_at"],
                                   "data": registered}
    (row,) = [row for row in deliveries(app) if row.event_id == registered["id"]]
    assert (row.status, row.attempts, row.last_status_code, row.last_error) == ("delivered", 1, 204, None)
    assert row.delivered_at == clock.now and row.claimed_until is None


def test_without_webhook_urls_nothing_is_written(make_app):
    app = make_app()
    AuthActions(app.test_client()).user()
    with app.app_context():
        assert db.session.scalar(select(SecurityEvent.id)) is not None
    assert deliveries(app) == []


def test_webhook_events_selects_exact_types_and_prefixes(make_app, receiver):
    app = make_app(WEBHOOK_URLS=receiver.url, WEBHOOK_EVENTS="login.*,user.deleted", **SETTINGS)
    client = app.test_client()
    client.post("/auth/register", json={"email": "ada@example.com", "username": "ada", "password": PASSWORD})
    pair = client.post("/auth/login", json={"username": "ada", "password": PASSWORD}).get_json()
    client.post("/auth/login", json={"username": "ada", "password": "not the password at all"})
    client.post("/auth/logout", headers=bearer(pair["access_token"]))
    client.delete("/users/me", headers=bearer(client.post("/auth/login", json={
        "username": "ada", "password": PASSWORD}).get_json()["access_token"]), json={"password": PASSWORD})

    with app.app_context():
        delivered = {row.event.type for row in db.session.scalars(select(WebhookDelivery))}
        recorded = set(db.session.scalars(select(SecurityEvent.type)))
    assert {"user.registered", "session.ended"} <= recorded
    assert delivered == {"login.succeeded", "login.failed", "user.deleted"}


def test_each_url_gets_each_event_once(make_app, receiver):
    urls = [receiver.url + "/first", receiver.url + "/second?token=abc"]
    app = make_app(WEBHOOK_URLS=",".join(urls), **SETTINGS)
    ids = [add_event(app) for _ in range(3)]

    deliver(app)

    got = receiver.wait_for(6)
    assert sorted((d["path"], d["headers"]["webhook-id"]) for d in got) == sorted(
        (path, event_id) for path in ("/first", "/second?token=abc") for event_id in ids)
    assert {row.status for row in deliveries(app)} == {"delivered"}


def test_a_rolled_back_change_leaves_no_delivery(app, auth):
    auth.register(username="ada")
    before = deliveries(app)
    with app.app_context():
        events.record("user.updated", user_id=None)
        # Inside the transaction, the delivery is there beside the event.
        assert db.session.scalar(select(func.count()).select_from(WebhookDelivery)) == len(before) + 1
        db.session.rollback()
        # A change the database refuses at commit (a taken email, past the
        # service's pre-check): its event and deliveries go with it.
        events.record("user.created", user_id=None, data={"role": "user"})
        db.session.add(User(email="ada@example.com", username="other", password_hash="x"))
        with pytest.raises(IntegrityError):
            db.session.commit()
        db.session.rollback()
    assert [row.id for row in deliveries(app)] == [row.id for row in before]


def test_purging_an_event_deletes_its_deliveries(make_app, receiver):
    app = make_app(WEBHOOK_URLS=receiver.url, EVENT_RETENTION_DAYS=1, **SETTINGS)
    old, kept = add_event(app), add_event(app)
    with app.app_context():
        db.session.get(SecurityEvent, old).occurred_at = utcnow() - timedelta(days=2)
        db.session.commit()
        assert events.purge_expired() == 1
    assert [row.event_id for row in deliveries(app)] == [kept]


# ---------------------------------------------------------------- failing receivers


def failing(receiver, how) -> str:
    """The URL of a receiver that fails ``how``."""
    if how == "refused":
        return closed_url()
    if how == "times-out":
        receiver.delay = 1.5  # past WEBHOOK_TIMEOUT (1 s)
    elif how == "redirects":
        receiver.status, receiver.location = 307, receiver.url + "/elsewhere"
    else:
        receiver.status = 500
    return receiver.url + "/hooks"


@pytest.mark.parametrize("how, status_code, error", [
    ("answers-500", 500, "status 500"),
    ("times-out", None, "timeout"),
    ("refused", None, "connection failed"),
    ("redirects", 307, "redirect 307 (not followed)"),
])
def test_a_failing_receiver_is_retried_with_doubling_backoff_then_failed(make_app, receiver, how, status_code, error):
    app = make_app(WEBHOOK_URLS=failing(receiver, how), **SETTINGS)
    event_id = add_event(app)
    clock = Clock()
    worker = Worker(app, clock=clock)
    attempted_at, schedule = [], []

    for _ in range(4):  # WEBHOOK_MAX_ATTEMPTS
        attempted_at.append(clock.now)
        assert worker.deliver_due() == 1
        (row,) = deliveries(app)
        assert (row.attempts, row.last_status_code, row.last_error) == (len(attempted_at), status_code, error)
        assert worker.deliver_due() == 0  # nothing due before the backoff has passed
        if row.status == "pending":
            schedule.append(row.next_attempt_at - clock.now)
            clock.now = row.next_attempt_at

    assert schedule == [timedelta(seconds=s) for s in (1, 2, 4)]
    assert (row.status, row.delivered_at, row.claimed_until) == ("failed", None, None)
    clock.advance(3600)
    assert worker.deliver_due() == 0  # failed is final (and kept)
    if how != "refused":
        got = receiver.wait_for(4)
        assert [d["headers"]["webhook-id"] for d in got] == [event_id] * 4
        assert [d["headers"]["webhook-timestamp"] for d in got] == [
            str(math.floor(moment.timestamp())) for moment in attempted_at]
        assert len({d["raw"] for d in got}) == 1
        assert all(d["path"] == "/hooks" for d in got)  # a redirect is not followed


def test_a_receiver_that_recovers_gets_the_delivery(app, receiver):
    receiver.status = 503
    add_event(app)
    worker, clock = deliver(app)
    receiver.status = 200
    clock.advance(1)

    assert worker.deliver_due() == 1

    (row,) = deliveries(app)
    assert (row.status, row.attempts, row.last_status_code) == ("delivered", 2, 200)


# ---------------------------------------------------------------- status, metrics


def test_status_and_metrics_count_every_outcome(app, receiver, runner):
    client = app.test_client()
    before = metric_values(client)
    add_event(app)
    deliver(app)  # delivered
    receiver.status = 500
    add_event(app)
    worker, clock = deliver(app)  # retry
    for _ in range(3):
        clock.advance(3600)
        worker.deliver_due()  # retry, retry, failed
    add_event(app)  # pending

    result = runner.invoke(args=["webhooks", "status"])

    assert result.exit_code == 0, result.output
    assert result.output == "Webhook deliveries: 1 pending, 1 delivered, 1 failed.\n"
    after = metric_values(client)
    delta = {key: after[key] - before.get(key, 0) for key in after}
    outcome = "authapi_webhook_deliveries_total"
    assert delta[(outcome, (("outcome", "delivered"),))] == 1
    assert delta[(outcome, (("outcome", "retry"),))] == 3
    assert delta[(outcome, (("outcome", "failed"),))] == 1
    assert after[("authapi_webhook_backlog", ())] == 1


def test_no_secret_in_any_delivery_row_or_log(app, receiver, caplog):
    receiver.status = 500
    add_event(app)
    caplog.set_level(logging.DEBUG)
    worker, clock = deliver(app)
    clock.advance(1)
    receiver.status = 200
    worker.deliver_due()

    key = SECRET.removeprefix("whsec_")
    with app.app_context():
        rows = db.session.execute(select(WebhookDelivery.__table__)).all()
    text = repr(rows) + caplog.text
    assert "delivered" in caplog.text and "status 500" in caplog.text
    assert key not in text and key[:16] not in text
