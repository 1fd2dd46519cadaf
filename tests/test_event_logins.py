"""Security events (API.md §10) of logins, lockouts and two-factor
authentication: each outcome recorded once, a refused login's event
committed on its own (with null ``user_id`` for a name that names no
account), and no password, token, code or secret in any event."""

from collections import Counter

import pytest
from sqlalchemy import text

from authapi.extensions import db
from authapi.models import User
from authapi.services import recovery

from . import test_mfa
from .clients import PASSWORD, AuthActions, assert_refused, bearer, claims_of, post_login
from .events_helpers import make_admin, one, stored, types
from .test_mfa import code, enrol, first_step, login_with, second_step

WRONG = "not the password at all"
NEW_PASSWORD = "another horse battery staple"
THRESHOLD = 3

clock = test_mfa.clock


@pytest.fixture
def app(make_app):
    return make_app(LOCKOUT_THRESHOLD=str(THRESHOLD))


def reasons(app, **where) -> list:
    return [(event["user_id"], event["data"]["reason"]) for event in stored(app, type="login.failed", **where)]


# ---------------------------------------------------------------- logins


def test_a_login_records_its_method_and_session(app, client, auth):
    user, pair = auth.user()
    event = one(app, "login.succeeded")
    assert (event["user_id"], event["actor_id"]) == (user["id"], user["id"])
    assert event["data"] == {"method": "password", "session_id": claims_of(pair["access_token"])["sid"]}


def test_refused_logins_record_why_and_never_what_was_typed(app, client, auth):
    user = auth.register(username="ada")
    typed = ["nobody-at-all", "a typed password for nobody", "a typed wrong password for ada"]
    assert post_login(client, typed[0], typed[1]).status_code == 401
    assert post_login(client, "ada", typed[2]).status_code == 401
    admin = make_admin(app, auth)
    assert client.patch(f"/users/{user['id']}", headers=admin["headers"], json={"is_active": False}).status_code == 200
    assert post_login(client, "ada").status_code == 401  # the right password, deactivated

    assert reasons(app) == [(None, "invalid_credentials"), (user["id"], "invalid_credentials"),
                            (user["id"], "inactive")]
    refused = stored(app, type="login.failed")
    assert all(event["actor_id"] is None for event in refused)
    for word in typed:
        assert word not in repr(refused)


def test_an_unverified_email_refusal_is_recorded(make_app):
    app = make_app(REQUIRE_VERIFIED_EMAIL="true")
    client = app.test_client()
    user = AuthActions(client).register(username="ada")
    assert_refused(post_login(client, "ada"), 403, "email_not_verified")
    assert reasons(app) == [(user["id"], "email_not_verified")]
    assert types(app, user_id=user["id"]) == ["user.registered", "login.failed"]


# ---------------------------------------------------------------- lockouts


def test_the_failure_that_reaches_the_threshold_starts_one_lockout(app, client, auth):
    user = auth.register(username="ada")
    for attempt in range(THRESHOLD):
        assert stored(app, type="lockout.started") == []
        assert post_login(client, "ada", WRONG).status_code == 401
    assert post_login(client, "ada").status_code == 429  # even the right password
    assert post_login(client, "ada").status_code == 429

    assert one(app, "lockout.started")["user_id"] == user["id"]
    assert Counter(reasons(app)) == {(user["id"], "invalid_credentials"): THRESHOLD, (user["id"], "locked"): 2}


def test_a_name_of_no_account_locks_with_a_null_user(app, client):
    for _ in range(THRESHOLD + 1):
        post_login(client, "nobody-at-all", WRONG)
    event = one(app, "lockout.started")
    assert (event["user_id"], event["actor_id"], event["data"]) == (None, None, {})
    assert reasons(app)[-1] == (None, "locked")


def test_a_device_tokens_lockout_is_recorded_once(app, client, auth):
    user, pair = auth.user(username="ada")
    device = {"device_token": pair["device_token"]}
    for attempt in range(THRESHOLD + 1):
        response = client.post("/auth/login", json={"username": "ada", "password": WRONG, **device})
        assert response.status_code == 401
        assert len(stored(app, type="lockout.started")) == (attempt >= THRESHOLD - 1)
    assert one(app, "lockout.started")["user_id"] == user["id"]


def test_wrong_second_factor_codes_record_mfa_invalid_then_the_lockout(app, client, auth, clock):
    user, pair = auth.user(username="ada")
    enrol(client, pair, clock)
    mfa_token = first_step(client, "ada")
    for _ in range(THRESHOLD):
        assert second_step(client, mfa_token, "000000").status_code == 401
    assert second_step(client, mfa_token, "000000").status_code == 429

    assert Counter(reasons(app)) == {(user["id"], "mfa_invalid"): THRESHOLD, (user["id"], "locked"): 1}
    assert one(app, "lockout.started")["user_id"] == user["id"]
    assert [event["data"]["method"] for event in stored(app, type="login.succeeded")] == ["password"]


def test_a_refused_step_up_changes_nothing_but_records_the_lockout_it_starts(app, client, auth, clock):
    user, pair = auth.user(username="ada")
    enrol(client, pair, clock)
    before = stored(app)
    change = {"current_password": PASSWORD, "new_password": NEW_PASSWORD, "code": "000000"}
    for attempt in range(THRESHOLD):
        response = client.post("/auth/password/change", headers=bearer(pair["access_token"]), json=change)
        assert list(response.get_json()["error"]["details"]) == ["code"]
        if attempt < THRESHOLD - 1:
            assert stored(app) == before
    assert [event["type"] for event in stored(app)[len(before):]] == ["lockout.started"]
    assert post_login(client, "ada").status_code == 403  # the password is the old one (mfa_required)


