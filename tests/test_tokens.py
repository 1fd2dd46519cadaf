"""Token misuse, one behaviour per test (API.md §1 error codes, §2 claims, §7).

Tokens are crafted with PyJWT and the test JWT secret so that exactly one thing
about them is wrong; every refusal is checked for its status and error code.
"""

import time

import jwt
import pytest

from .conftest import (
    PASSWORD, AuthActions, assert_refused, bearer, claims_of, error_code, me, refresh, sign,
)

ACCESS_CLAIMS = ("sub", "jti", "type", "iat", "nbf", "exp", "role", "sid", "amr")
REFRESH_CLAIMS = ("sub", "jti", "type", "iat", "exp", "sid")
NOT_REDIS = "redis://127.0.0.1:1/0"  # a closed port


def without(claims, name):
    return {k: v for k, v in claims.items() if k != name}


# ---------------------------------------------------------------- issued claims


def test_access_token_carries_the_contract_claims(client, auth):
    user, pair = auth.user()
    claims = claims_of(pair["access_token"])
    assert set(ACCESS_CLAIMS) <= set(claims)
    assert claims["sub"] == str(user["id"])
    assert claims["type"] == "access"
    assert claims["role"] == "user"
    assert claims["nbf"] <= time.time() + 1
    assert claims["exp"] - claims["iat"] == pair["expires_in"] == 900
    sessions = client.get("/auth/sessions", headers=bearer(pair["access_token"])).get_json()
    assert [s["id"] for s in sessions["items"]] == [claims["sid"]]


def test_refresh_token_carries_the_contract_claims(auth):
    user, pair = auth.user()
    claims = claims_of(pair["refresh_token"])
    assert set(REFRESH_CLAIMS) <= set(claims)
    assert claims["sub"] == str(user["id"])
    assert claims["type"] == "refresh"
    assert claims["sid"] == claims_of(pair["access_token"])["sid"]
    assert claims["exp"] - claims["iat"] == pair["refresh_expires_in"] == 1209600


def test_every_token_has_its_own_jti(client, auth):
    user, first = auth.user()
    second = auth.login(user["username"])
    rotated = refresh(client, first["refresh_token"]).get_json()
    jtis = [
        claims_of(token)["jti"]
        for p in (first, second, rotated)
        for token in (p["access_token"], p["refresh_token"])
    ]
    assert len(set(jtis)) == len(jtis)


def test_resigned_copies_of_issued_tokens_are_accepted(client, pair):
    """The control for the crafted tokens below: re-signing our own claims with
    the test secret gives tokens the API takes, so a refusal of a variant is
    caused by the one thing changed in it."""
    access = sign(claims_of(pair["access_token"]))
    refresh_token = sign(claims_of(pair["refresh_token"]))
    assert me(client, access).status_code == 200
    assert refresh(client, refresh_token).status_code == 200


# ---------------------------------------------------------------- expiry


def test_expired_access_token_is_token_expired(client, pair):
    now = int(time.time())
    claims = {**claims_of(pair["access_token"]), "iat": now - 60, "nbf": now - 60, "exp": now - 2}
    assert_refused(me(client, sign(claims)), 401, "token_expired")


def test_expired_refresh_token_is_token_expired(client, pair):
    now = int(time.time())
    claims = {**claims_of(pair["refresh_token"]), "iat": now - 60, "exp": now - 2}
    assert_refused(refresh(client, sign(claims)), 401, "token_expired")


def test_access_token_expires_after_access_token_ttl(make_app, auth):
    app = make_app(ACCESS_TOKEN_TTL=1)
    client = app.test_client()
    auth.register(username="brief")
    response = client.post("/auth/login", json={"username": "brief", "password": PASSWORD})
    pair = response.get_json()
    assert pair["expires_in"] == 1
    time.sleep(2.1)
    assert_refused(me(client, pair["access_token"]), 401, "token_expired")


# ---------------------------------------------------------------- forged and broken


def test_tampered_signature_is_token_invalid(client, pair):
    header, payload, signature = pair["access_token"].split(".")
    # The first character: the last one partly encodes padding bits only.
    flipped = ("A" if signature[0] != "A" else "B") + signature[1:]
    assert_refused(me(client, f"{header}.{payload}.{flipped}"), 401, "token_invalid")


def test_tampered_payload_is_token_invalid(client, pair):
    header, _, signature = pair["access_token"].split(".")
    forged = sign({**claims_of(pair["access_token"]), "role": "admin"}).split(".")[1]
    assert_refused(me(client, f"{header}.{forged}.{signature}"), 401, "token_invalid")


