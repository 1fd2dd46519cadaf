"""GET/PATCH/DELETE /users/me. GET's hot path (services/profile.py, a
compiled dump) is held to the general one: UserOut's dump of the ORM's user,
as fresh as the database."""

from datetime import datetime, timezone

import pytest

from authapi.extensions import db
from authapi.models import User
from authapi.schemas import UserOut, compiled_dump, dump_user
from authapi.services.profile import OWN_ACCOUNT

from .conftest import PASSWORD, assert_refused, bearer, error_code


def test_me_returns_the_caller(client, auth):
    user, pair = auth.user(username="ada", full_name="Ada Lovelace")
    response = client.get("/users/me", headers=bearer(pair["access_token"]))
    assert response.status_code == 200
    body = response.get_json()
    assert body["id"] == user["id"] and body["full_name"] == "Ada Lovelace"
    assert "password_hash" not in body


def set_columns(app, user_id, **values):
    """Change a user's row and commit, as another process would."""
    with app.app_context():
        user = db.session.get(User, user_id)
        for name, value in values.items():
            setattr(user, name, value)
        db.session.commit()


@pytest.mark.parametrize("columns", [
    {},
    {"full_name": "Ada Lovelace", "is_verified": True, "role": "admin"},
    {"full_name": "Ünïcödé \u2028 <script>", "totp_enabled_at": datetime(2026, 1, 2, 3, 4, 5, 678, timezone.utc)},
    {"last_login_at": None, "updated_at": datetime(2026, 5, 6, 7, 8, 9, tzinfo=timezone.utc)},
], ids=["as-registered", "verified-admin", "unicode-and-mfa", "no-login-whole-second"])
def test_me_is_the_user_out_dump_of_the_user_byte_for_byte(app, client, auth, columns):
    user, _ = auth.user()
    # A token of the user's role (a role change revokes older ones), then the
    # rest (a login would now ask for the second factor).
    set_columns(app, user["id"], **{k: v for k, v in columns.items() if k == "role"})
    pair = auth.login(user["username"])
    set_columns(app, user["id"], **{k: v for k, v in columns.items() if k != "role"})

    response = client.get("/users/me", headers=bearer(pair["access_token"]))

    with app.app_context():
        general = app.json.response(UserOut().dump(db.session.get(User, user["id"])))
    assert response.status_code == 200
    assert response.get_json() == general.get_json()
    assert response.get_data() == general.get_data()
    assert response.mimetype == general.mimetype


def test_the_compiled_dump_is_the_schemas_dump_of_the_same_row(app, auth):
    user, _ = auth.user(full_name="Ada")
    with app.app_context():
        row = db.session.execute(OWN_ACCOUNT, {"user_id": user["id"]}).one()
        assert dump_user(row) == UserOut().dump(row) == UserOut().dump(db.session.get(User, user["id"]))
        assert compiled_dump(UserOut())(row) == dump_user(row)


def test_me_sees_what_was_committed_before_it(app, client, auth):
    user, pair = auth.user()
    token = pair["access_token"]
    assert client.get("/users/me", headers=bearer(token)).get_json()["full_name"] is None

    set_columns(app, user["id"], full_name="Changed Elsewhere", is_verified=True)
    body = client.get("/users/me", headers=bearer(token)).get_json()
    assert (body["full_name"], body["is_verified"]) == ("Changed Elsewhere", True)


@pytest.mark.parametrize("columns", [
    {"is_active": False}, {"role": "admin"}, {"tokens_valid_after": datetime(2999, 1, 1, tzinfo=timezone.utc)},
], ids=["deactivated", "role-changed", "cut-off"])
def test_me_refuses_what_only_the_database_says(app, client, auth, columns):
    # Changed behind Redis's back (no revocation mark): the account's own
    # row refuses the token, as the general path's user load does.
    user, pair = auth.user()
    set_columns(app, user["id"], **columns)

    assert_refused(client.get("/users/me", headers=bearer(pair["access_token"])), 401, "token_revoked")
    assert_refused(client.get("/auth/sessions", headers=bearer(pair["access_token"])), 401, "token_revoked")


def test_me_requires_a_token(client):
    response = client.get("/users/me")
    assert response.status_code == 401
    assert error_code(response) == "unauthorized"


def test_patch_me_updates_name_and_username(client, auth):
    _, pair = auth.user(username="ada")
    response = client.patch(
        "/users/me", json={"full_name": "Countess", "username": "ada.l"},
        headers=bearer(pair["access_token"]),
    )
    assert response.status_code == 200
    body = response.get_json()
    assert body["full_name"] == "Countess" and body["username"] == "ada.l"
    auth.login("ada.l")


def test_patch_me_can_clear_the_full_name(client, auth):
    _, pair = auth.user(full_name="Ada")
    response = client.patch("/users/me", json={"full_name": None}, headers=bearer(pair["access_token"]))
    assert response.status_code == 200
    assert response.get_json()["full_name"] is None


