"""Sessions (services/sessions.py, API.md §3): one per login, listed with the
current one marked, ended one at a time (logout, DELETE /auth/sessions/{id})
or all at once (logout-all), and the tokens of an ended session revoked."""

from .conftest import assert_refused, bearer, claims_of, error_code, me, refresh


# ---------------------------------------------------------------- logout


def test_logout_ends_only_this_session(client, auth):
    user, first = auth.user()
    second = auth.login(user["username"])
    response = client.post("/auth/logout", headers=bearer(first["access_token"]))
    assert response.status_code == 200
    assert client.get("/users/me", headers=bearer(first["access_token"])).status_code == 401
    assert client.post("/auth/refresh", headers=bearer(first["refresh_token"])).status_code == 401
    assert client.get("/users/me", headers=bearer(second["access_token"])).status_code == 200


def test_logout_all_ends_every_session(client, auth):
    user, first = auth.user()
    second = auth.login(user["username"])
    response = client.post("/auth/logout-all", headers=bearer(first["access_token"]))
    assert response.status_code == 200
    for pair in (first, second):
        me = client.get("/users/me", headers=bearer(pair["access_token"]))
        assert me.status_code == 401 and error_code(me) == "token_revoked"
        assert client.post("/auth/refresh", headers=bearer(pair["refresh_token"])).status_code == 401
    third = auth.login(user["username"])
    assert client.get("/users/me", headers=bearer(third["access_token"])).status_code == 200


def test_logout_rejects_a_body_with_fields(client, auth):
    _, pair = auth.user()
    response = client.post("/auth/logout", json={"everything": True}, headers=bearer(pair["access_token"]))
    assert response.status_code == 422
    assert client.get("/users/me", headers=bearer(pair["access_token"])).status_code == 200


def test_access_token_after_logout_is_token_revoked(client, pair):
    assert client.post("/auth/logout", headers=bearer(pair["access_token"])).status_code == 200
    assert_refused(me(client, pair["access_token"]), 401, "token_revoked")


def test_refresh_token_after_logout_is_token_revoked(client, pair):
    assert client.post("/auth/logout", headers=bearer(pair["access_token"])).status_code == 200
    assert_refused(refresh(client, pair["refresh_token"]), 401, "token_revoked")


def test_logout_leaves_the_users_other_sessions_working(client, auth):
    user, first = auth.user()
    second = auth.login(user["username"])
    assert client.post("/auth/logout", headers=bearer(first["access_token"])).status_code == 200
    assert me(client, second["access_token"]).status_code == 200
    assert refresh(client, second["refresh_token"]).status_code == 200


def test_every_token_after_logout_all_is_token_revoked(client, auth):
    user, first = auth.user()
    second = auth.login(user["username"])
    rotated = refresh(client, second["refresh_token"]).get_json()
    assert client.post("/auth/logout-all", headers=bearer(first["access_token"])).status_code == 200
    for access in (first["access_token"], second["access_token"], rotated["access_token"]):
        assert_refused(me(client, access), 401, "token_revoked")
    for refresh_token in (first["refresh_token"], rotated["refresh_token"]):
        assert_refused(refresh(client, refresh_token), 401, "token_revoked")


def test_logout_all_spares_other_users(client, auth):
    _, mine = auth.user()
    _, theirs = auth.user()
    assert client.post("/auth/logout-all", headers=bearer(mine["access_token"])).status_code == 200
    assert me(client, theirs["access_token"]).status_code == 200


def test_login_after_logout_all_works(client, auth):
    user, pair = auth.user()
    assert client.post("/auth/logout-all", headers=bearer(pair["access_token"])).status_code == 200
    fresh = auth.login(user["username"])
    assert me(client, fresh["access_token"]).status_code == 200
    assert refresh(client, fresh["refresh_token"]).status_code == 200


# ---------------------------------------------------------------- listing and ending one


def test_sessions_lists_active_sessions_with_current(client, auth):
    user, first = auth.user()
    second = auth.login(user["username"], headers={"User-Agent": "phone/1.0"})
    client.post("/auth/logout", headers=bearer(first["access_token"]))
    response = client.get("/auth/sessions", headers=bearer(second["access_token"]))
    assert response.status_code == 200
    items = response.get_json()["items"]
    assert len(items) == 1
    session = items[0]
    assert set(session) == {"id", "created_at", "last_used_at", "expires_at", "user_agent", "ip", "current"}
    assert session["current"] is True and session["user_agent"] == "phone/1.0"


def test_delete_session_revokes_its_tokens(client, auth):
    user, first = auth.user()
    second = auth.login(user["username"])
    items = client.get("/auth/sessions", headers=bearer(second["access_token"])).get_json()["items"]
    other = next(item["id"] for item in items if not item["current"])
    response = client.delete(f"/auth/sessions/{other}", headers=bearer(second["access_token"]))
    assert response.status_code == 204
    assert response.get_data() == b""
    assert client.get("/users/me", headers=bearer(first["access_token"])).status_code == 401
    assert client.get("/users/me", headers=bearer(second["access_token"])).status_code == 200


def test_delete_another_users_session_is_not_found(client, auth):
    _, mine = auth.user()
    _, theirs = auth.user()
    their_id = client.get("/auth/sessions", headers=bearer(theirs["access_token"])).get_json()["items"][0]["id"]
    response = client.delete(f"/auth/sessions/{their_id}", headers=bearer(mine["access_token"]))
    assert response.status_code == 404
    assert error_code(response) == "not_found"
    assert client.get("/users/me", headers=bearer(theirs["access_token"])).status_code == 200


def test_delete_unknown_session_is_not_found(client, auth):
    _, pair = auth.user()
    response = client.delete("/auth/sessions/does-not-exist", headers=bearer(pair["access_token"]))
    assert response.status_code == 404


def test_tokens_of_a_deleted_session_are_token_revoked(client, auth):
    user, doomed = auth.user()
    survivor = auth.login(user["username"])
    sid = claims_of(doomed["access_token"])["sid"]
    response = client.delete(f"/auth/sessions/{sid}", headers=bearer(survivor["access_token"]))
    assert response.status_code == 204
    assert_refused(me(client, doomed["access_token"]), 401, "token_revoked")
    assert_refused(refresh(client, doomed["refresh_token"]), 401, "token_revoked")
    assert me(client, survivor["access_token"]).status_code == 200


def test_deleting_the_current_session_revokes_its_own_token(client, pair):
    sid = claims_of(pair["access_token"])["sid"]
    response = client.delete(f"/auth/sessions/{sid}", headers=bearer(pair["access_token"]))
    assert response.status_code == 204
    assert_refused(me(client, pair["access_token"]), 401, "token_revoked")
