"""Token introspection, POST /auth/introspect (RFC 7662, API.md §11): client
authentication, the claims of a token accepted now, exactly {"active": false}
for anything else, and nothing spent or revoked. In process, then over HTTP
against a real gunicorn with requests and with Authlib's RFC 7662 client."""

from datetime import timedelta

import pytest
import requests
from authlib.integrations.requests_client import OAuth2Session
from flask_jwt_extended import create_refresh_token

from config import ConfigError, load_config

from .conftest import AuthActions, assert_refused, base_env, bearer, claims_of, refresh, sign

CLIENT_ID, CLIENT_SECRET = "gateway", "a secret: with colon+plus/and=more"
CLIENTS = f"{CLIENT_ID}:{CLIENT_SECRET},billing:another-secret"
INACTIVE = {"active": False}


@pytest.fixture
def client(make_app):
    return make_app(INTROSPECTION_CLIENTS=CLIENTS).test_client()


def introspect(client, token, auth=(CLIENT_ID, CLIENT_SECRET), **fields):
    headers = {}
    if auth is not None:
        import base64
        headers["Authorization"] = "Basic " + base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
    return client.post("/auth/introspect", data={"token": token, **fields}, headers=headers)


def test_an_access_token_accepted_now_is_active_with_its_claims(client):
    user, pair = AuthActions(client).user()
    claims = claims_of(pair["access_token"])

    response = introspect(client, pair["access_token"], token_type_hint="access_token")

    assert response.status_code == 200
    assert response.get_json() == {
        "active": True, "token_type": "access_token", "sub": str(user["id"]), "role": "user",
        **{name: claims[name] for name in ("exp", "iat", "jti", "sid")},
    }


def test_a_refresh_token_is_active_only_while_current_and_introspection_spends_nothing(client):
    _, pair = AuthActions(client).user()

    for _ in range(3):
        body = introspect(client, pair["refresh_token"]).get_json()
        assert body["active"] is True and body["token_type"] == "refresh_token"
        assert "role" not in body
    # Introspected three times, still the session's current token.
    rotated = refresh(client, pair["refresh_token"])
    assert rotated.status_code == 200

    assert introspect(client, pair["refresh_token"]).get_json() == INACTIVE  # spent
    assert introspect(client, rotated.get_json()["refresh_token"]).get_json()["active"] is True


def test_a_revoked_token_is_inactive(client):
    _, pair = AuthActions(client).user()
    assert introspect(client, pair["access_token"]).get_json()["active"] is True

    client.post("/auth/logout", headers=bearer(pair["access_token"]))

    assert introspect(client, pair["access_token"]).get_json() == INACTIVE
    assert introspect(client, pair["refresh_token"]).get_json() == INACTIVE


def test_anything_else_is_exactly_inactive(client):
    _, pair = AuthActions(client).user()
    claims = claims_of(pair["access_token"])
    with client.application.app_context():
        expired = create_refresh_token(claims["sub"], additional_claims={"sid": claims["sid"]},
                                       expires_delta=timedelta(seconds=-1))
    for token in ["", " ", "not.a.token", "x" * 20_000, "a\x00b", "%ff", expired,
                  sign(claims, key="another key of at least thirty-two bytes"),
                  sign({**claims, "sub": "99999"}), sign({**claims, "sub": "0"}),
                  sign({k: v for k, v in claims.items() if k != "jti"})]:
        response = introspect(client, token)
        assert (response.status_code, response.get_json()) == (200, INACTIVE), repr(token[:40])


def test_no_or_a_wrong_client_is_401_with_basic(client):
    _, pair = AuthActions(client).user()
    for auth in [None, (CLIENT_ID, "wrong"), ("billing", CLIENT_SECRET), ("nobody", "x"), ("", "")]:
        response = introspect(client, pair["access_token"], auth=auth)
        assert_refused(response, 401, "unauthorized")
        assert response.headers["WWW-Authenticate"].startswith("Basic")
    # A bearer token is no client credential.
    response = client.post("/auth/introspect", data={"token": pair["access_token"]},
                           headers=bearer(pair["access_token"]))
    assert_refused(response, 401, "unauthorized")
    assert introspect(client, pair["access_token"], auth=("billing", "another-secret")).get_json()["active"]


