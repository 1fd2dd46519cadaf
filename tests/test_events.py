"""The audit trail's endpoints (API.md §10): GET /users/me/events and GET
/events, newest first, keyset paging by opaque cursor (also while events are
being written), filters, every refusal a 422 naming its parameter, the admin
guard, the purge, and the extension point the webhooks build on. Where the
events come from: test_event_sources.py, test_event_logins.py."""

import base64
import json
import threading
import uuid
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import func, select

from authapi.extensions import db
from authapi.models import SecurityEvent, utcnow
from authapi.services import events

from .clients import assert_refused, bearer, me, refresh
from .events_helpers import make_admin, stored

EVENT_KEYS = {"id", "type", "occurred_at", "user_id", "actor_id", "ip", "user_agent", "request_id", "data"}


@pytest.fixture
def admin(app, auth):
    return make_admin(app, auth)


def add_events(app, count, user_id=None, event_type="user.updated", at=None) -> list[str]:
    """``count`` events written as a service writes them (outside a request,
    like the CLI), each committed; ``at`` gives them all one moment. Their ids."""
    ids = []
    with app.app_context():
        for _ in range(count):
            event = events.record(event_type, user_id=user_id)
            if at is not None:
                event.occurred_at = at
            db.session.commit()
            ids.append(event.id)
    return ids


def page(client, path, headers, **query):
    response = client.get(path, headers=headers, query_string=query)
    assert response.status_code == 200, response.get_json()
    return response.get_json()


def walk(client, path, headers, between_pages=lambda: None, **query) -> list[dict]:
    """Every event ``path`` lists, following ``next_cursor`` to the end."""
    listed, body = [], page(client, path, headers, **query)
    while True:
        listed += body["items"]
        if body["next_cursor"] is None:
            return listed
        between_pages()
        body = page(client, path, headers, **{**query, "cursor": body["next_cursor"]})


def newest_first(items) -> bool:
    keys = [(item["occurred_at"], item["id"]) for item in items]
    return keys == sorted(keys, reverse=True)


# ---------------------------------------------------------------- listing and paging


def test_own_events_list_only_the_callers_newest_first(app, client, auth):
    user, pair = auth.user()
    other, _ = auth.user()
    body = page(client, "/users/me/events", bearer(pair["access_token"]))

    assert body["next_cursor"] is None
    assert [item["type"] for item in body["items"]] == ["login.succeeded", "user.registered"]
    assert all(set(item) == EVENT_KEYS and item["user_id"] == user["id"] for item in body["items"])


def test_following_the_cursor_lists_every_event_once_newest_first(app, client, admin):
    add_events(app, 7)
    same_moment = utcnow()
    add_events(app, 6, at=same_moment)  # ties are ordered by id
    expected = stored(app)

    listed = walk(client, "/events", admin["headers"], limit=4)

    assert newest_first(listed)
    assert sorted(item["id"] for item in listed) == sorted(item["id"] for item in expected)
    assert len(listed) == len(expected) == 15  # with the admin's registration and login


def test_a_full_last_page_says_there_is_no_next(app, client, admin):
    add_events(app, 2)  # 4 with the admin's own
    first = page(client, "/events", admin["headers"], limit=2)
    second = page(client, "/events", admin["headers"], limit=2, cursor=first["next_cursor"])
    assert len(second["items"]) == 2 and second["next_cursor"] is None


def test_paging_while_events_are_written_lists_each_event_once(app, client, admin):
    add_events(app, 20)
    before = {item["id"] for item in stored(app)}
    written = []
    go, turn, done = threading.Event(), threading.Event(), threading.Event()

    def writer():
        # Another thread, its own connection: between two pages it writes
        # three events, as concurrent requests would.
        while go.wait(timeout=30):
            go.clear()
            if done.is_set():
                return
            written.extend(add_events(app, 3))
            turn.set()

    def between_pages():
        turn.clear()
        go.set()
        assert turn.wait(timeout=30)

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        listed = walk(client, "/events", admin["headers"], between_pages, limit=5)
    finally:
        done.set()
        go.set()
        thread.join(timeout=30)

    ids = [item["id"] for item in listed]
    assert len(written) >= 12
    assert len(ids) == len(set(ids)) and set(ids) == before  # the new ones are above the first page
    assert newest_first(listed)


