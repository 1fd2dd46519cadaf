"""Passkeys through the HTTP API (API.md §9), on SQLite and PostgreSQL, with
the software authenticator of tests/authenticator.py (P-256 and Ed25519
keys, ``none`` attestation) spoiling one part of its answer at a time.
Challenges expire by a clock the test moves (relying_party.now), never a
sleep; the real browser is in test_passkeys_browser.py."""

import os
import threading
import time

import cbor2
import pytest
import redis
from sqlalchemy import func, select, update

from authapi import metrics, relying_party
from authapi.extensions import db
from authapi.models import AuthSession, Passkey, User
from authapi.store import MemoryStore, RedisStore
from tests.authenticator import BE, BS, UP, UV, SoftwareAuthenticator, from_b64url
from tests.clients import PASSWORD, AuthActions, assert_refused, bearer, claims_of, error_code, me, refresh

RP = {"WEBAUTHN_RP_ID": "example.com"}
PASSKEY_AMR = ["hwk", "user", "mfa"]
ENDPOINTS = [("post", "/auth/passkeys/register/options"), ("post", "/auth/passkeys/register"),
             ("get", "/auth/passkeys"), ("delete", "/auth/passkeys/" + "A" * 22),
             ("post", "/auth/passkeys/login/options"), ("post", "/auth/passkeys/login")]


@pytest.fixture
def app(make_app):
    return make_app(**RP)


class Clock:
    """What relying_party.now returns: a moment the test sets."""

    def __init__(self):
        self.moment = time.time()

    def __call__(self) -> float:
        return self.moment


@pytest.fixture
def clock(monkeypatch):
    moment = Clock()
    monkeypatch.setattr(relying_party, "now", moment)
    return moment


# ---------------------------------------------------------------- the client's side


def register_options(client, token) -> dict:
    response = client.post("/auth/passkeys/register/options", headers=bearer(token))
    assert response.status_code == 200, response.get_json()
    return response.get_json()


def register(client, token, authenticator, options=None, **spoil):
    options = options or register_options(client, token)
    body = {"credential": authenticator.create(options, **spoil)}
    return client.post("/auth/passkeys/register", json=body, headers=bearer(token))


def login_options(client) -> dict:
    response = client.post("/auth/passkeys/login/options")
    assert response.status_code == 200, response.get_json()
    return response.get_json()


def login(client, authenticator, options=None, **spoil):
    options = options or login_options(client)
    return client.post("/auth/passkeys/login", json={"credential": authenticator.get(options, **spoil)})


def assert_registration_refused(response):
    assert (response.status_code, error_code(response)) == (422, "validation_error"), response.get_json()
    assert list(response.get_json()["error"]["details"]) == ["credential"]


def passkey_rows(app) -> list[Passkey]:
    with app.app_context():
        return list(db.session.scalars(select(Passkey)))


def session_count(app) -> int:
    with app.app_context():
        return db.session.scalar(select(func.count(AuthSession.id)))


@pytest.fixture
def enrolled(client, auth):
    """A logged-in user with a passkey: (user, pair, authenticator)."""
    user, pair = auth.user()
    authenticator = SoftwareAuthenticator()
    assert register(client, pair["access_token"], authenticator).status_code == 201
    return user, pair, authenticator


# ---------------------------------------------------------------- the ceremonies


