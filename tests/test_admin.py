"""Admin endpoints of the users blueprint (API.md §3) and their guard."""

import pytest

from authapi.extensions import db
from authapi.models import User

from .conftest import PASSWORD, bearer, error_code

ADMIN_ENDPOINTS = [
    ("get", "/users", None),
    ("post", "/users", {"email": "n@example.com", "username": "newbie", "password": PASSWORD}),
    ("get", "/users/1", None),
    ("patch", "/users/1", {"full_name": "X"}),
    ("delete", "/users/1", None),
]


def promote(app, username):
    with app.app_context():
        db.session.query(User).filter_by(username=username).update({"role": "admin"})
        db.session.commit()


@pytest.fixture
def admin(app, auth):
    """An admin's token pair (the first user, id 1)."""
    auth.register(username="root", email="root@example.com")
    promote(app, "root")
    return auth.login("root")


@pytest.fixture
def admin_headers(admin):
    return bearer(admin["access_token"])


# ---------------------------------------------------------------- the guard


@pytest.mark.parametrize("method, path, body", ADMIN_ENDPOINTS)
def test_admin_endpoints_refuse_anonymous_callers(client, admin, method, path, body):
    response = getattr(client, method)(path, json=body)
    assert response.status_code == 401
    assert error_code(response) == "unauthorized"


@pytest.mark.parametrize("method, path, body", ADMIN_ENDPOINTS)
def test_admin_endpoints_refuse_plain_users(client, auth, admin, method, path, body):
    _, pair = auth.user(username="pleb")
    response = getattr(client, method)(path, json=body, headers=bearer(pair["access_token"]))
    assert response.status_code == 403
    assert error_code(response) == "forbidden"
    # Nothing happened to the admin (id 1).
    assert client.get("/users/me", headers=bearer(pair["access_token"])).status_code == 200
    with client.application.app_context():
        assert db.session.get(User, 1).full_name is None


# ---------------------------------------------------------------- list


def test_list_users_paginates_in_a_stable_order(client, auth, admin_headers):
    for i in range(4):
        auth.register(username=f"member{i}")
    first = client.get("/users?per_page=2", headers=admin_headers).get_json()
    assert first["total"] == 5 and first["pages"] == 3 and first["page"] == 1 and first["per_page"] == 2
    second = client.get("/users?per_page=2&page=2", headers=admin_headers).get_json()
    ids = [u["id"] for u in first["items"] + second["items"]]
    assert ids == sorted(ids) and len(set(ids)) == 4


def test_list_users_page_past_the_end_is_empty(client, admin_headers):
    body = client.get("/users?page=50", headers=admin_headers).get_json()
    assert body["items"] == [] and body["total"] == 1 and body["page"] == 50


@pytest.mark.parametrize(
    "query, field",
    [("per_page=0", "per_page"), ("per_page=101", "per_page"), ("page=0", "page"),
     ("page=-1", "page"), ("page=abc", "page"), ("per_page=1.5", "per_page"),
     ("role=root", "role"), ("is_active=maybe", "is_active"), ("page=99999999999999", "page")],
)
def test_list_users_rejects_bad_query_values(client, admin_headers, query, field):
    response = client.get(f"/users?{query}", headers=admin_headers)
    assert response.status_code == 422
    assert field in response.get_json()["error"]["details"]


def test_list_users_filters(app, client, auth, admin_headers):
    auth.register(username="alice", email="alice@wonder.land")
    auth.register(username="bob", email="bob@example.com")
    with app.app_context():
        db.session.query(User).filter_by(username="bob").update({"is_active": False})
        db.session.commit()

    def usernames(query):
        response = client.get(f"/users?{query}", headers=admin_headers)
        assert response.status_code == 200
        return {u["username"] for u in response.get_json()["items"]}

    assert usernames("q=WONDER") == {"alice"}
    assert usernames("q=ro") == {"root"}
    assert usernames("q=%25") == set()  # a literal %, not a wildcard
    assert usernames("role=admin") == {"root"}
    assert usernames("role=user") == {"alice", "bob"}
    assert usernames("is_active=false") == {"bob"}
    assert usernames("is_active=true&role=user") == {"alice"}


