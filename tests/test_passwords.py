"""Password hashing (authapi.passwords, API.md §7): argon2id, rehash on new
parameters, and unknown users costing what a wrong password costs. The policy
is in test_password_policy.py."""

import time

import pytest
from argon2 import PasswordHasher, extract_parameters
from sqlalchemy import select

from authapi import passwords
from authapi.extensions import db
from authapi.models import User

from .conftest import PASSWORD, AuthActions, bearer, error_code, post_login

USERNAME = "margaret"
EMAIL = "lovelace@example.com"


def stored_hash(app, username):
    with app.app_context():
        return db.session.scalar(select(User.password_hash).where(User.username == username))


# ---------------------------------------------------------------- hashing


def test_stored_hash_is_argon2id(app, auth):
    auth.register(username=USERNAME)
    password_hash = stored_hash(app, USERNAME)
    assert password_hash.startswith("$argon2id$")
    assert PASSWORD not in password_hash
    assert extract_parameters(password_hash).type.name == "ID"


def test_hashes_are_salted(app, auth):
    auth.register(username="first")
    auth.register(username="second")
    assert stored_hash(app, "first") != stored_hash(app, "second")


def keys(value):
    """Every key of a JSON document, at any depth."""
    if isinstance(value, dict):
        for key, item in value.items():
            yield key.lower()
            yield from keys(item)
    elif isinstance(value, list):
        for item in value:
            yield from keys(item)


def test_hash_is_in_no_response(app, client, auth):
    responses = [client.post(
        "/auth/register", json={"email": EMAIL, "username": USERNAME, "password": PASSWORD}
    )]
    responses.append(post_login(client, USERNAME))
    pair = responses[-1].get_json()
    headers = bearer(pair["access_token"])
    responses += [
        client.get("/users/me", headers=headers),
        client.patch("/users/me", json={"full_name": "Ada"}, headers=headers),
        client.get("/auth/sessions", headers=headers),
        client.post("/auth/refresh", headers=bearer(pair["refresh_token"])),
        post_login(client, USERNAME, "wrong password, long enough"),
    ]
    password_hash = stored_hash(app, USERNAME)
    for response in responses:
        assert response.status_code < 500
        text = response.get_data(as_text=True)
        assert password_hash not in text and "$argon2" not in text and PASSWORD not in text
        assert not any("hash" in key or "password" in key for key in keys(response.get_json()))


def test_login_rehashes_when_argon2_parameters_change(app, make_app, auth):
    auth.register(username=USERNAME)
    before = stored_hash(app, USERNAME)
    assert extract_parameters(before).time_cost == 1
    stronger = make_app(ARGON2_TIME_COST=2)
    assert post_login(stronger.test_client(), USERNAME).status_code == 200
    after = stored_hash(app, USERNAME)
    assert after != before and after.startswith("$argon2id$")
    assert extract_parameters(after).time_cost == 2
    assert "t=2" in after
    # The new hash is of the same password.
    assert post_login(stronger.test_client(), USERNAME).status_code == 200


def test_login_keeps_the_hash_when_parameters_are_unchanged(app, client, auth):
    auth.register(username=USERNAME)
    before = stored_hash(app, USERNAME)
    assert post_login(client, USERNAME).status_code == 200
    assert stored_hash(app, USERNAME) == before


def test_failed_login_does_not_rehash(app, make_app, auth):
    auth.register(username=USERNAME)
    before = stored_hash(app, USERNAME)
    stronger = make_app(ARGON2_TIME_COST=2)
    response = post_login(stronger.test_client(), USERNAME, "not the password at all")
    assert response.status_code == 401
    assert stored_hash(app, USERNAME) == before


def test_argon2_memory_cost_is_configurable(app, make_app, auth):
    auth.register(username=USERNAME)
    assert post_login(make_app(ARGON2_MEMORY_COST=2048).test_client(), USERNAME).status_code == 200
    assert extract_parameters(stored_hash(app, USERNAME)).memory_cost == 2048