@pytest.mark.parametrize("algorithm", ["ES256", "EdDSA"])
def test_register_list_and_sign_in_without_a_username(app, client, auth, algorithm):
    user, pair = auth.user()
    token = pair["access_token"]
    options = register_options(client, token)
    assert options["rp"] == {"id": "example.com", "name": "authapi"}
    assert options["authenticatorSelection"]["residentKey"] == "required"
    assert options["authenticatorSelection"]["userVerification"] == "required"
    assert [p["alg"] for p in options["pubKeyCredParams"]] == [-7, -8, -257]
    assert options["excludeCredentials"] == []
    handle = from_b64url(options["user"]["id"])
    assert len(handle) == 64 and user["email"].encode() not in handle and handle != str(user["id"]).encode()

    authenticator = SoftwareAuthenticator(algorithm)
    created = register(client, token, authenticator, options)
    assert created.status_code == 201, created.get_json()
    assert created.get_json() == {"id": authenticator.id, "name": "Passkey",
                                  "created_at": created.get_json()["created_at"], "last_used_at": None}
    listed = client.get("/auth/passkeys", headers=bearer(token)).get_json()["items"]
    assert listed == [created.get_json()]

    request_options = login_options(client)
    assert request_options["rpId"] == "example.com" and request_options["userVerification"] == "required"
    assert "allowCredentials" not in request_options
    signed_in = login(client, authenticator, request_options)
    assert signed_in.status_code == 200, signed_in.get_json()
    pair = signed_in.get_json()
    assert claims_of(pair["access_token"])["amr"] == PASSKEY_AMR
    assert me(client, pair["access_token"]).get_json()["id"] == user["id"]
    refreshed = refresh(client, pair["refresh_token"]).get_json()
    assert claims_of(refreshed["access_token"])["amr"] == PASSKEY_AMR
    assert me(client, pair["access_token"]).get_json()["last_login_at"] is not None
    assert client.get("/auth/passkeys", headers=bearer(token)).get_json()["items"][0]["last_used_at"] is not None


def test_a_name_is_kept_and_stored_flags_come_from_the_authenticator(app, client, auth):
    _, pair = auth.user()
    options = register_options(client, pair["access_token"])
    credential = SoftwareAuthenticator().create(options, flags=UP | UV | BE | BS)
    credential["response"]["transports"] = ["internal", "hybrid"] * 100 + ["carrier pigeon"]
    created = client.post("/auth/passkeys/register", json={"credential": credential, "name": "Laptop"},
                          headers=bearer(pair["access_token"]))
    assert created.status_code == 201 and created.get_json()["name"] == "Laptop"
    (row,) = passkey_rows(app)
    assert (row.backup_eligible, row.backed_up, row.transports, row.sign_count) == (True, True, "internal hybrid", 0)


def test_origins_are_compared_as_browsers_write_them(make_app):
    client = make_app(WEBAUTHN_ORIGINS="https://App.Example.com:443,http://localhost:8080", **RP).test_client()
    _, pair = AuthActions(client).user()
    for origin in ("https://app.example.com", "http://localhost:8080"):
        authenticator = SoftwareAuthenticator(origin=origin)
        assert register(client, pair["access_token"], authenticator).status_code == 201
        assert login(client, authenticator).status_code == 200
    assert_registration_refused(register(client, pair["access_token"], SoftwareAuthenticator()))  # https://example.com


def test_options_exclude_the_users_passkeys_under_one_user_handle(client, auth, enrolled):
    _, pair, authenticator = enrolled
    options = register_options(client, pair["access_token"])
    assert [c["id"] for c in options["excludeCredentials"]] == [authenticator.id]
    assert from_b64url(options["user"]["id"]) == authenticator.user_handle
    _, other = auth.user()
    assert from_b64url(register_options(client, other["access_token"])["user"]["id"]) != authenticator.user_handle


# ---------------------------------------------------------------- registration refused

SPOILED_REGISTRATIONS = {
    "wrong origin": {"origin": "https://evil.example"},
    "wrong type": {"type_": "webauthn.get"},
    "wrong RP ID hash": {"rp_id": "evil.example"},
    "no user presence": {"flags": UV},
    "no user verification": {"flags": UP},
}


@pytest.mark.parametrize("spoil", SPOILED_REGISTRATIONS.values(), ids=SPOILED_REGISTRATIONS.keys())
def test_a_spoiled_registration_stores_nothing_and_spends_its_challenge(app, client, auth, spoil):
    _, pair = auth.user()
    token, authenticator = pair["access_token"], SoftwareAuthenticator()
    options = register_options(client, token)
    assert_registration_refused(register(client, token, authenticator, options, **spoil))
    assert passkey_rows(app) == []
    assert_registration_refused(register(client, token, authenticator, options))
    assert register(client, token, authenticator).status_code == 201