@pytest.mark.parametrize(
    "token",
    ["garbage", "a.b.c", "a.b", "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0", "....", "%00.%01.%02"],
)
def test_malformed_token_is_token_invalid(client, pair, token):
    assert_refused(me(client, token), 401, "token_invalid")


def test_alg_none_token_is_token_invalid(client, pair):
    token = sign(claims_of(pair["access_token"]), key=None, algorithm="none")
    assert token.endswith(".")
    assert_refused(me(client, token), 401, "token_invalid")


def test_alg_none_token_with_the_real_signature_is_token_invalid(client, pair):
    _, payload, signature = pair["access_token"].split(".")
    header = jwt.utils.base64url_encode(b'{"alg":"none","typ":"JWT"}').decode()
    assert_refused(me(client, f"{header}.{payload}.{signature}"), 401, "token_invalid")


def test_token_signed_with_another_secret_is_token_invalid(client, pair):
    token = sign(claims_of(pair["access_token"]), key="another-secret-" + "z" * 32)
    assert_refused(me(client, token), 401, "token_invalid")


def test_refresh_token_signed_with_another_secret_is_token_invalid(client, pair):
    token = sign(claims_of(pair["refresh_token"]), key="another-secret-" + "z" * 32)
    assert_refused(refresh(client, token), 401, "token_invalid")
    # Nothing was spent: the genuine refresh token still works.
    assert refresh(client, pair["refresh_token"]).status_code == 200


@pytest.mark.filterwarnings("ignore::jwt.warnings.InsecureKeyLengthWarning")
@pytest.mark.parametrize("algorithm", ["HS512", "HS384"])
def test_token_with_another_hmac_alg_is_token_invalid(client, pair, algorithm):
    token = sign(claims_of(pair["access_token"]), algorithm=algorithm)
    assert_refused(me(client, token), 401, "token_invalid")


# ---------------------------------------------------------------- claims


@pytest.mark.parametrize("claim", ACCESS_CLAIMS)
def test_access_token_missing_a_claim_is_token_invalid(client, pair, claim):
    token = sign(without(claims_of(pair["access_token"]), claim))
    assert_refused(me(client, token), 401, "token_invalid")


@pytest.mark.parametrize("amr", ["pwd", [], ["pwd", "sms"], [1], None, ["pwd"] * 6])
def test_access_token_with_a_malformed_amr_is_token_invalid(client, pair, amr):
    token = sign({**claims_of(pair["access_token"]), "amr": amr})
    assert_refused(me(client, token), 401, "token_invalid")


def test_a_password_login_has_amr_pwd_kept_across_refresh(client, pair):
    assert claims_of(pair["access_token"])["amr"] == ["pwd"]
    renewed = refresh(client, pair["refresh_token"]).get_json()
    assert claims_of(renewed["access_token"])["amr"] == ["pwd"]


@pytest.mark.parametrize("claim", REFRESH_CLAIMS)
def test_refresh_token_missing_a_claim_is_token_invalid(client, pair, claim):
    token = sign(without(claims_of(pair["refresh_token"]), claim))
    assert_refused(refresh(client, token), 401, "token_invalid")
    # A refused refresh spends nothing.
    assert refresh(client, pair["refresh_token"]).status_code == 200


def test_nbf_in_the_future_is_token_invalid(client, pair):
    claims = {**claims_of(pair["access_token"]), "nbf": int(time.time()) + 60}
    assert_refused(me(client, sign(claims)), 401, "token_invalid")


@pytest.mark.parametrize(
    "sub", ["abc", "", " 1", "1 ", "-1", "+1", "1.0", "0x1", "1e3", "١", "²", "9" * 40, None, 1, [1]]
)
def test_sub_that_is_not_a_digit_string_is_token_invalid(client, pair, sub):
    token = sign({**claims_of(pair["access_token"]), "sub": sub})
    assert_refused(me(client, token), 401, "token_invalid")


@pytest.mark.parametrize("sub", ["999999999", "2147483647"])
def test_sub_of_no_user_is_token_revoked(client, pair, sub):
    # Only our secret signs these, so an unknown user is a deleted one.
    token = sign({**claims_of(pair["access_token"]), "sub": sub})
    assert_refused(me(client, token), 401, "token_revoked")


@pytest.mark.parametrize("sub", ["0", str(2**31), "9" * 18, "9" * 5000])
def test_sub_beyond_the_user_id_range_is_token_invalid(client, pair, sub):
    token = sign({**claims_of(pair["access_token"]), "sub": sub})
    assert_refused(me(client, token), 401, "token_invalid")