# ---------------------------------------------------------------- unknown users


def test_unknown_user_login_answers_like_a_wrong_password(client, auth):
    auth.register(username=USERNAME)
    wrong = post_login(client, USERNAME, "not the password at all")
    unknown = post_login(client, "nobody-here", "not the password at all")
    assert wrong.status_code == unknown.status_code == 401
    assert error_code(unknown) == "invalid_credentials"
    assert wrong.get_json() == unknown.get_json()


def test_unknown_email_login_answers_like_a_wrong_password(client, auth):
    auth.register(username=USERNAME, email=EMAIL)
    wrong = post_login(client, EMAIL, "not the password at all")
    unknown = post_login(client, "nobody@example.com", "not the password at all")
    assert (unknown.status_code, error_code(unknown)) == (401, "invalid_credentials")
    assert wrong.get_json() == unknown.get_json()


@pytest.fixture
def verified_hashes(monkeypatch):
    """The hashes argon2 verifies passwords against, in order."""
    calls = []
    original = PasswordHasher.verify

    def spy(self, password_hash, password):
        calls.append(password_hash)
        return original(self, password_hash, password)

    monkeypatch.setattr(PasswordHasher, "verify", spy)
    return calls


def test_unknown_user_login_runs_argon2_verify(client, auth, verified_hashes):
    response = post_login(client, "nobody-here", PASSWORD)
    assert (response.status_code, error_code(response)) == (401, "invalid_credentials")
    assert len(verified_hashes) == 1 and verified_hashes[0].startswith("$argon2id$")


def test_unknown_user_verify_uses_the_current_parameters(make_app, verified_hashes):
    app = make_app(ARGON2_TIME_COST=2)
    assert post_login(app.test_client(), "nobody-here").status_code == 401
    # Same cost as a real user's hash made with these settings.
    assert extract_parameters(verified_hashes[0]).time_cost == 2


@pytest.mark.parametrize("password", ["x", "authapi-dummy-password", PASSWORD, ""])
def test_verify_without_a_hash_is_false(app, password):
    with app.app_context():
        assert passwords.verify_password(None, password) is False


def test_verify_with_a_hash_checks_the_password(app):
    with app.app_context():
        password_hash = passwords.hash_password(PASSWORD)
        assert passwords.verify_password(password_hash, PASSWORD) is True
        assert passwords.verify_password(password_hash, PASSWORD + "!") is False


def test_unknown_user_verify_costs_like_a_real_one(make_app):
    # A cost high enough that hashing dominates the timings; the bounds are
    # loose: skipping the hash would be ~1000x faster, not 3x.
    app = make_app(ARGON2_TIME_COST=2, ARGON2_MEMORY_COST=32768)
    with app.app_context():
        password_hash = passwords.hash_password(PASSWORD)
        passwords.verify_password(None, "warm up")

        def fastest(hash_or_none):
            timings = []
            for _ in range(5):
                start = time.perf_counter()
                assert passwords.verify_password(hash_or_none, "wrong password") is False
                timings.append(time.perf_counter() - start)
            return min(timings)

        known, unknown = fastest(password_hash), fastest(None)
    assert known > 0.002  # the cost really is in force
    assert 1 / 3 < unknown / known < 3


def test_unknown_user_login_costs_like_a_wrong_password(make_app):
    app = make_app(ARGON2_TIME_COST=2, ARGON2_MEMORY_COST=32768, LOCKOUT_THRESHOLD=1000)
    client = app.test_client()
    AuthActions(client).register(username=USERNAME)

    def fastest(username):
        timings = []
        for _ in range(5):
            start = time.perf_counter()
            assert post_login(client, username, "wrong password, long enough").status_code == 401
            timings.append(time.perf_counter() - start)
        return min(timings)

    fastest("warm-up")
    wrong, unknown = fastest(USERNAME), fastest("nobody-here")
    assert 1 / 3 < unknown / wrong < 3
