"""The /auth endpoints register, login and password change: success paths and
their refusals. Refresh is in test_rotation.py, logout and the session list in
test_sessions.py."""

import pytest

from .conftest import PASSWORD, bearer, error_code


# ---------------------------------------------------------------- register


def test_register_returns_the_user_without_secrets(client):
    response = client.post(
        "/auth/register",
        json={"email": "ada@example.com", "username": "ada", "password": PASSWORD,
              "full_name": "Ada Lovelace"},
    )
    assert response.status_code == 201
    body = response.get_json()
    assert set(body) == {"id", "email", "username", "full_name", "role", "is_active",
                         "is_verified", "mfa_enabled", "created_at", "updated_at", "last_login_at"}
    assert body["role"] == "user" and body["is_active"] and not body["is_verified"]
    assert body["last_login_at"] is None
    assert body["created_at"].endswith("+00:00")
    assert PASSWORD not in response.get_data(as_text=True)


@pytest.mark.parametrize(
    "field, value",
    [("role", "admin"), ("is_verified", True), ("is_active", True), ("id", 7), ("password_hash", "x")],
)
def test_register_rejects_privileged_or_unknown_fields(client, field, value):
    response = client.post(
        "/auth/register",
        json={"email": "eve@example.com", "username": "eve", "password": PASSWORD, field: value},
    )
    assert response.status_code == 422
    assert error_code(response) == "validation_error"
    assert field in response.get_json()["error"]["details"]
    assert client.post("/auth/login", json={"username": "eve", "password": PASSWORD}).status_code == 401


@pytest.mark.parametrize(
    "body, field",
    [
        ({"username": "bob", "password": PASSWORD}, "email"),
        ({"email": "bob@example.com", "password": PASSWORD}, "username"),
        ({"email": "bob@example.com", "username": "bob"}, "password"),
        ({"email": "not-an-email", "username": "bob", "password": PASSWORD}, "email"),
        ({"email": "a" * 250 + "@example.com", "username": "bob", "password": PASSWORD}, "email"),
        ({"email": "bob@example.com", "username": "bo", "password": PASSWORD}, "username"),
        ({"email": "bob@example.com", "username": "b" * 33, "password": PASSWORD}, "username"),
        ({"email": "bob@example.com", "username": "bob smith", "password": PASSWORD}, "username"),
        ({"email": "bob@example.com", "username": "bob!", "password": PASSWORD}, "username"),
        ({"email": "bob@example.com", "username": 42, "password": PASSWORD}, "username"),
        ({"email": "bob@example.com", "username": "bob", "password": 123456789012345}, "password"),
        ({"email": "bob@example.com", "username": "bob", "password": "short"}, "password"),
        ({"email": "bob@example.com", "username": "bob", "password": PASSWORD,
          "full_name": "x" * 101}, "full_name"),
        ({"email": "bob@example.com", "username": "bob", "password": PASSWORD,
          "full_name": "nul\x00byte"}, "full_name"),
        ({"email": "bob@example.com", "username": "bob", "password": PASSWORD + "\x00"}, "password"),
    ],
)
def test_register_validation_names_the_field(client, body, field):
    response = client.post("/auth/register", json=body)
    assert response.status_code == 422
    assert error_code(response) == "validation_error"
    assert field in response.get_json()["error"]["details"]


@pytest.mark.parametrize(
    "second",
    [
        {"email": "ADA@example.com", "username": "someone"},
        {"email": "other@example.com", "username": "ADA"},
    ],
)
def test_register_duplicate_is_a_conflict_case_insensitively(client, auth, second):
    auth.register(username="ada", email="ada@example.com")
    response = client.post("/auth/register", json={**second, "password": PASSWORD})
    assert response.status_code == 409
    assert error_code(response) == "conflict"


def test_register_closed_is_forbidden(make_app):
    client = make_app(REGISTRATION_OPEN="false").test_client()
    response = client.post(
        "/auth/register", json={"email": "a@example.com", "username": "ada", "password": PASSWORD}
    )
    assert response.status_code == 403
    assert error_code(response) == "forbidden"


# ---------------------------------------------------------------- login


def test_login_returns_a_token_pair(client, auth):
    auth.register(username="ada")
    response = client.post("/auth/login", json={"username": "ada", "password": PASSWORD})
    assert response.status_code == 200
    pair = response.get_json()
    assert pair["token_type"] == "Bearer"
    assert pair["expires_in"] == 900 and pair["refresh_expires_in"] == 1209600
    assert pair["access_token"] and pair["refresh_token"]


