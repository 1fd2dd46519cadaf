"""The hot paths' token check (authapi/token_check.py) against the general
path, flask-jwt-extended's ``jwt_required``: a table of good and bad tokens,
each sent to a normal protected endpoint (GET /auth/sessions) and to the hot
paths (GET /users/me, /auth/verify), must get the same answer from all; and
the fast path's own verdict, its cache (bounded, per app, expiry checked on
every use), and refresh tokens by header (fast) and JSON body (general)."""

import time
from datetime import timedelta

import jwt
import pytest
from flask_jwt_extended import create_access_token

from authapi import token_check
from authapi.extensions import db
from authapi.models import User

from .conftest import AuthActions, PASSWORD, bearer, claims_of, error_code, free_port, refresh, sign
from .test_tokens import ACCESS_CLAIMS, REFRESH_CLAIMS, without

GENERAL = "/auth/sessions"  # jwt_required and the ORM's user load
HOT = ("/users/me", "/auth/verify")
ANOTHER_KEY = "another-secret-" + "z" * 32
# Refused by the account in the database, which /auth/verify does not read
# (docs/forward-auth.md): compared between the general path and me only.
ACCOUNT_CASES = {"role claim not the user's", "user deleted"}


def outcome(response):
    return response.status_code, error_code(response) if response.status_code >= 400 else None


def verdict(app, token, token_type="access", now=None):
    """The fast path's own: the claims it accepts, or None."""
    with app.app_context():
        return app.extensions[token_check.EXTENSION].claims(token, token_type, now)


def flipped_signature(token):
    header, payload, signature = token.split(".")
    return f"{header}.{payload}.{'A' if signature[0] != 'A' else 'B'}{signature[1:]}"


def access_tokens(app, client, auth) -> dict[str, str]:
    """name -> token, each made the way its case happens."""
    _, pair = auth.user()
    token = pair["access_token"]
    claims = claims_of(token)
    _, logged_out = auth.user()
    assert client.post("/auth/logout", headers=bearer(logged_out["access_token"])).status_code == 200
    _, everywhere = auth.user()
    assert client.post("/auth/logout-all", headers=bearer(everywhere["access_token"])).status_code == 200
    _, changed = auth.user()
    assert client.post("/auth/password/change", headers=bearer(changed["access_token"]), json={
        "current_password": PASSWORD, "new_password": "another good password here"}).status_code == 200
    with app.app_context():
        expired = create_access_token(claims["sub"], expires_delta=timedelta(seconds=-1), additional_claims={
            "role": "user", "sid": claims["sid"], "amr": ["pwd"]})
    now = int(time.time())
    none_header = jwt.utils.base64url_encode(b'{"alg":"none","typ":"JWT"}').decode()
    return {
        "good": token,
        "re-signed copy": sign(claims),
        "expired": expired,
        "nbf in the future": sign({**claims, "nbf": now + 60}),
        "iat in the future": sign({**claims, "iat": now + 60}),
        "alg none": sign(claims, key=None, algorithm="none"),
        "alg none, the real signature": f"{none_header}.{token.split('.', 1)[1]}",
        "alg HS512": sign(claims, algorithm="HS512"),
        "refresh token": pair["refresh_token"],
        "unknown type": sign({**claims, "type": "id"}),
        **{f"no {name}": sign(without(claims, name)) for name in ACCESS_CLAIMS},
        "sub not a digit string": sign({**claims, "sub": "1a"}),
        "tampered signature": flipped_signature(token),
        "tampered payload": f"{token.split('.')[0]}.{sign({**claims, 'sid': claims['jti']}).split('.')[1]}"
                            f".{token.split('.')[2]}",
        "another key": sign(claims, key=ANOTHER_KEY),
        "session revoked": logged_out["access_token"],
        "user revoked (logout-all)": everywhere["access_token"],
        "user revoked (password change)": changed["access_token"],
        "garbage": "a.b.c",
        "role claim not the user's": sign({**claims, "role": "admin"}),
        "user deleted": sign({**claims, "sub": "2147483647"}),
    }


@pytest.mark.filterwarnings("ignore::jwt.warnings.InsecureKeyLengthWarning")
def test_every_token_gets_the_general_paths_answer_on_the_hot_paths(app, client, auth):
    tokens = access_tokens(app, client, auth)
    for name, token in tokens.items():
        general = outcome(client.get(GENERAL, headers=bearer(token)))
        for path in HOT:
            if path == "/auth/verify" and name in ACCOUNT_CASES:
                continue
            assert outcome(client.get(path, headers=bearer(token))) == general, (name, path)
    # The table holds both kinds: accepted and each refusal.
    answers = {name: outcome(client.get(GENERAL, headers=bearer(token))) for name, token in tokens.items()}
    assert answers["good"] == answers["re-signed copy"] == (200, None)
    assert {answers[name] for name in ("expired", "alg none", "no sid", "tampered signature")} == {
        (401, "token_expired"), (401, "token_invalid")}
    assert answers["session revoked"] == answers["user revoked (logout-all)"] == (401, "token_revoked")


@pytest.mark.filterwarnings("ignore::jwt.warnings.InsecureKeyLengthWarning")
def test_the_fast_path_accepts_only_what_passes_every_check_but_revocation(app, client, auth):
    tokens = access_tokens(app, client, auth)
    # Revocation is checked after the fast path accepts (one MGET, as the
    # general path); the account, by me's statement.
    accepted = {"good", "re-signed copy", "session revoked", "user revoked (logout-all)",
                "user revoked (password change)", *ACCOUNT_CASES}
    for name, token in tokens.items():
        claims = verdict(app, token)
        assert (claims is not None) == (name in accepted), name
        if claims is not None:
            assert dict(claims) == claims_of(token), name