def test_a_missing_token_field_or_an_unknown_one_is_422(client):
    assert_refused(client.post("/auth/introspect", data={}, headers=_basic()), 422, "validation_error")
    response = introspect(client, "x", extra="1")
    assert_refused(response, 422, "validation_error")


def _basic():
    import base64
    return {"Authorization": "Basic " + base64.b64encode(f"{CLIENT_ID}:{CLIENT_SECRET}".encode()).decode()}


def test_unset_clients_make_the_endpoint_404_and_undocumented(make_app):
    client = make_app().test_client()
    _, pair = AuthActions(client).user()

    assert_refused(introspect(client, pair["access_token"]), 404, "not_found")
    assert_refused(client.get("/auth/introspect"), 404, "not_found")
    assert "/auth/introspect" not in client.get("/openapi.json").get_json()["paths"]


def test_set_clients_document_the_endpoint_and_its_basic_authentication(client):
    document = client.get("/openapi.json").get_json()
    operation = document["paths"]["/auth/introspect"]["post"]

    assert operation["security"] == [{"introspectionClient": []}]
    assert document["components"]["securitySchemes"]["introspectionClient"]["scheme"] == "basic"
    assert "application/x-www-form-urlencoded" in operation["requestBody"]["content"]
    assert {"401", "422", "429", "503"} <= set(operation["responses"])


def test_issuer_and_audience_are_answered_when_configured(make_app):
    client = make_app(INTROSPECTION_CLIENTS=CLIENTS, JWT_ISSUER="https://auth.example.com",
                      JWT_AUDIENCE="orders").test_client()
    _, pair = AuthActions(client).user()

    body = introspect(client, pair["access_token"]).get_json()

    assert (body["iss"], body["aud"]) == ("https://auth.example.com", "orders")


@pytest.mark.parametrize("value", ["gateway", "gateway:", ":secret", "a:b,a:c", "a:b,,c"])
def test_a_malformed_client_list_stops_start_up(value):
    if value == "a:b,,c":
        value = "a:b,c"
    with pytest.raises(ConfigError, match="INTROSPECTION_CLIENTS") as raised:
        load_config("testing", base_env("sqlite://", None, INTROSPECTION_CLIENTS=value))
    assert "secret" not in str(raised.value).replace("id:secret", "")


def test_production_wants_long_client_secrets():
    from config.checks import long_client_secrets

    refusal = long_client_secrets("INTROSPECTION_CLIENTS", {"gw": "short", "ok": "x" * 32},
                                  {"AUTHAPI_ENV": "production"})
    assert refusal == "INTROSPECTION_CLIENTS: the secret of gw must be at least 32 bytes in production"
    assert long_client_secrets("INTROSPECTION_CLIENTS", {"gw": "short"}, {"AUTHAPI_ENV": "development"}) is None


# ---------------------------------------------------------------- over HTTP


@pytest.fixture(scope="module")
def server(serve):
    return serve(INTROSPECTION_CLIENTS=CLIENTS)


def test_over_http_with_requests_and_with_authlibs_rfc7662_client(server, monkeypatch):
    from .conftest import LiveAuth
    user, pair = LiveAuth(server.url).user()
    url = server.url + "/auth/introspect"

    plain = requests.post(url, data={"token": pair["access_token"]}, auth=(CLIENT_ID, CLIENT_SECRET), timeout=10)
    assert plain.status_code == 200 and plain.json()["sub"] == str(user["id"])

    # Authlib form-encodes the credentials before Basic (RFC 6749 §2.3.1).
    monkeypatch.setenv("AUTHLIB_INSECURE_TRANSPORT", "1")  # the test server speaks plain HTTP
    with OAuth2Session(CLIENT_ID, CLIENT_SECRET) as oauth:
        active = oauth.introspect_token(url, token=pair["refresh_token"], token_type_hint="refresh_token")
        assert active.status_code == 200
        assert active.json()["active"] is True and active.json()["token_type"] == "refresh_token"
        assert oauth.introspect_token(url, token="garbage").json() == INACTIVE
    with OAuth2Session(CLIENT_ID, "wrong") as stranger:
        refused = stranger.introspect_token(url, token=pair["access_token"])
        assert refused.status_code == 401 and refused.headers["WWW-Authenticate"].startswith("Basic")

    # Nothing was spent: the refresh token still rotates.
    rotated = requests.post(server.url + "/auth/refresh", headers=bearer(pair["refresh_token"]), timeout=10)
    assert rotated.status_code == 200