# ---------------------------------------------------------------- create, get


def test_create_user_with_role_and_verification(client, admin_headers):
    response = client.post(
        "/users",
        json={"email": "ops@example.com", "username": "ops", "password": PASSWORD,
              "role": "admin", "is_verified": True, "full_name": "Ops"},
        headers=admin_headers,
    )
    assert response.status_code == 201
    body = response.get_json()
    assert body["role"] == "admin" and body["is_verified"] is True
    assert client.post("/auth/login", json={"username": "ops", "password": PASSWORD}).status_code == 200


@pytest.mark.parametrize(
    "body, status, field",
    [
        ({"email": "root@example.com", "username": "other", "password": PASSWORD}, 409, "email"),
        ({"email": "x@example.com", "username": "ROOT", "password": PASSWORD}, 409, "username"),
        ({"email": "x@example.com", "username": "xx1", "password": "password"}, 422, "password"),
        ({"email": "x@example.com", "username": "xx1", "password": PASSWORD, "role": "god"}, 422, "role"),
        ({"email": "x@example.com", "username": "xx1", "password": PASSWORD, "is_active": False},
         422, "is_active"),
        ({"email": "bad", "username": "xx1", "password": PASSWORD}, 422, "email"),
    ],
)
def test_create_user_refusals(client, admin_headers, body, status, field):
    response = client.post("/users", json=body, headers=admin_headers)
    assert response.status_code == status
    assert field in response.get_json()["error"]["details"]


def test_create_user_works_while_registration_is_closed(make_app, auth):
    app = make_app(REGISTRATION_OPEN="false")
    client = app.test_client()
    with app.app_context():
        from authapi.services import admin

        admin.create_user("test", "root@example.com", "root", PASSWORD, role="admin", is_verified=True)
    token = client.post("/auth/login", json={"username": "root", "password": PASSWORD}).get_json()
    response = client.post(
        "/users", json={"email": "n@example.com", "username": "newbie", "password": PASSWORD},
        headers=bearer(token["access_token"]),
    )
    assert response.status_code == 201


def test_get_user(client, auth, admin_headers):
    user = auth.register(username="alice")
    response = client.get(f"/users/{user['id']}", headers=admin_headers)
    assert response.status_code == 200 and response.get_json() == user


@pytest.mark.parametrize("path", ["/users/999", "/users/99999999999999999999", "/users/abc", "/users/-1"])
def test_get_unknown_user_is_not_found(client, admin_headers, path):
    response = client.get(path, headers=admin_headers)
    assert response.status_code == 404
    assert error_code(response) == "not_found"


# ---------------------------------------------------------------- update


def test_update_user_fields(client, auth, admin_headers):
    user = auth.register(username="alice")
    response = client.patch(
        f"/users/{user['id']}",
        json={"full_name": "Alice L", "username": "alice2", "is_verified": True},
        headers=admin_headers,
    )
    assert response.status_code == 200
    body = response.get_json()
    assert (body["full_name"], body["username"], body["is_verified"]) == ("Alice L", "alice2", True)


def test_update_email_makes_it_unverified(app, client, auth, admin_headers):
    user = auth.register(username="alice")
    client.patch(f"/users/{user['id']}", json={"is_verified": True}, headers=admin_headers)
    body = client.patch(
        f"/users/{user['id']}", json={"email": "new@example.com"}, headers=admin_headers
    ).get_json()
    assert body["email"] == "new@example.com" and body["is_verified"] is False


@pytest.mark.parametrize("change", [{"role": "admin"}, {"is_active": False}])
def test_role_change_or_deactivation_revokes_tokens_at_once(client, auth, admin_headers, change):
    user, pair = auth.user(username="alice")
    response = client.patch(f"/users/{user['id']}", json=change, headers=admin_headers)
    assert response.status_code == 200
    me = client.get("/users/me", headers=bearer(pair["access_token"]))
    assert me.status_code == 401 and error_code(me) == "token_revoked"
    refreshed = client.post("/auth/refresh", headers=bearer(pair["refresh_token"]))
    assert refreshed.status_code == 401 and error_code(refreshed) == "token_revoked"


