"""The revocation rule (authapi.revocation, API.md §7): its keys, its checks,
that every account change that revokes goes through it, that a token it cannot
check fails closed, and that an admin's change is seen by every gunicorn worker.
Ending sessions through the API is in test_sessions.py."""

import subprocess
import sys
import time
import uuid
from datetime import datetime, timezone

import pytest
import requests
from sqlalchemy import create_engine, select, text

from authapi import revocation
from authapi.extensions import db
from authapi.models import AuthSession, User

from .conftest import PASSWORD, LiveAuth, assert_refused, bearer, claims_of, me, refresh, sign

NEW_PASSWORD = "a brand new passphrase"
NOT_REDIS = "redis://127.0.0.1:1/0"  # a closed port


def test_key_formats_are_the_ones_the_bench_and_deployed_marks_use():
    # bench/ imports these two names; marks already in Redis use this format.
    assert revocation.session_key(7, "abc") == "authapi:{u:7}:s:abc"
    assert revocation.user_key("7") == "authapi:{u:7}:u"


@pytest.mark.parametrize(
    "changed, revokes",
    [
        ({"role": "admin"}, True),
        ({"is_active": False}, True),
        ({"is_active": True}, False),
        ({"email": "new@example.com", "username": "new", "full_name": "N"}, False),
        ({"is_verified": False}, False),
        ({}, False),
    ],
)
def test_which_admin_changes_revoke(changed, revokes):
    assert revocation.changes_revoke(changed) is revokes


def claims(token_type="access", role="user"):
    return {"type": token_type, "role": role} if token_type == "access" else {"type": token_type}


@pytest.mark.parametrize(
    "user, token_claims, revoked",
    [
        (None, claims(), True),
        (User(role="user", is_active=False), claims(), True),
        (User(role="user", is_active=True), claims(role="admin"), True),
        (User(role="admin", is_active=True), claims("refresh"), False),
        (User(role="user", is_active=True), claims(), False),
    ],
    ids=["deleted", "deactivated", "role-mismatch", "refresh-has-no-role", "allowed"],
)
def test_account_state_revokes(user, token_claims, revoked):
    assert revocation.is_revoked_by_account(user, token_claims) is revoked


NOW = 1_800_000_000


@pytest.mark.parametrize("is_active", [True, False])
@pytest.mark.parametrize("cut_off", [None, NOW - 5, NOW - 1, NOW - 0.5, NOW, NOW + 0.5, NOW + 0.999, NOW + 1, NOW + 60])
def test_the_rotations_account_check_is_is_revoked_by_account(app, auth, is_active, cut_off):
    # ACCOUNT_ACCEPTS (in the rotation's UPDATE) against the rule it restates,
    # for a refresh token issued at NOW, on each backend's own comparison.
    user = auth.register()
    token_claims = {"type": "refresh", "iat": NOW}
    with app.app_context():
        row = db.session.get(User, user["id"])
        row.is_active = is_active
        row.tokens_valid_after = None if cut_off is None else datetime.fromtimestamp(cut_off, timezone.utc)
        db.session.commit()
        accepted = db.session.scalar(
            select(User.id).where(User.id == user["id"], revocation.ACCOUNT_ACCEPTS),
            {revocation.ACCOUNT_CUTOFF: revocation.account_cutoff(token_claims)},
        ) is not None
        assert accepted is not revocation.is_revoked_by_account(db.session.get(User, user["id"]), token_claims)


def login_sessions(app, user_id):
    with app.app_context():
        return db.session.scalars(
            select(AuthSession).where(AuthSession.user_id == user_id).order_by(AuthSession.created_at)
        ).all()


def test_revoke_sessions_marks_only_those_sessions_and_their_rows(app, auth):
    user, _ = auth.user(username="ada")
    auth.login("ada")
    first, second = login_sessions(app, user["id"])
    with app.app_context():
        revocation.revoke_sessions([db.session.merge(first)])
        db.session.commit()
        now = int(time.time())
        sub = str(user["id"])
        assert revocation.is_revoked({"sub": sub, "sid": first.id, "iat": now})
        assert not revocation.is_revoked({"sub": sub, "sid": second.id, "iat": now})
    assert [s.revoked_at is not None for s in login_sessions(app, user["id"])] == [True, False]


def test_revoke_user_sets_a_cut_off_and_ends_every_row(app, auth):
    user, _ = auth.user(username="ada")
    with app.app_context():
        before = int(time.time()) - 1
        user_row = db.session.get(User, user["id"])
        revocation.revoke_user(user_row, user_row.sessions)
        db.session.commit()
        other_session = {"sub": str(user["id"]), "sid": "not-a-marked-session"}
        assert revocation.is_revoked({**other_session, "iat": before})
        assert not revocation.is_revoked({**other_session, "iat": int(time.time()) + 1})
    assert all(s.revoked_at is not None for s in login_sessions(app, user["id"]))


# ---------------------------------------------------------------- every caller goes through it


@pytest.fixture
def revoked_users(monkeypatch):
    """Calls of revocation.revoke_user and revoke_deleted_user, by user id."""
    calls = []
    for name in ("revoke_user", "revoke_deleted_user"):
        original = getattr(revocation, name)

        def spy(user, *args, _original=original, _name=name):
            calls.append((_name, getattr(user, "id", user)))
            return _original(user, *args)

        monkeypatch.setattr(revocation, name, spy)
    return calls