def test_a_challenge_is_spent_by_its_success(client, auth):
    _, pair = auth.user()
    token = pair["access_token"]
    options = register_options(client, token)
    assert register(client, token, SoftwareAuthenticator(), options).status_code == 201
    assert_registration_refused(register(client, token, SoftwareAuthenticator(), options))


def test_challenges_live_300_seconds_in_the_shared_store(client, auth, clock, redis_url):
    _, pair = auth.user()
    token = pair["access_token"]
    options = register_options(client, token)
    store = redis.Redis.from_url(redis_url)
    (key,) = store.keys("authapi:passkey:challenge:*")
    assert 290 < store.ttl(key) <= 300
    assert options["challenge"].encode() not in key + store.get(key)  # named by its hash, not kept

    clock.moment += 299
    assert register(client, token, SoftwareAuthenticator(), options).status_code == 201
    late = register_options(client, token)
    clock.moment += 300
    assert_registration_refused(register(client, token, SoftwareAuthenticator(), late))


def test_another_users_challenge_is_refused_and_spent(client, auth):
    _, ada = auth.user()
    _, eve = auth.user()
    options = register_options(client, ada["access_token"])
    assert_registration_refused(register(client, eve["access_token"], SoftwareAuthenticator(), options))
    assert_registration_refused(register(client, ada["access_token"], SoftwareAuthenticator(), options))


def test_a_login_challenge_cannot_register(client, auth):
    _, pair = auth.user()
    own = register_options(client, pair["access_token"])
    options = {**login_options(client), "user": own["user"]}
    assert_registration_refused(register(client, pair["access_token"], SoftwareAuthenticator(), options))


def test_a_credential_is_registered_once(app, client, auth, enrolled):
    _, pair, authenticator = enrolled
    assert_registration_refused(register(client, pair["access_token"], authenticator))
    _, other = auth.user()
    assert_registration_refused(register(client, other["access_token"], authenticator))
    assert len(passkey_rows(app)) == 1


@pytest.mark.parametrize("credential", [
    {}, {"id": 1}, {"id": "AA", "rawId": "AA", "type": "public-key", "response": {}},
    {"id": "AA", "rawId": "AA", "type": "public-key",
     "response": {"clientDataJSON": "!!", "attestationObject": "AA"}},
    {"id": "AA", "rawId": "AA", "type": "public-key",
     "response": {"clientDataJSON": "e30", "attestationObject": "oWNmbXRkbm9uZQ"}},
])
def test_a_malformed_credential_is_a_422_naming_it_or_a_401_at_login(client, auth, credential):
    _, pair = auth.user()
    register_options(client, pair["access_token"])
    refused = client.post("/auth/passkeys/register", json={"credential": credential},
                          headers=bearer(pair["access_token"]))
    assert_registration_refused(refused)
    assert_refused(client.post("/auth/passkeys/login", json={"credential": credential}), 401, "invalid_credentials")


@pytest.mark.parametrize("body", [
    {}, {"credential": "text"}, {"credential": {}, "role": "admin"}, {"credential": {}, "name": ""},
    {"credential": {}, "name": "x" * 101}, {"credential": {}, "name": "a\x00b"},
])
def test_bodies_are_validated(client, auth, body):
    _, pair = auth.user()
    response = client.post("/auth/passkeys/register", json=body, headers=bearer(pair["access_token"]))
    assert (response.status_code, error_code(response)) == (422, "validation_error")
    if "name" not in body:
        assert error_code(client.post("/auth/passkeys/login", json=body)) == "validation_error"


