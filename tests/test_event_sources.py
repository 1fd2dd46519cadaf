"""Security events (API.md §10) from every place an account changes: the
HTTP API, the admin API and the CLI, each with its actor, client address
(through PROXY_FIX_X_FOR), User-Agent and request id; and a refused change
writes nothing. Logins, lockouts and two-factor: test_event_logins.py."""

import pytest

from authapi import mail
from authapi.extensions import db
from authapi.models import User
from authapi.services import recovery

from .clients import PASSWORD, assert_refused, bearer, claims_of, refresh
from .events_helpers import make_admin, one, stored, types

NEW_PASSWORD = "another horse battery staple"
CLIENT = {"X-Forwarded-For": "203.0.113.9", "User-Agent": "EventsTest/1.0", "X-Request-ID": "req-events-1"}


@pytest.fixture
def app(make_app):
    return make_app(PROXY_FIX_X_FOR="1")


@pytest.fixture
def admin(app, auth):
    return make_admin(app, auth)


def issue(app, user_id, purpose) -> str:
    """A one-time token as the emailed link carries it."""
    mail.wait_for_background_jobs()  # a queued email would supersede it
    with app.app_context():
        return recovery.issue_token(db.session.get(User, user_id), purpose)


def assert_from_cli(event):
    assert (event["actor_id"], event["ip"], event["user_agent"], event["request_id"]) == (None,) * 4


# ---------------------------------------------------------------- where an event comes from


def test_an_event_records_the_client_through_the_trusted_proxy_and_the_request(app, client):
    user_agent = "EventsTest/1.0 \x01" + "x" * 300  # a control character, and too long
    response = client.post("/auth/register", headers={**CLIENT, "User-Agent": user_agent}, json={
        "email": "ada@example.com", "username": "ada", "password": PASSWORD})
    user = response.get_json()

    event = one(app, "user.registered")
    assert event == {
        "id": event["id"], "type": "user.registered", "occurred_at": event["occurred_at"],
        "user_id": user["id"], "actor_id": user["id"], "ip": "203.0.113.9",
        "user_agent": ("EventsTest/1.0 " + "x" * 300)[:255], "request_id": "req-events-1", "data": {},
    }
    assert event["occurred_at"].endswith("+00:00")


def test_a_generated_request_id_is_the_one_the_answer_carries(app, client, auth):
    user = auth.register()
    response = client.post("/auth/login", json={"username": user["username"], "password": PASSWORD})
    event = one(app, "login.succeeded")
    assert event["request_id"] == response.headers["X-Request-ID"]
    assert event["ip"] == "127.0.0.1"  # no X-Forwarded-For: the peer itself


# ---------------------------------------------------------------- accounts


def test_admin_and_cli_creations_record_their_actor(app, client, admin, runner):
    created = client.post("/users", headers={**admin["headers"], **CLIENT}, json={
        "email": "ops@example.com", "username": "ops", "password": PASSWORD, "role": "admin"}).get_json()
    event = one(app, "user.created", user_id=created["id"])
    assert (event["actor_id"], event["ip"], event["data"]) == (admin["id"], "203.0.113.9", {"role": "admin"})

    result = runner.invoke(args=["users", "create", "cli@example.com", "--username", "cli", "--password", PASSWORD])
    assert result.exit_code == 0, result.output
    with app.app_context():
        cli_id = db.session.query(User.id).filter_by(username="cli").scalar()
    event = one(app, "user.created", user_id=cli_id)
    assert event["data"] == {"role": "user"}
    assert_from_cli(event)