def test_patch_me_email_needs_the_current_password(client, auth):
    _, pair = auth.user(username="ada")
    headers = bearer(pair["access_token"])
    missing = client.patch("/users/me", json={"email": "new@example.com"}, headers=headers)
    assert missing.status_code == 422
    assert "current_password" in missing.get_json()["error"]["details"]
    wrong = client.patch(
        "/users/me", json={"email": "new@example.com", "current_password": "wrong password!!"},
        headers=headers,
    )
    assert wrong.status_code == 422
    assert client.get("/users/me", headers=headers).get_json()["email"] == "ada@example.com"


def test_patch_me_new_email_is_unverified(app, client, auth):
    from authapi.extensions import db
    from authapi.models import User

    _, pair = auth.user(username="ada")
    with app.app_context():
        db.session.query(User).update({"is_verified": True})
        db.session.commit()
    response = client.patch(
        "/users/me", json={"email": "new@example.com", "current_password": PASSWORD},
        headers=bearer(pair["access_token"]),
    )
    assert response.status_code == 200
    body = response.get_json()
    assert body["email"] == "new@example.com" and body["is_verified"] is False


@pytest.mark.parametrize(
    "body",
    [{"username": "TAKEN"}, {"email": "Taken@example.com", "current_password": PASSWORD}],
)
def test_patch_me_taken_username_or_email_is_a_conflict(client, auth, body):
    auth.register(username="taken", email="taken@example.com")
    _, pair = auth.user(username="ada")
    response = client.patch("/users/me", json=body, headers=bearer(pair["access_token"]))
    assert response.status_code == 409
    assert error_code(response) == "conflict"
    assert client.get("/users/me", headers=bearer(pair["access_token"])).get_json()["username"] == "ada"


@pytest.mark.parametrize(
    "body, field",
    [
        ({"role": "admin"}, "role"),
        ({"is_verified": True}, "is_verified"),
        ({"is_active": False}, "is_active"),
        ({"password": "another passphrase!"}, "password"),
        ({"username": "x"}, "username"),
        ({"username": None}, "username"),
        ({"email": "nope"}, "email"),
        ({"full_name": "x" * 101}, "full_name"),
    ],
)
def test_patch_me_refuses_privileged_and_invalid_fields(client, auth, body, field):
    _, pair = auth.user(username="ada")
    response = client.patch("/users/me", json=body, headers=bearer(pair["access_token"]))
    assert response.status_code == 422
    assert field in response.get_json()["error"]["details"]
    me = client.get("/users/me", headers=bearer(pair["access_token"])).get_json()
    assert me["role"] == "user" and me["username"] == "ada" and me["is_verified"] is False


def test_delete_me_removes_the_account_and_its_tokens(client, auth):
    user, pair = auth.user(username="ada")
    other = auth.login("ada")
    response = client.delete("/users/me", json={"password": PASSWORD}, headers=bearer(pair["access_token"]))
    assert response.status_code == 204
    for tokens in (pair, other):
        me = client.get("/users/me", headers=bearer(tokens["access_token"]))
        assert me.status_code == 401 and error_code(me) == "token_revoked"
        assert client.post("/auth/refresh", headers=bearer(tokens["refresh_token"])).status_code == 401
    assert client.post("/auth/login", json={"username": "ada", "password": PASSWORD}).status_code == 401
    auth.register(username="ada")  # the name is free again


def test_delete_me_with_a_wrong_password_changes_nothing(client, auth):
    _, pair = auth.user(username="ada")
    response = client.delete(
        "/users/me", json={"password": "wrong password!!"}, headers=bearer(pair["access_token"])
    )
    assert response.status_code == 422
    assert "password" in response.get_json()["error"]["details"]
    assert client.get("/users/me", headers=bearer(pair["access_token"])).status_code == 200


def test_delete_me_removes_the_session_rows(app, client, auth):
    from authapi.extensions import db
    from authapi.models import AuthSession

    _, pair = auth.user()
    client.delete("/users/me", json={"password": PASSWORD}, headers=bearer(pair["access_token"]))
    with app.app_context():
        assert db.session.query(AuthSession).count() == 0


def test_last_admin_cannot_delete_itself(app, client, auth):
    from authapi.extensions import db
    from authapi.models import User

    auth.register(username="root")
    with app.app_context():
        db.session.query(User).update({"role": "admin"})
        db.session.commit()
    pair = auth.login("root")
    response = client.delete("/users/me", json={"password": PASSWORD}, headers=bearer(pair["access_token"]))
    assert response.status_code == 409
    assert error_code(response) == "conflict"
    assert client.get("/users/me", headers=bearer(pair["access_token"])).status_code == 200