def admin_headers(app, auth):
    admin, _ = auth.user(username="root")
    with app.app_context():
        db.session.get(User, admin["id"]).role = "admin"
        db.session.commit()
    return bearer(auth.login("root")["access_token"])


@pytest.mark.parametrize(
    "change, revokes",
    [
        ({"role": "admin"}, True),
        ({"is_active": False}, True),
        ({"full_name": "Ada L."}, False),
    ],
)
def test_admin_changes_revoke_through_the_rule(app, client, auth, revoked_users, change, revokes):
    headers = admin_headers(app, auth)
    user, _ = auth.user(username="ada")
    assert client.patch(f"/users/{user['id']}", json=change, headers=headers).status_code == 200
    assert revoked_users == ([("revoke_user", user["id"])] if revokes else [])


def test_account_changes_revoke_through_the_rule(app, client, auth, revoked_users):
    user, pair = auth.user(username="ada")
    headers = bearer(pair["access_token"])
    change = {"current_password": PASSWORD, "new_password": NEW_PASSWORD}
    pair = client.post("/auth/password/change", json=change, headers=headers).get_json()
    headers = bearer(pair["access_token"])
    assert client.post("/auth/logout-all", json={}, headers=headers).status_code == 200
    headers = bearer(auth.login("ada", NEW_PASSWORD)["access_token"])
    assert client.delete("/users/me", json={"password": NEW_PASSWORD}, headers=headers).status_code == 204
    assert revoked_users == [
        ("revoke_user", user["id"]), ("revoke_user", user["id"]), ("revoke_deleted_user", user["id"]),
    ]


def test_importing_the_package_registers_no_jwt_callback():
    # Wiring happens in create_app (tokens.init_app), never at import time.
    code = (
        "import authapi, authapi.tokens, authapi.auth, authapi.users\n"
        "from authapi.extensions import jwt\n"
        "assert jwt._user_lookup_callback is None, 'registered at import'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


# ---------------------------------------------------------------- account deleted, Redis down, re-signed tokens


def test_tokens_after_account_delete_are_token_revoked(client, auth):
    user, first = auth.user()
    second = auth.login(user["username"])
    response = client.delete(
        "/users/me", json={"password": PASSWORD}, headers=bearer(first["access_token"])
    )
    assert response.status_code == 204
    for pair in (first, second):
        assert_refused(me(client, pair["access_token"]), 401, "token_revoked")
        assert_refused(refresh(client, pair["refresh_token"]), 401, "token_revoked")


def test_token_check_with_redis_down_is_service_unavailable(make_app, pair):
    down = make_app(REDIS_URL=NOT_REDIS).test_client()
    assert_refused(me(down, pair["access_token"]), 503, "service_unavailable")


def test_logout_with_redis_down_is_service_unavailable_and_ends_nothing(
    make_app, client, pair
):
    down = make_app(REDIS_URL=NOT_REDIS).test_client()
    response = down.post("/auth/logout", headers=bearer(pair["access_token"]))
    assert_refused(response, 503, "service_unavailable")
    assert me(client, pair["access_token"]).status_code == 200


def test_unique_jti_in_crafted_tokens_does_not_bypass_revocation(client, pair):
    # Revocation follows the session, not the jti: a re-signed copy of a logged
    # out session's token with a fresh jti stays refused.
    assert client.post("/auth/logout", headers=bearer(pair["access_token"])).status_code == 200
    token = sign({**claims_of(pair["access_token"]), "jti": str(uuid.uuid4())})
    assert_refused(me(client, token), 401, "token_revoked")


# ---------------------------------------------------------------- across gunicorn workers


def promote_in_database(server, username):
    # Nobody can become admin over HTTP: promote in the database, as the CLI would.
    engine = create_engine(server.env["DATABASE_URL"].replace("postgresql://", "postgresql+psycopg://"))
    with engine.begin() as conn:
        conn.execute(text("UPDATE users SET role = 'admin' WHERE username = :u"), {"u": username})
    engine.dispose()


@pytest.mark.parametrize("change", ["role", "deactivate", "delete"])
def test_admin_revocation_is_seen_by_every_worker(gunicorn_server, change):
    url = gunicorn_server.url
    live = LiveAuth(url, timeout=10)
    root, victim = f"root{change}", f"victim{change}"
    live.register(root)
    promote_in_database(gunicorn_server, root)
    admin_headers = bearer(live.login(root)["access_token"])
    created = live.register(victim)
    headers = bearer(live.login(victim)["access_token"])
    assert requests.get(url + "/users/me", headers=headers, timeout=10).status_code == 200

    target = f"{url}/users/{created['id']}"
    if change == "role":
        assert requests.patch(target, json={"role": "admin"}, headers=admin_headers, timeout=10).status_code == 200
    elif change == "deactivate":
        assert requests.patch(target, json={"is_active": False}, headers=admin_headers, timeout=10).status_code == 200
    else:
        assert requests.delete(target, headers=admin_headers, timeout=10).status_code == 204
    # New connection each time: the four workers all answer some of these.
    for _ in range(12):
        response = requests.get(url + "/users/me", headers={**headers, "Connection": "close"}, timeout=10)
        assert response.status_code == 401
        assert response.json()["error"]["code"] == "token_revoked"