def test_garbage_inside_a_well_formed_credential_is_refused(client, enrolled):
    _, pair, authenticator = enrolled
    token = pair["access_token"]
    broken_key = SoftwareAuthenticator()
    broken_key.cose_public_key = lambda: cbor2.dumps({1: 2})  # an EC2 key without its curve or points
    assert_registration_refused(register(client, token, broken_key))
    short_id = SoftwareAuthenticator()
    short_id.credential_id = os.urandom(15)  # authenticators make 16 bytes at least
    assert_registration_refused(register(client, token, short_id))
    es384 = SoftwareAuthenticator()
    es384_key = cbor2.loads(es384.cose_public_key()) | {3: -35}  # an algorithm the options do not offer
    es384.cose_public_key = lambda: cbor2.dumps(es384_key)
    assert_registration_refused(register(client, token, es384))
    credential = SoftwareAuthenticator().create(register_options(client, token))
    credential["response"]["attestationObject"] = "AAAA"
    refused = client.post("/auth/passkeys/register", json={"credential": credential}, headers=bearer(token))
    assert_registration_refused(refused)
    for member, value in [("authenticatorData", "AAAA"), ("signature", ""), ("userHandle", "!")]:
        credential = authenticator.get(login_options(client))
        credential["response"][member] = value
        response = client.post("/auth/passkeys/login", json={"credential": credential})
        assert_refused(response, 401, "invalid_credentials")


# ---------------------------------------------------------------- login refused

SPOILED_LOGINS = {
    "wrong origin": {"origin": "https://evil.example"},
    "wrong type": {"type_": "webauthn.create"},
    "wrong RP ID hash": {"rp_id": "evil.example"},
    "no user presence": {"flags": UV},
    "no user verification": {"flags": UP},
    "bad signature": {"bad_signature": True},
    "no user handle": {"user_handle": None},
    "unknown user handle": {"user_handle": os.urandom(64)},
}


@pytest.mark.parametrize("spoil", SPOILED_LOGINS.values(), ids=SPOILED_LOGINS.keys())
def test_a_spoiled_login_is_refused_and_spends_its_challenge(app, client, enrolled, spoil):
    _, _, authenticator = enrolled
    sessions_before = session_count(app)
    options = login_options(client)
    assert_refused(login(client, authenticator, options, **spoil), 401, "invalid_credentials")
    assert session_count(app) == sessions_before
    assert_refused(login(client, authenticator, options), 401, "invalid_credentials")
    assert login(client, authenticator).status_code == 200


def test_an_unknown_passkey_is_refused(client, enrolled):
    assert_refused(login(client, SoftwareAuthenticator()), 401, "invalid_credentials")


def test_another_users_handle_is_refused(client, auth, enrolled):
    _, _, ada_key = enrolled
    _, eve = auth.user()
    eve_key = SoftwareAuthenticator()
    assert register(client, eve["access_token"], eve_key).status_code == 201
    assert_refused(login(client, ada_key, user_handle=eve_key.user_handle), 401, "invalid_credentials")


def test_a_registration_challenge_cannot_log_in(client, enrolled):
    _, pair, authenticator = enrolled
    options = register_options(client, pair["access_token"])
    assert_refused(login(client, authenticator, options), 401, "invalid_credentials")
    assert_registration_refused(register(client, pair["access_token"], SoftwareAuthenticator(), options))


def test_an_expired_login_challenge_is_refused(client, enrolled, clock):
    _, _, authenticator = enrolled
    options = login_options(client)
    clock.moment += 300
    assert_refused(login(client, authenticator, options), 401, "invalid_credentials")


def test_a_counter_that_goes_back_is_refused_and_both_zero_is_not(app, client, auth):
    _, pair = auth.user()
    counting, synced = SoftwareAuthenticator(counting=True), SoftwareAuthenticator("EdDSA")
    for authenticator in (counting, synced):
        assert register(client, pair["access_token"], authenticator).status_code == 201
    for _ in range(2):
        assert login(client, counting).status_code == 200
        assert login(client, synced).status_code == 200
    assert sorted(row.sign_count for row in passkey_rows(app)) == [0, 2]
    counting.sign_count = 1  # a clone, or a replay of an older assertion's counter
    assert_refused(login(client, counting), 401, "invalid_credentials")
    assert sorted(row.sign_count for row in passkey_rows(app)) == [0, 2]


def test_a_deactivated_user_is_refused(app, client, enrolled):
    user, _, authenticator = enrolled
    with app.app_context():
        db.session.execute(update(User).where(User.id == user["id"]).values(is_active=False))
        db.session.commit()
    assert_refused(login(client, authenticator), 401, "invalid_credentials")