def test_role_change_puts_the_new_role_in_new_tokens(client, auth, admin_headers):
    user, _ = auth.user(username="alice")
    client.patch(f"/users/{user['id']}", json={"role": "admin"}, headers=admin_headers)
    pair = auth.login("alice")
    assert client.get("/users", headers=bearer(pair["access_token"])).status_code == 200


def test_deactivated_user_cannot_log_in_and_activation_restores(client, auth, admin_headers):
    user = auth.register(username="alice")
    client.patch(f"/users/{user['id']}", json={"is_active": False}, headers=admin_headers)
    assert client.post("/auth/login", json={"username": "alice", "password": PASSWORD}).status_code == 401
    client.patch(f"/users/{user['id']}", json={"is_active": True}, headers=admin_headers)
    auth.login("alice")


def test_update_unrelated_fields_keeps_tokens(client, auth, admin_headers):
    user, pair = auth.user(username="alice")
    client.patch(f"/users/{user['id']}", json={"full_name": "A"}, headers=admin_headers)
    assert client.get("/users/me", headers=bearer(pair["access_token"])).status_code == 200


@pytest.mark.parametrize(
    "body, status, field",
    [({"username": "root"}, 409, "username"), ({"email": "ROOT@example.com"}, 409, "email"),
     ({"role": "superuser"}, 422, "role"), ({"password": PASSWORD}, 422, "password"),
     ({"id": 5}, 422, "id"), ({"is_active": "nope"}, 422, "is_active"),
     ({"is_active": 0}, 422, "is_active"), ({"is_active": "false"}, 422, "is_active"),
     ({"is_verified": "true"}, 422, "is_verified")],
)
def test_update_user_refusals_change_nothing(client, auth, admin_headers, body, status, field):
    user = auth.register(username="alice")
    response = client.patch(f"/users/{user['id']}", json=body, headers=admin_headers)
    assert response.status_code == status
    assert field in response.get_json()["error"]["details"]
    assert client.get(f"/users/{user['id']}", headers=admin_headers).get_json() == user


# ---------------------------------------------------------------- delete


def test_delete_user_revokes_its_tokens(client, auth, admin_headers):
    user, pair = auth.user(username="alice")
    response = client.delete(f"/users/{user['id']}", headers=admin_headers)
    assert response.status_code == 204
    me = client.get("/users/me", headers=bearer(pair["access_token"]))
    assert me.status_code == 401 and error_code(me) == "token_revoked"
    assert client.get(f"/users/{user['id']}", headers=admin_headers).status_code == 404


def test_admin_delete_refuses_body_fields(client, auth, admin_headers):
    user = auth.register(username="alice")
    response = client.delete(f"/users/{user['id']}", json={"x": 1}, headers=admin_headers)
    assert response.status_code == 422
    assert client.get(f"/users/{user['id']}", headers=admin_headers).status_code == 200


# ---------------------------------------------------------------- the last admin


@pytest.mark.parametrize(
    "method, body", [("patch", {"role": "user"}), ("patch", {"is_active": False}), ("delete", None)]
)
def test_last_active_admin_cannot_be_removed(client, admin, admin_headers, method, body):
    response = getattr(client, method)("/users/1", json=body, headers=admin_headers)
    assert response.status_code == 409
    assert error_code(response) == "conflict"
    me = client.get("/users/me", headers=admin_headers)
    assert me.status_code == 200 and me.get_json()["role"] == "admin"


def test_an_admin_can_be_demoted_while_another_remains(app, client, auth, admin_headers):
    auth.register(username="second")
    promote(app, "second")
    response = client.patch("/users/1", json={"role": "user"}, headers=admin_headers)
    assert response.status_code == 200
    # The demoted admin's own token was revoked with the role change.
    assert client.get("/users/me", headers=admin_headers).status_code == 401


def test_inactive_admins_do_not_count(app, client, auth, admin_headers):
    auth.register(username="dormant")
    with app.app_context():
        db.session.query(User).filter_by(username="dormant").update({"role": "admin", "is_active": False})
        db.session.commit()
    assert client.delete("/users/1", headers=admin_headers).status_code == 409