def test_admin_changes_record_each_field_with_its_old_and_new_value(app, client, auth, admin):
    user = auth.register(username="ada")
    response = client.patch(f"/users/{user['id']}", headers=admin["headers"],
                            json={"role": "admin", "is_active": False, "full_name": "Ada L.", "username": "ada"})
    assert response.status_code == 200
    event = one(app, "user.updated", user_id=user["id"])
    assert event["actor_id"] == admin["id"]
    assert event["data"] == {"changes": {"role": ["user", "admin"], "is_active": [True, False],
                                         "full_name": [None, "Ada L."]}}

    client.patch(f"/users/{user['id']}", headers=admin["headers"], json={"email": "lovelace@example.com"})
    assert one(app, "email.changed", user_id=user["id"])["data"] == {
        "from": "ada@example.com", "to": "lovelace@example.com"}
    assert stored(app, type="user.updated", user_id=user["id"])[-1]["data"] == {
        "changes": {"email": ["ada@example.com", "lovelace@example.com"]}}


def test_cli_changes_are_recorded_without_an_actor(app, runner, auth):
    user = auth.register(username="ada")
    for args in (["deactivate", "ada@example.com"], ["activate", "ada@example.com"],
                 ["set-role", "ada@example.com", "admin"], ["set-password", "ada@example.com", "--password", NEW_PASSWORD]):
        result = runner.invoke(args=["users", *args])
        assert result.exit_code == 0, result.output

    updates = stored(app, type="user.updated", user_id=user["id"])
    assert [event["data"]["changes"] for event in updates] == [
        {"is_active": [True, False]}, {"is_active": [False, True]}, {"role": ["user", "admin"]}]
    for event in [*updates, one(app, "password.changed", user_id=user["id"])]:
        assert_from_cli(event)
    assert one(app, "password.changed")["data"] == {}


def test_an_unchanged_field_is_no_change(app, client, auth, admin):
    user = auth.register(username="ada")
    response = client.patch(f"/users/{user['id']}", headers=admin["headers"], json={"role": "user"})
    assert response.status_code == 200
    assert stored(app, type="user.updated") == []


def test_own_profile_and_email_changes_are_recorded(app, client, auth):
    user, pair = auth.user(username="ada")
    headers = bearer(pair["access_token"])
    assert client.patch("/users/me", headers=headers, json={"full_name": "Ada"}).status_code == 200
    changed = client.patch("/users/me", headers=headers, json={
        "email": "lovelace@example.com", "current_password": PASSWORD})
    assert changed.status_code == 200

    updates = stored(app, type="user.updated", user_id=user["id"])
    assert [event["data"]["changes"] for event in updates] == [
        {"full_name": [None, "Ada"]}, {"email": ["ada@example.com", "lovelace@example.com"]}]
    email = one(app, "email.changed")
    assert (email["actor_id"], email["data"]) == (user["id"], {"from": "ada@example.com", "to": "lovelace@example.com"})


def test_every_deletion_is_recorded_and_the_events_outlive_the_account(app, client, auth, admin, runner):
    own, pair = auth.user(username="own")
    by_admin = auth.register(username="byadmin")
    by_cli = auth.register(username="bycli")

    assert client.delete("/users/me", headers=bearer(pair["access_token"]), json={"password": PASSWORD}).status_code == 204
    assert client.delete(f"/users/{by_admin['id']}", headers=admin["headers"]).status_code == 204
    assert runner.invoke(args=["users", "delete", "bycli@example.com", "--yes"]).exit_code == 0

    assert one(app, "user.deleted", user_id=own["id"])["actor_id"] == own["id"]
    assert one(app, "user.deleted", user_id=by_admin["id"])["actor_id"] == admin["id"]
    assert_from_cli(one(app, "user.deleted", user_id=by_cli["id"]))
    assert types(app, user_id=own["id"]) == ["user.registered", "login.succeeded", "user.deleted"]
    listed = client.get(f"/events?user_id={own['id']}", headers=admin["headers"]).get_json()["items"]
    assert [event["type"] for event in listed] == ["user.deleted", "login.succeeded", "user.registered"]


# ---------------------------------------------------------------- sessions