def test_an_unverified_email_is_refused_when_verification_is_required(make_app):
    app = make_app(REQUIRE_VERIFIED_EMAIL="true", **RP)
    client, auth = app.test_client(), AuthActions(app.test_client())
    user = auth.register()

    def set_verified(value):
        with app.app_context():
            db.session.execute(update(User).where(User.id == user["id"]).values(is_verified=value))
            db.session.commit()

    set_verified(True)
    authenticator = SoftwareAuthenticator()
    assert register(client, auth.login(user["username"])["access_token"], authenticator).status_code == 201
    set_verified(False)
    assert_refused(login(client, authenticator), 403, "email_not_verified")
    set_verified(True)
    assert login(client, authenticator).status_code == 200


def test_one_assertion_sent_twice_at_once_has_one_winner(client, enrolled):
    _, _, authenticator = enrolled
    credential = authenticator.get(login_options(client))
    start, statuses = threading.Barrier(2, timeout=10), []

    def send():
        own = client.application.test_client()
        start.wait()
        statuses.append(own.post("/auth/passkeys/login", json={"credential": credential}).status_code)

    threads = [threading.Thread(target=send) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert sorted(statuses) == [200, 401]


# ---------------------------------------------------------------- list, delete, and the rest of the API


def test_delete_removes_only_ones_own_passkey_and_keeps_the_tokens(app, client, auth, enrolled):
    _, pair, authenticator = enrolled
    _, eve = auth.user()
    for passkey_id in (authenticator.id, "A" * 22, "A" * 23, "AB" * 11, authenticator.id + "=", "-" * 2000):
        response = client.delete(f"/auth/passkeys/{passkey_id}", headers=bearer(eve["access_token"]))
        assert_refused(response, 404, "not_found")
    assert client.delete(f"/auth/passkeys/{authenticator.id}", headers=bearer(pair["access_token"])).status_code == 204
    assert passkey_rows(app) == []
    assert me(client, pair["access_token"]).status_code == 200
    assert refresh(client, pair["refresh_token"]).status_code == 200
    assert_refused(login(client, authenticator), 401, "invalid_credentials")


@pytest.mark.parametrize("path", ["/auth/passkeys/login", "/auth/passkeys/register"])
def test_no_passkey_id_reads_as_the_login_or_register_path(client, pair, path):
    assert set(client.options(path).headers["Allow"].split(", ")) == {"OPTIONS", "POST"}
    assert_refused(client.delete(path, headers=bearer(pair["access_token"])), 405, "method_not_allowed")


def test_a_deleted_account_takes_its_passkeys_along(app, client, enrolled):
    _, pair, authenticator = enrolled
    deleted = client.delete("/users/me", json={"password": PASSWORD}, headers=bearer(pair["access_token"]))
    assert deleted.status_code == 204
    assert passkey_rows(app) == []
    assert_refused(login(client, authenticator), 401, "invalid_credentials")


def test_adding_a_passkey_revokes_no_token(client, auth):
    _, pair = auth.user()
    assert register(client, pair["access_token"], SoftwareAuthenticator()).status_code == 201
    assert me(client, pair["access_token"]).status_code == 200
    assert refresh(client, pair["refresh_token"]).status_code == 200


def test_mfa_status_counts_passkeys(client, enrolled):
    _, pair, _ = enrolled
    assert register(client, pair["access_token"], SoftwareAuthenticator("EdDSA")).status_code == 201
    status = client.get("/auth/mfa", headers=bearer(pair["access_token"])).get_json()
    assert status == {"totp": False, "recovery_codes_left": 0, "passkeys": 2}


def test_a_passkey_skips_the_totp_step(client, enrolled, monkeypatch):
    from authapi import totp

    from .test_mfa import Clock as TotpClock, enrol

    user, pair, authenticator = enrolled
    totp_clock = TotpClock()
    monkeypatch.setattr(totp, "now", totp_clock)
    enrol(client, pair, totp_clock)
    assert client.post("/auth/login", json={"username": user["username"], "password": PASSWORD}).status_code == 403
    signed_in = login(client, authenticator)
    assert signed_in.status_code == 200 and claims_of(signed_in.get_json()["access_token"])["amr"] == PASSKEY_AMR


def test_require_mfa_for_admins_accepts_a_passkey_session(make_app):
    app = make_app(REQUIRE_MFA_FOR_ADMINS="true", **RP)
    client = app.test_client()
    admin = AuthActions(client).register()
    with app.app_context():
        db.session.execute(update(User).where(User.id == admin["id"]).values(role="admin"))
        db.session.commit()
    password_pair = AuthActions(client).login(admin["username"])
    assert_refused(client.get("/users", headers=bearer(password_pair["access_token"])), 403, "mfa_enrollment_required")
    authenticator = SoftwareAuthenticator()
    assert register(client, password_pair["access_token"], authenticator).status_code == 201
    passkey_pair = login(client, authenticator).get_json()
    assert client.get("/users", headers=bearer(passkey_pair["access_token"])).status_code == 200


def test_the_login_rate_limit_covers_passkey_logins(make_app):
    client = make_app(RATELIMIT_ENABLED="true", RATELIMIT_LOGIN="2 per minute", **RP).test_client()
    for _ in range(2):
        assert_refused(client.post("/auth/passkeys/login", json={"credential": {}}), 401, "invalid_credentials")
    assert_refused(client.post("/auth/passkeys/login", json={"credential": {}}), 429, "rate_limited")


def test_metrics_count_passkey_logins(client, enrolled):
    _, _, authenticator = enrolled

    def count(outcome):
        return metrics.LOGINS.labels(outcome=outcome)._value.get()

    success, refused = count("success"), count("invalid_credentials")
    assert login(client, authenticator).status_code == 200
    assert login(client, authenticator, bad_signature=True).status_code == 401
    assert (count("success"), count("invalid_credentials")) == (success + 1, refused + 1)


def test_browser_mode_sets_the_refresh_cookie_and_refuses_foreign_pages(make_app):
    app = make_app(REFRESH_TOKEN_COOKIE="true", **RP)
    client = app.test_client()
    _, pair = AuthActions(client).user()
    authenticator = SoftwareAuthenticator()
    assert register(client, pair["access_token"], authenticator).status_code == 201
    credential = authenticator.get(login_options(client))
    foreign = client.post("/auth/passkeys/login", json={"credential": credential},
                          headers={"Origin": "https://evil.example"})
    assert_refused(foreign, 403, "forbidden")
    done = login(client, authenticator)
    assert done.status_code == 200 and "refresh_token" not in done.get_json()
    assert "refresh_token_cookie=" in " ".join(done.headers.getlist("Set-Cookie"))


def test_without_an_rp_id_every_endpoint_is_404_and_undocumented(make_app):
    client = make_app().test_client()
    for method, path in ENDPOINTS:
        assert_refused(client.open(path, method=method.upper(), json={}), 404, "not_found")
    assert not [path for path in client.get("/openapi.json").get_json()["paths"] if "passkeys" in path]


def test_the_document_describes_the_endpoints_and_their_tokens(client):
    paths = client.get("/openapi.json").get_json()["paths"]
    for method, path in ENDPOINTS:
        operation = paths[path.replace("A" * 22, "{passkey_id}")][method]
        protected = client.open(path, method=method.upper(), json={}).status_code == 401
        assert protected == ("security" in operation), path
        assert protected != path.startswith("/auth/passkeys/login"), path
    assert {"401", "403", "429"} <= set(paths["/auth/passkeys/login"]["post"]["responses"])


# ---------------------------------------------------------------- the store's take


@pytest.mark.parametrize("backend", ["memory", "redis"])
def test_take_hands_a_value_to_one_taker(backend, redis_url):
    store = MemoryStore() if backend == "memory" else RedisStore(redis_url)
    key = f"authapi:test:take:{os.urandom(8).hex()}"
    store.set_many([(key, "value", 60)])
    start, taken = threading.Barrier(8, timeout=10), []

    def take():
        start.wait()
        taken.append(store.take(key))

    threads = [threading.Thread(target=take) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert (taken.count("value"), taken.count(None)) == (1, 7)
    assert store.get_many([key]) == [None]