@pytest.mark.parametrize("header", [
    "Bearer  {token}", "bearer {token}", " Bearer {token}", "Bearer {token} ", "Bearer {token}, Basic eDp5",
    "Basic eDp5, Bearer {token}", "Token {token}", "{token}", "Bearer", "",
])
def test_any_other_form_of_the_header_gets_the_general_paths_answer(client, pair, header):
    headers = {"Authorization": header.format(token=pair["access_token"])}
    general = outcome(client.get(GENERAL, headers=headers))
    for path in HOT:
        assert outcome(client.get(path, headers=headers)) == general, path


@pytest.mark.parametrize("case", ["good", "wrong issuer", "wrong audience", "no issuer", "no audience"])
def test_issuer_and_audience_are_checked_alike(make_app, case):
    app = make_app(JWT_ISSUER="authapi-test", JWT_AUDIENCE="svc")
    client = app.test_client()
    claims = claims_of(AuthActions(client).user()[1]["access_token"])
    token = sign({
        "good": claims, "wrong issuer": {**claims, "iss": "someone-else"},
        "wrong audience": {**claims, "aud": "other"}, "no issuer": without(claims, "iss"),
        "no audience": without(claims, "aud"),
    }[case])

    general = outcome(client.get(GENERAL, headers=bearer(token)))
    assert general == ((200, None) if case == "good" else (401, "token_invalid"))
    for path in HOT:
        assert outcome(client.get(path, headers=bearer(token))) == general, path
    assert (verdict(app, token) is not None) == (case == "good")


def test_redis_unreachable_is_503_on_every_path(make_app, client, pair):
    cut_off = make_app(REDIS_URL=f"redis://127.0.0.1:{free_port()}/0").test_client()

    for path in (GENERAL, *HOT):
        assert outcome(cut_off.get(path, headers=bearer(pair["access_token"]))) == (503, "service_unavailable")


# ---------------------------------------------------------------- the cache


def test_a_cached_token_is_refused_from_its_expiry_on(app, pair):
    token = pair["access_token"]
    expires = claims_of(token)["exp"]

    assert verdict(app, token) is not None  # decoded and kept
    assert verdict(app, token, now=expires - 1) is not None
    assert verdict(app, token, now=expires) is None
    assert verdict(app, token, now=expires + 3600) is None


def test_a_cached_token_is_refused_before_its_nbf_and_iat(app, pair):
    token = pair["access_token"]
    claims = claims_of(token)

    assert verdict(app, token) is not None
    assert verdict(app, token, now=min(claims["nbf"], claims["iat"]) - 1) is None


def test_the_cache_keeps_at_most_its_size_oldest_out_first(app, auth):
    user, pair = auth.user()
    claims = claims_of(pair["access_token"])
    first = pair["access_token"]
    assert verdict(app, first) is not None
    # Distinct strings of valid tokens (a jti each), as many as fill the cache.
    for n in range(token_check.CACHE_SIZE):
        assert verdict(app, sign({**claims, "jti": f"00000000-0000-4000-8000-{n:012d}"})) is not None

    cache = app.extensions[token_check.EXTENSION].cache
    assert len(cache) == token_check.CACHE_SIZE
    assert first not in cache
    assert verdict(app, first) is not None  # decoded again


def test_the_cache_belongs_to_its_app(make_app, app, pair):
    other = make_app(JWT_SECRET_KEY=ANOTHER_KEY)
    token = pair["access_token"]

    assert verdict(app, token) is not None
    assert verdict(other, token) is None
    assert outcome(other.test_client().get("/auth/verify", headers=bearer(token))) == (401, "token_invalid")


def test_refresh_tokens_are_not_kept(app, pair):
    assert verdict(app, pair["refresh_token"], "refresh") is not None
    assert pair["refresh_token"] not in app.extensions[token_check.EXTENSION].cache


# ---------------------------------------------------------------- refresh tokens


def refresh_tokens(client, auth) -> tuple[str, dict[str, str]]:
    """A user's good refresh token, and name -> refused variants of it."""
    _, pair = auth.user()
    token = pair["refresh_token"]
    claims = claims_of(token)
    return token, {
        "expired": sign({**claims, "exp": int(time.time()) - 1}),
        "alg none": sign(claims, key=None, algorithm="none"),
        "access token": pair["access_token"],
        **{f"no {name}": sign(without(claims, name)) for name in REFRESH_CLAIMS},
        "tampered signature": flipped_signature(token),
        "another key": sign(claims, key=ANOTHER_KEY),
        "garbage": "a.b.c",
    }


def test_a_refresh_token_by_header_gets_the_answer_it_gets_in_the_body(client, auth):
    token, refused = refresh_tokens(client, auth)
    for name, variant in refused.items():
        by_header = outcome(refresh(client, variant))
        assert by_header[0] == 401, name
        assert outcome(client.post("/auth/refresh", json={"refresh_token": variant})) == by_header, name
    # Nothing was spent.
    assert refresh(client, token).status_code == 200


def test_the_rotation_refuses_what_only_the_database_knows(app, client, auth):
    # A deactivation whose mark Redis does not have (a replica that lost it):
    # the rotation's own account check refuses, and spends nothing.
    user, pair = auth.user()
    with app.app_context():
        db.session.get(User, user["id"]).is_active = False
        db.session.commit()

    assert outcome(refresh(client, pair["refresh_token"])) == (401, "token_revoked")

    with app.app_context():
        db.session.get(User, user["id"]).is_active = True
        db.session.commit()
    assert refresh(client, pair["refresh_token"]).status_code == 200