def test_login_accepts_email_in_any_case(client, auth):
    auth.register(username="ada", email="ada@example.com")
    response = client.post("/auth/login", json={"username": "ADA@Example.com", "password": PASSWORD})
    assert response.status_code == 200


def test_login_accepts_the_oauth2_password_form(client, auth):
    auth.register(username="ada")
    response = client.post(
        "/auth/login", data={"grant_type": "password", "username": "ada", "password": PASSWORD}
    )
    assert response.status_code == 200
    assert response.get_json()["token_type"] == "Bearer"


def test_login_refuses_another_grant_type(client, auth):
    auth.register(username="ada")
    response = client.post(
        "/auth/login",
        data={"grant_type": "client_credentials", "username": "ada", "password": PASSWORD},
    )
    assert response.status_code in (400, 422)
    assert "error" in response.get_json()


def test_login_form_is_only_accepted_at_login(client, auth):
    response = client.post("/auth/register", data={"username": "ada"})
    assert response.status_code == 415
    assert error_code(response) == "unsupported_media_type"


def test_login_failure_is_the_same_for_unknown_user_and_wrong_password(client, auth):
    auth.register(username="ada")
    wrong = client.post("/auth/login", json={"username": "ada", "password": "wrong password!!"})
    unknown = client.post("/auth/login", json={"username": "nobody", "password": "wrong password!!"})
    assert wrong.status_code == unknown.status_code == 401
    assert wrong.get_json() == unknown.get_json()
    assert error_code(wrong) == "invalid_credentials"


def test_login_of_a_deactivated_user_fails(app, client, auth):
    from authapi.extensions import db
    from authapi.models import User

    auth.register(username="ada")
    with app.app_context():
        db.session.query(User).update({"is_active": False})
        db.session.commit()
    response = client.post("/auth/login", json={"username": "ada", "password": PASSWORD})
    assert response.status_code == 401
    assert error_code(response) == "invalid_credentials"


def test_login_sets_last_login_at(client, auth):
    user, pair = auth.user()
    me = client.get("/users/me", headers=bearer(pair["access_token"])).get_json()
    assert user["last_login_at"] is None
    assert me["last_login_at"] is not None


@pytest.mark.parametrize(
    "body", [{}, {"username": "ada"}, {"password": PASSWORD}, {"username": 1, "password": PASSWORD},
             {"username": "ada", "password": PASSWORD, "remember": True}]
)
def test_login_validation(client, body):
    response = client.post("/auth/login", json=body)
    assert response.status_code == 422
    assert error_code(response) == "validation_error"


# ---------------------------------------------------------------- password change


def test_password_change_starts_a_new_session_and_ends_the_others(client, auth):
    user, first = auth.user()
    new_password = "a completely new passphrase"
    response = client.post(
        "/auth/password/change",
        json={"current_password": PASSWORD, "new_password": new_password},
        headers=bearer(first["access_token"]),
    )
    assert response.status_code == 200
    pair = response.get_json()
    assert client.get("/users/me", headers=bearer(first["access_token"])).status_code == 401
    assert client.get("/users/me", headers=bearer(pair["access_token"])).status_code == 200
    assert client.post("/auth/login", json={"username": user["username"], "password": PASSWORD}).status_code == 401
    auth.login(user["username"], new_password)


@pytest.mark.parametrize(
    "body, field",
    [
        ({"current_password": "wrong password!!", "new_password": "a completely new passphrase"},
         "current_password"),
        ({"current_password": PASSWORD, "new_password": "short"}, "new_password"),
        ({"current_password": PASSWORD, "new_password": "password"}, "new_password"),
        ({"current_password": PASSWORD}, "new_password"),
    ],
)
def test_password_change_refusals_change_nothing(client, auth, body, field):
    user, pair = auth.user()
    response = client.post("/auth/password/change", json=body, headers=bearer(pair["access_token"]))
    assert response.status_code == 422
    assert field in response.get_json()["error"]["details"]
    assert client.get("/users/me", headers=bearer(pair["access_token"])).status_code == 200
    auth.login(user["username"])


def test_password_change_rejects_the_username_in_the_new_password(client, auth):
    user, pair = auth.user(username="ada_lovelace")
    response = client.post(
        "/auth/password/change",
        json={"current_password": PASSWORD, "new_password": "my name is ada_lovelace!"},
        headers=bearer(pair["access_token"]),
    )
    assert response.status_code == 422
    assert "new_password" in response.get_json()["error"]["details"]