def test_ending_sessions_records_each_with_its_reason(app, client, auth):
    user, first = auth.user()
    second, third, fourth = (auth.login(user["username"]) for _ in range(3))
    sid = {name: claims_of(pair["access_token"])["sid"] for name, pair in
           (("first", first), ("second", second), ("third", third), ("fourth", fourth))}

    assert client.post("/auth/logout", headers=bearer(first["access_token"])).status_code == 200
    assert client.delete(f"/auth/sessions/{sid['second']}", headers=bearer(third["access_token"])).status_code == 204
    assert client.post("/auth/logout-all", headers=bearer(third["access_token"])).status_code == 200

    ended = stored(app, type="session.ended")
    assert all(event["user_id"] == event["actor_id"] == user["id"] for event in ended)
    assert sorted((e["data"]["reason"], e["data"]["session_id"]) for e in ended) == sorted([
        ("logout", sid["first"]), ("deleted", sid["second"]),
        ("logout_all", sid["third"]), ("logout_all", sid["fourth"])])


def test_a_reused_refresh_token_is_recorded(app, client, auth):
    user, pair = auth.user()
    assert refresh(client, pair["refresh_token"]).status_code == 200
    assert_refused(refresh(client, pair["refresh_token"]), 401, "token_reused")
    event = one(app, "session.reuse_detected")
    assert (event["user_id"], event["data"]) == (user["id"], {"session_id": claims_of(pair["access_token"])["sid"]})
    # The refresh's own token check (authapi.token_check) names the actor.
    assert event["actor_id"] == user["id"]


# ---------------------------------------------------------------- passwords and emails


def test_a_password_change_records_the_change_and_its_new_session(app, client, auth):
    user, pair = auth.user()
    changed = client.post("/auth/password/change", headers=bearer(pair["access_token"]), json={
        "current_password": PASSWORD, "new_password": NEW_PASSWORD}).get_json()
    event = one(app, "password.changed")
    assert (event["user_id"], event["actor_id"], event["data"]) == (user["id"], user["id"], {})
    logins = stored(app, type="login.succeeded")
    assert logins[-1]["data"] == {"method": "password", "session_id": claims_of(changed["access_token"])["sid"]}


def test_emailed_tokens_record_a_reset_and_a_verification(app, client, auth):
    user = auth.register()
    reset = client.post("/auth/password/reset", json={
        "token": issue(app, user["id"], recovery.PASSWORD_RESET), "new_password": NEW_PASSWORD})
    assert reset.status_code == 200
    verified = client.post("/auth/email/verify", json={"token": issue(app, user["id"], recovery.EMAIL_VERIFY)})
    assert verified.status_code == 200

    for event_type in ("password.reset", "email.verified"):
        event = one(app, event_type)
        assert (event["user_id"], event["actor_id"], event["data"]) == (user["id"], user["id"], {})


# ---------------------------------------------------------------- a refused change writes nothing


def test_refused_changes_write_no_event(app, client, auth, admin):
    user, pair = auth.user(username="ada")
    auth.register(username="bob")
    headers = bearer(pair["access_token"])
    before = stored(app)

    refusals = [
        client.post("/auth/password/change", headers=headers, json={
            "current_password": "not the password at all", "new_password": NEW_PASSWORD}),
        client.post("/users", headers=admin["headers"], json={
            "email": "ada@example.com", "username": "other", "password": PASSWORD}),
        client.patch("/users/me", headers=headers, json={"username": "bob"}),
        client.patch(f"/users/{user['id']}", headers=admin["headers"], json={"email": "bob@example.com"}),
        client.delete("/users/me", headers=admin["headers"], json={"password": PASSWORD}),  # the last admin
        client.patch(f"/users/{admin['id']}", headers=admin["headers"], json={"role": "user"}),
        client.post("/auth/password/reset", json={"token": "x" * 43, "new_password": NEW_PASSWORD}),
    ]
    assert [response.status_code for response in refusals] == [422, 409, 409, 409, 409, 409, 422]
    assert stored(app) == before