def test_the_default_page_is_fifty(app, client, admin):
    add_events(app, 55)
    body = page(client, "/events", admin["headers"])
    assert len(body["items"]) == 50 and body["next_cursor"]


# ---------------------------------------------------------------- filters


def test_admin_filters_by_user_type_and_time(app, client, auth, admin):
    user, pair = auth.user()
    add_events(app, 2, user_id=user["id"], event_type="password.changed")
    window_start = utcnow()
    add_events(app, 3, user_id=user["id"], event_type="email.changed")
    window_end = utcnow()
    add_events(app, 1, user_id=user["id"], event_type="email.changed")
    headers = admin["headers"]

    def listed(**query):
        return [(item["type"], item["user_id"]) for item in walk(client, "/events", headers, limit=2, **query)]

    assert set(listed(user_id=user["id"])) == {(t, user["id"]) for t in (
        "user.registered", "login.succeeded", "password.changed", "email.changed")}
    assert listed(type="password.changed,user.registered") == [
        ("password.changed", user["id"])] * 2 + [("user.registered", user["id"]), ("user.registered", admin["id"])]
    assert listed(type="email.changed", since=window_start.isoformat(), until=window_end.isoformat()) == [
        ("email.changed", user["id"])] * 3
    assert len(listed(since=window_end.isoformat().replace("+00:00", "Z"), user_id=user["id"])) == 1
    assert listed(until=(window_start - timedelta(days=1)).isoformat()) == []
    assert listed(user_id=2**31 - 1) == []


def test_a_user_sees_only_their_own_and_cannot_filter_for_others(app, client, auth, admin):
    _, pair = auth.user()
    headers = bearer(pair["access_token"])
    response = client.get(f"/users/me/events?user_id={admin['id']}", headers=headers)
    assert_refused(response, 422, "validation_error")
    assert list(response.get_json()["error"]["details"]) == ["user_id"]


# ---------------------------------------------------------------- refusals


def cursor_of(value) -> str:
    return base64.urlsafe_b64encode(json.dumps(value, separators=(",", ":")).encode()).decode().rstrip("=")


GOOD_MOMENT = "2026-01-01T00:00:00.000000+00:00"
BAD_QUERIES = [
    ("limit=0", "limit"), ("limit=101", "limit"), ("limit=ten", "limit"), ("limit=1.5", "limit"),
    ("limit=1&limit=2", "limit"),
    ("cursor=", "cursor"), ("cursor=%00", "cursor"), ("cursor=not-a-cursor", "cursor"), ("cursor=" + "A" * 200, "cursor"),
    ("cursor=" + cursor_of([GOOD_MOMENT, "not-an-id"]), "cursor"),
    ("cursor=" + cursor_of([GOOD_MOMENT]), "cursor"),
    ("cursor=" + cursor_of({"at": GOOD_MOMENT, "id": str(uuid.uuid4())}), "cursor"),
    ("cursor=" + cursor_of(["2026-01-01T00:00:00", str(uuid.uuid4())]), "cursor"),  # naive
    ("cursor=" + cursor_of(["0001-01-01T00:00:00+01:00", str(uuid.uuid4())]), "cursor"),
    ("cursor=" + cursor_of([GOOD_MOMENT, str(uuid.uuid4())]) + "%3D%3D", "cursor"),  # padded
    ("cursor=" + cursor_of([12, 13]), "cursor"),
    ("type=login", "type"), ("type=login.*", "type"), ("type=", "type"), ("type=login.failed,", "type"),
    ("type=LOGIN.FAILED", "type"),
    ("since=yesterday", "since"), ("since=2026-01-01T00:00:00", "since"), ("until=2026-01-01", "until"),
    ("since=0001-01-01T00:00:00%2B01:00", "since"), ("until=2026-13-01T00:00:00Z", "until"),
    ("user_id=0", "user_id"), ("user_id=x", "user_id"), ("user_id=99999999999", "user_id"),
    ("order=asc", "order"),
]


