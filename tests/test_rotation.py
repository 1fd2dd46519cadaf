"""Refresh rotation and reuse (services/sessions.py, API.md §2, §7): each
refresh spends its token and issues the next one in the same session; a spent
token presented again is reuse, which ends that session for every holder."""

import pytest
from sqlalchemy import event

from authapi.extensions import Session

from .conftest import assert_refused, bearer, claims_of, error_code, me, refresh

NOT_REDIS = "redis://127.0.0.1:1/0"  # a closed port


# ---------------------------------------------------------------- rotation


def test_refresh_rotates_the_refresh_token(client, auth):
    _, pair = auth.user()
    response = client.post("/auth/refresh", headers=bearer(pair["refresh_token"]))
    assert response.status_code == 200
    new = response.get_json()
    assert new["refresh_token"] != pair["refresh_token"]
    assert client.get("/users/me", headers=bearer(new["access_token"])).status_code == 200
    again = client.post("/auth/refresh", headers=bearer(new["refresh_token"]))
    assert again.status_code == 200


def test_refresh_accepts_the_token_in_the_json_body(client, auth):
    _, pair = auth.user()
    response = client.post("/auth/refresh", json={"refresh_token": pair["refresh_token"]})
    assert response.status_code == 200


def test_refresh_without_a_token_is_unauthorized(client):
    response = client.post("/auth/refresh", json={})
    assert response.status_code == 401
    assert error_code(response) == "unauthorized"


def test_refresh_keeps_the_session(client, auth):
    _, pair = auth.user()
    new = client.post("/auth/refresh", headers=bearer(pair["refresh_token"])).get_json()
    items = client.get("/auth/sessions", headers=bearer(new["access_token"])).get_json()["items"]
    assert len(items) == 1 and items[0]["current"] is True


# ---------------------------------------------------------------- reuse


def test_spent_refresh_token_is_token_reused(client, pair):
    assert refresh(client, pair["refresh_token"]).status_code == 200
    assert_refused(refresh(client, pair["refresh_token"]), 401, "token_reused")


def test_reuse_ends_the_session_for_both_holders(client, pair):
    rotated = refresh(client, pair["refresh_token"]).get_json()
    assert_refused(refresh(client, pair["refresh_token"]), 401, "token_reused")
    assert_refused(refresh(client, rotated["refresh_token"]), 401, "token_revoked")
    assert_refused(me(client, rotated["access_token"]), 401, "token_revoked")
    assert_refused(me(client, pair["access_token"]), 401, "token_revoked")


def test_reuse_spares_the_users_other_sessions(client, auth):
    user, stolen = auth.user()
    other = auth.login(user["username"])
    assert refresh(client, stolen["refresh_token"]).status_code == 200
    assert_refused(refresh(client, stolen["refresh_token"]), 401, "token_reused")
    assert me(client, other["access_token"]).status_code == 200
    assert refresh(client, other["refresh_token"]).status_code == 200


def test_reuse_removes_the_session_from_the_list(client, auth):
    user, stolen = auth.user()
    other = auth.login(user["username"])
    assert refresh(client, stolen["refresh_token"]).status_code == 200
    assert_refused(refresh(client, stolen["refresh_token"]), 401, "token_reused")
    items = client.get("/auth/sessions", headers=bearer(other["access_token"])).get_json()["items"]
    assert [s["id"] for s in items] == [claims_of(other["access_token"])["sid"]]


# ---------------------------------------------------------------- refresh in the body


def test_refresh_via_json_body_works_like_the_header(client, pair):
    response = client.post("/auth/refresh", json={"refresh_token": pair["refresh_token"]})
    assert response.status_code == 200
    rotated = response.get_json()
    assert claims_of(rotated["refresh_token"])["sid"] == claims_of(pair["refresh_token"])["sid"]
    assert me(client, rotated["access_token"]).status_code == 200
    # The body-presented token is spent exactly as a header-presented one.
    assert_refused(refresh(client, pair["refresh_token"]), 401, "token_reused")


def test_spent_refresh_token_in_the_json_body_is_token_reused(client, pair):
    assert refresh(client, pair["refresh_token"]).status_code == 200
    response = client.post("/auth/refresh", json={"refresh_token": pair["refresh_token"]})
    assert_refused(response, 401, "token_reused")


@pytest.mark.parametrize("value", [123, 1.5, True, ["a.b.c"], {"token": "a.b.c"}, None, 0, False, ""])
def test_non_string_refresh_token_in_the_body_is_a_json_4xx(client, pair, value):
    response = client.post("/auth/refresh", json={"refresh_token": value})
    assert 400 <= response.status_code < 500
    assert error_code(response) in {"token_invalid", "unauthorized", "validation_error", "bad_request"}
    # Nothing was spent.
    assert refresh(client, pair["refresh_token"]).status_code == 200


def test_garbage_refresh_token_in_the_body_is_token_invalid(client):
    response = client.post("/auth/refresh", json={"refresh_token": "not-a-token"})
    assert_refused(response, 401, "token_invalid")


# ---------------------------------------------------------------- Redis down


def test_refresh_with_redis_down_is_service_unavailable_and_spends_nothing(
    make_app, client, pair
):
    down = make_app(REDIS_URL=NOT_REDIS).test_client()
    assert_refused(refresh(down, pair["refresh_token"]), 503, "service_unavailable")
    assert refresh(client, pair["refresh_token"]).status_code == 200


# ---------------------------------------------------------------- durability


@pytest.fixture
def commits(app):
    """synchronous_commit in force at each commit the app makes (PostgreSQL)."""
    seen = []

    def before_commit(session):
        seen.append(session.connection().exec_driver_sql("SHOW synchronous_commit").scalar())

    with app.app_context():
        if app.extensions["sqlalchemy"].engine.dialect.name != "postgresql":
            pytest.skip("PostgreSQL's setting")
    event.listen(Session, "before_commit", before_commit)
    yield seen
    event.remove(Session, "before_commit", before_commit)


def test_only_the_rotation_commits_without_waiting_for_its_wal(client, auth, commits):
    user, pair = auth.user()
    commits.clear()

    assert refresh(client, pair["refresh_token"]).status_code == 200
    assert commits == ["off"]
    # The setting ends with its transaction: the next commits on the same
    # pooled connection wait again (a login, a logout, a reuse's revocation).
    commits.clear()
    second = auth.login(user["username"])
    assert client.post("/auth/logout", headers=bearer(second["access_token"])).status_code == 200
    assert refresh(client, pair["refresh_token"]).status_code == 401  # reuse: the session ends
    assert commits and set(commits) == {"on"}