@pytest.mark.parametrize("claim", ["sid", "jti"])
@pytest.mark.parametrize("value", ["\x00", "not-a-uuid", "A" * 36])
def test_refresh_token_with_a_malformed_id_claim_is_token_invalid(client, pair, claim, value):
    token = sign({**claims_of(pair["refresh_token"]), claim: value})
    assert_refused(refresh(client, token), 401, "token_invalid")
    # The real token was not spent by the refused attempt.
    assert refresh(client, pair["refresh_token"]).status_code == 200


def test_logout_with_a_nul_in_the_sid_claim_is_token_invalid(client, pair):
    token = sign({**claims_of(pair["access_token"]), "sid": "\x00"})
    assert_refused(client.post("/auth/logout", headers=bearer(token)), 401, "token_invalid")


@pytest.mark.parametrize(
    "claim, value",
    [("type", "id"), ("type", None), ("role", "root"), ("role", None), ("sid", 7), ("jti", 7)],
)
def test_claim_of_the_wrong_kind_is_token_invalid(client, pair, claim, value):
    token = sign({**claims_of(pair["access_token"]), claim: value})
    assert_refused(me(client, token), 401, "token_invalid")


def test_role_claim_disagreeing_with_the_user_is_refused(client, pair):
    token = sign({**claims_of(pair["access_token"]), "role": "admin"})
    response = me(client, token)
    assert response.status_code == 401
    assert error_code(response) in {"token_invalid", "token_revoked"}


# ---------------------------------------------------------------- wrong type


def test_refresh_token_used_as_access_token_is_token_invalid(client, pair):
    assert_refused(me(client, pair["refresh_token"]), 401, "token_invalid")


def test_access_token_used_to_refresh_is_token_invalid(client, pair):
    assert_refused(refresh(client, pair["access_token"]), 401, "token_invalid")
    assert refresh(client, pair["refresh_token"]).status_code == 200


def test_access_token_in_the_refresh_json_body_is_token_invalid(client, pair):
    response = client.post("/auth/refresh", json={"refresh_token": pair["access_token"]})
    assert_refused(response, 401, "token_invalid")


# ---------------------------------------------------------------- missing


def test_no_authorization_header_is_unauthorized(client):
    assert_refused(client.get("/users/me"), 401, "unauthorized")


@pytest.mark.parametrize(
    "method, path", [("post", "/auth/logout"), ("post", "/auth/logout-all"),
                     ("get", "/auth/sessions"), ("post", "/auth/refresh")]
)
def test_no_token_on_protected_endpoints_is_unauthorized(client, method, path):
    assert_refused(getattr(client, method)(path), 401, "unauthorized")


def test_another_authorization_scheme_is_unauthorized(client, pair):
    response = client.get("/users/me", headers={"Authorization": f"Token {pair['access_token']}"})
    assert_refused(response, 401, "unauthorized")


# ---------------------------------------------------------------- issuer and audience


@pytest.fixture
def iss_aud_client(make_app):
    return make_app(JWT_ISSUER="authapi-test", JWT_AUDIENCE="svc").test_client()


@pytest.fixture
def iss_aud_pair(iss_aud_client):
    return AuthActions(iss_aud_client).user()[1]


def test_tokens_carry_the_configured_issuer_and_audience(iss_aud_client, iss_aud_pair):
    for token in (iss_aud_pair["access_token"], iss_aud_pair["refresh_token"]):
        claims = claims_of(token)
        assert claims["iss"] == "authapi-test"
        assert claims["aud"] == "svc"
    assert me(iss_aud_client, iss_aud_pair["access_token"]).status_code == 200
    assert refresh(iss_aud_client, iss_aud_pair["refresh_token"]).status_code == 200


@pytest.mark.parametrize(
    "claim, value", [("iss", "someone-else"), ("aud", "other-svc"), ("aud", ["other-svc"])]
)
def test_wrong_issuer_or_audience_is_token_invalid(iss_aud_client, iss_aud_pair, claim, value):
    token = sign({**claims_of(iss_aud_pair["access_token"]), claim: value})
    assert_refused(me(iss_aud_client, token), 401, "token_invalid")


@pytest.mark.parametrize("claim", ["iss", "aud"])
def test_missing_issuer_or_audience_when_configured_is_token_invalid(
    iss_aud_client, iss_aud_pair, claim
):
    token = sign(without(claims_of(iss_aud_pair["access_token"]), claim))
    assert_refused(me(iss_aud_client, token), 401, "token_invalid")


def test_wrong_audience_refresh_token_is_token_invalid(iss_aud_client, iss_aud_pair):
    token = sign({**claims_of(iss_aud_pair["refresh_token"]), "aud": "other-svc"})
    assert_refused(refresh(iss_aud_client, token), 401, "token_invalid")