@pytest.mark.parametrize("query, field", BAD_QUERIES)
def test_a_bad_parameter_is_a_422_naming_it(app, client, admin, query, field):
    response = client.get(f"/events?{query}", headers=admin["headers"])
    assert_refused(response, 422, "validation_error")
    assert list(response.get_json()["error"]["details"]) == [field]


def test_a_cursor_is_the_position_of_its_pages_last_event(app, client, admin):
    first = page(client, "/events", admin["headers"], limit=1)
    moment, event_id = json.loads(base64.urlsafe_b64decode(first["next_cursor"] + "=="))
    last = first["items"][-1]
    assert (datetime.fromisoformat(moment), event_id) == (datetime.fromisoformat(last["occurred_at"]), last["id"])


# ---------------------------------------------------------------- the guard


def test_events_need_a_token_and_the_admin_role(app, client, auth, admin):
    _, pair = auth.user()
    assert_refused(client.get("/events"), 401, "unauthorized")
    assert_refused(client.get("/users/me/events"), 401, "unauthorized")
    assert_refused(client.get("/events", headers=bearer(pair["access_token"])), 403, "forbidden")


def test_events_need_a_second_factor_when_admins_must_have_one(make_app):
    from .clients import AuthActions

    app = make_app(REQUIRE_MFA_FOR_ADMINS="true")
    client = app.test_client()
    admin = make_admin(app, AuthActions(client))
    assert_refused(client.get("/events", headers=admin["headers"]), 403, "mfa_enrollment_required")
    assert client.get("/users/me/events", headers=admin["headers"]).status_code == 200


# ---------------------------------------------------------------- what writes nothing


def test_reading_the_account_refreshing_and_verifying_write_no_event(app, client, auth):
    _, pair = auth.user()
    count = len(stored(app))
    assert me(client, pair["access_token"]).status_code == 200
    assert client.get("/auth/verify", headers=bearer(pair["access_token"])).status_code == 200
    assert refresh(client, pair["refresh_token"]).status_code == 200
    assert client.get("/users/me/events", headers=bearer(pair["access_token"])).status_code == 200
    assert len(stored(app)) == count


# ---------------------------------------------------------------- purge


def test_purge_deletes_the_events_older_than_the_retention(make_app):
    app = make_app(EVENT_RETENTION_DAYS="30")
    now = datetime.now(timezone.utc)
    old = add_events(app, 2, at=now - timedelta(days=31))
    kept = add_events(app, 1, at=now - timedelta(days=29)) + add_events(app, 1)

    result = app.test_cli_runner().invoke(args=["events", "purge"])

    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == "Purged 2 security events older than 30 days."
    remaining = {event["id"] for event in stored(app)}
    assert remaining == set(kept) and not remaining & set(old)


# ---------------------------------------------------------------- the extension point


def test_a_recorded_receiver_runs_inside_the_changes_transaction(app, client, auth):
    seen = []

    def receiver(sender, event):
        # Before the commit: what a receiver adds is committed with the event.
        seen.append((sender, event.type, event.id, event in db.session.new))

    events.recorded.connect(receiver, app)
    try:
        user = auth.register()
    finally:
        events.recorded.disconnect(receiver, app)
    (sender, event_type, event_id, pending), = seen
    assert (sender, event_type, pending) == (app, "user.registered", True)
    with app.app_context():
        assert db.session.scalar(select(func.count()).where(SecurityEvent.id == event_id)) == 1
        assert db.session.get(SecurityEvent, event_id).user_id == user["id"]
