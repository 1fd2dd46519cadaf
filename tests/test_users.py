"""GET/PATCH/DELETE /users/me."""

import pytest

from .conftest import PASSWORD, bearer, error_code


def test_me_returns_the_caller(client, auth):
    user, pair = auth.user(username="ada", full_name="Ada Lovelace")
    response = client.get("/users/me", headers=bearer(pair["access_token"]))
    assert response.status_code == 200
    body = response.get_json()
    assert body["id"] == user["id"] and body["full_name"] == "Ada Lovelace"
    assert "password_hash" not in body


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