def test_current_password_guesses_record_their_lockout(app, client, auth):
    user, pair = auth.user(username="ada")
    change = {"current_password": WRONG, "new_password": NEW_PASSWORD}
    for _ in range(THRESHOLD):
        client.post("/auth/password/change", headers=bearer(pair["access_token"]), json=change)
    assert types(app, user_id=user["id"]) == ["user.registered", "login.succeeded", "lockout.started"]


# ---------------------------------------------------------------- two-factor


def test_two_factor_changes_are_recorded(app, client, auth, clock):
    user, pair = auth.user(username="ada")
    secret, codes = enrol(client, pair, clock)
    done = login_with(client, "ada", codes[0]).get_json()
    headers = bearer(done["access_token"])
    regenerated = client.post("/auth/mfa/recovery-codes", headers=headers,
                              json={"password": PASSWORD, "code": code(secret, clock)}).get_json()
    disabled = client.delete("/auth/mfa/totp", headers=headers,
                             json={"password": PASSWORD, "code": regenerated["recovery_codes"][3]})
    assert disabled.status_code == 204

    mine = [(e["type"], e["data"]) for e in stored(app, user_id=user["id"]) if e["type"].startswith("mfa.")]
    assert mine == [("mfa.enabled", {}), ("mfa.recovery_code_used", {"left": 9}),
                    ("mfa.recovery_codes_regenerated", {}), ("mfa.recovery_code_used", {"left": 9}),
                    ("mfa.disabled", {})]
    assert all(e["actor_id"] == user["id"] for e in stored(app, user_id=user["id"]) if e["type"].startswith("mfa."))
    assert stored(app, type="login.succeeded")[-1]["data"] == {
        "method": "mfa", "session_id": claims_of(done["access_token"])["sid"]}


def test_admin_and_cli_resets_record_who_turned_two_factor_off(app, client, auth, clock):
    admin = make_admin(app, auth)
    by_api, pair = auth.user()
    enrol(client, pair, clock)
    by_cli, pair = auth.user()
    enrol(client, pair, clock)
    never = auth.register()

    assert client.delete(f"/users/{by_api['id']}/mfa", headers=admin["headers"]).status_code == 204
    assert client.application.test_cli_runner().invoke(args=["users", "reset-mfa", by_cli["email"]]).exit_code == 0
    assert client.delete(f"/users/{never['id']}/mfa", headers=admin["headers"]).status_code == 204

    assert one(app, "mfa.disabled", user_id=by_api["id"])["actor_id"] == admin["id"]
    assert one(app, "mfa.disabled", user_id=by_cli["id"])["actor_id"] is None
    assert stored(app, type="mfa.disabled", user_id=never["id"]) == []  # nothing was turned off


# ---------------------------------------------------------------- no secret in any event


def test_no_password_token_code_or_secret_reaches_any_event(app, client, auth, clock):
    user, pair = auth.user(username="ada")
    secrets = [PASSWORD, NEW_PASSWORD, WRONG, pair["access_token"], pair["refresh_token"], pair["device_token"]]
    post_login(client, "ada", WRONG)
    refreshed = client.post("/auth/refresh", headers=bearer(pair["refresh_token"])).get_json()
    setup = client.post("/auth/mfa/totp/setup", headers=bearer(refreshed["access_token"]),
                        json={"password": PASSWORD}).get_json()
    typed_codes = [code(setup["secret"], clock)]
    confirmed = client.post("/auth/mfa/totp/confirm", headers=bearer(refreshed["access_token"]),
                            json={"code": typed_codes[0]}).get_json()
    clock.advance()
    mfa_token = first_step(client, "ada")
    typed_codes.append(code(setup["secret"], clock))
    done = second_step(client, mfa_token, typed_codes[-1]).get_json()
    recovery_login = login_with(client, "ada", confirmed["recovery_codes"][0]).get_json()
    clock.advance()
    typed_codes.append(code(setup["secret"], clock))
    changed = client.post("/auth/password/change", headers=bearer(done["access_token"]), json={
        "current_password": PASSWORD, "new_password": NEW_PASSWORD, "code": typed_codes[-1]}).get_json()
    with app.app_context():
        reset_token = recovery.issue_token(db.session.get(User, user["id"]), recovery.PASSWORD_RESET)
    assert client.post("/auth/password/reset", json={"token": reset_token, "new_password": PASSWORD}).status_code == 200
    secrets += [refreshed["access_token"], refreshed["refresh_token"], setup["secret"], mfa_token, reset_token,
                *confirmed["recovery_codes"], done["access_token"], done["refresh_token"], done["device_token"],
                recovery_login["access_token"], changed["access_token"], changed["refresh_token"]]

    with app.app_context():
        rows = db.session.execute(text("SELECT * FROM security_events")).all()
        data = db.session.scalars(text("SELECT data FROM security_events")).all()
    assert len(rows) >= 10
    dump = "\n".join(str(value) for row in rows for value in row)
    for secret in secrets:
        assert secret not in dump, secret[:8]
    # A six-digit code could occur in a uuid or a timestamp by chance: the
    # codes are looked for where a service could have put them.
    for typed in typed_codes:
        assert typed not in str(data)
