"""Forward authentication, /auth/verify (API.md §11): every method checked,
the general path's refusals for the same tokens, no database read, no rate
limit, fail closed on Redis. tests/test_forward_auth_nginx.py runs it behind
a real nginx."""

from datetime import timedelta

import pytest
from flask_jwt_extended import create_access_token

from authapi import revocation
from authapi.extensions import store

from .conftest import PASSWORD, assert_refused, bearer, claims_of, error_code, free_port, me, sign
from .test_hot_path import statements

METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
X_AUTH = ("X-Auth-User-Id", "X-Auth-Role", "X-Auth-Session-Id")


def verify(client, token=None, method="GET", query=""):
    return client.open("/auth/verify" + query, method=method, headers=bearer(token) if token else {})


def assert_no_identity(response):
    assert not [name for name in response.headers.keys() if name.lower().startswith("x-auth-")]


@pytest.mark.parametrize("method", METHODS)
def test_a_valid_access_token_passes_with_who_it_is(client, auth, method):
    user, pair = auth.user()

    response = verify(client, pair["access_token"], method)

    assert response.status_code == 200
    assert response.data == b""
    assert response.headers["X-Auth-User-Id"] == str(user["id"])
    assert response.headers["X-Auth-Role"] == "user"
    assert response.headers["X-Auth-Session-Id"] == claims_of(pair["access_token"])["sid"]


@pytest.mark.parametrize("method", METHODS)
def test_no_token_is_refused_for_every_method_options_and_head_included(client, method):
    response = verify(client, method=method)

    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    if method != "HEAD":
        assert error_code(response) == "unauthorized"
    assert_no_identity(response)


def _refused_tokens(app, client, auth):
    """name -> a token the general path refuses, made the way each refusal happens."""
    _, pair = auth.user()
    _, logged_out = auth.user()
    client.post("/auth/logout", headers=bearer(logged_out["access_token"]))
    _, changed = auth.user()
    assert client.post("/auth/password/change", headers=bearer(changed["access_token"]), json={
        "current_password": PASSWORD, "new_password": "another good password here"}).status_code == 200
    claims = claims_of(pair["access_token"])
    with app.app_context():
        expired = create_access_token(claims["sub"], additional_claims={"role": "user", "sid": claims["sid"]},
                                      expires_delta=timedelta(seconds=-1))
    return {
        "refresh token as access": pair["refresh_token"],
        "logged out": logged_out["access_token"],
        "expired": expired,
        "bad signature": sign(claims, key="another key of at least thirty-two bytes"),
        "missing claim": sign({k: v for k, v in claims.items() if k != "sid"}),
        "password changed": changed["access_token"],
        "unknown type": sign({**claims, "type": "id"}),
        "garbage": "not.a.token",
    }


def test_it_refuses_exactly_what_the_general_path_refuses(app, client, auth):
    for name, token in _refused_tokens(app, client, auth).items():
        general = me(client, token)
        for method in METHODS:
            response = verify(client, token, method)
            assert response.status_code == general.status_code == 401, (name, method)
            if method != "HEAD":
                assert error_code(response) == error_code(general), (name, method)
            assert response.headers["WWW-Authenticate"].startswith("Bearer")
            assert_no_identity(response)


def test_revocation_is_honoured_on_the_very_next_request(client, auth):
    _, pair = auth.user()
    assert verify(client, pair["access_token"]).status_code == 200

    client.post("/auth/logout", headers=bearer(pair["access_token"]))

    assert_refused(verify(client, pair["access_token"]), 401, "token_revoked")


def test_a_role_is_required_only_when_asked(client, auth):
    _, pair = auth.user()
    token = pair["access_token"]

    assert verify(client, token, query="?role=user").status_code == 200
    refused = verify(client, token, query="?role=admin")
    assert_refused(refused, 403, "forbidden")
    assert_no_identity(refused)
    # A role that does not exist is the proxy's mistake, said so.
    assert_refused(verify(client, token, query="?role=root"), 422, "validation_error")
    # The token is checked first: without one, no role helps.
    assert_refused(verify(client, query="?role=admin"), 401, "unauthorized")


def test_an_admin_passes_the_admin_check(app, client, auth):
    user, pair = auth.user()
    from authapi.extensions import db
    from authapi.models import User
    with app.app_context():
        db.session.get(User, user["id"]).role = "admin"
        db.session.commit()
    token = auth.login(user["username"])["access_token"]

    response = verify(client, token, query="?role=admin")

    assert response.status_code == 200
    assert response.headers["X-Auth-Role"] == "admin"


def test_it_reads_no_database(app, client, auth):
    _, pair = auth.user()
    refused = _refused_tokens(app, client, auth)

    with statements(app) as seen:
        for method in METHODS:
            assert verify(client, pair["access_token"], method).status_code == 200
            assert verify(client, method=method).status_code == 401
            for token in refused.values():
                assert verify(client, token, method).status_code == 401

    assert seen == []


def test_a_lost_user_key_is_rebuilt_once_from_the_database(app, client, auth):
    # The one database read allowed: Redis lost the user's marks (API.md §7).
    user, pair = auth.user()
    with app.app_context():
        store.delete(revocation.user_key(user["id"]))

    with statements(app) as first:
        assert verify(client, pair["access_token"]).status_code == 200
    with statements(app) as second:
        assert verify(client, pair["access_token"]).status_code == 200

    assert [kind for kind, _ in first] == ["SELECT"]
    assert second == []


def test_it_is_not_rate_limited(make_app):
    app = make_app(RATELIMIT_ENABLED="true", RATELIMIT_DEFAULT="2 per minute")
    client = app.test_client()
    from .conftest import AuthActions
    _, pair = AuthActions(client).user()

    answers = [verify(client, pair["access_token"]) for _ in range(10)]

    assert [a.status_code for a in answers] == [200] * 10
    assert not any("X-RateLimit-Limit" in a.headers for a in answers)


def test_a_body_is_ignored(client, auth):
    # A proxy may pass the client's body on; it is never read, whatever it is.
    _, pair = auth.user()

    response = client.post("/auth/verify", data=b"\xff\x00 not json", content_type="text/plain",
                           headers=bearer(pair["access_token"]))

    assert response.status_code == 200


def test_redis_unreachable_is_503_never_a_pass(make_app, database_url, client, auth):
    _, pair = auth.user()
    cut_off = make_app(REDIS_URL=f"redis://127.0.0.1:{free_port()}/0")

    response = verify(cut_off.test_client(), pair["access_token"])

    assert_refused(response, 503, "service_unavailable")
    assert_no_identity(response)
