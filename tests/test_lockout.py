"""Failed-login lockout per username (API.md §5 LOCKOUT_*), counted in the real
Redis and shared by every app instance."""

import time

import pytest
import requests

from authapi import lockout
from authapi.extensions import db
from authapi.services import recovery
from authapi.services.accounts import find_by_login

from .conftest import PASSWORD, bearer, post_login

LOCKOUT = {"LOCKOUT_THRESHOLD": "3", "LOCKOUT_SECONDS": "2"}
WRONG = "not the password at all"


@pytest.fixture(scope="session")
def database_url(postgres_url):
    return postgres_url


@pytest.fixture
def app(make_app):
    return make_app(**LOCKOUT)


def fail(client, username, times):
    for _ in range(times):
        assert post_login(client, username, WRONG).status_code == 401


def assert_locked(response, lockout_seconds=2):
    assert response.status_code == 429
    assert response.get_json()["error"]["code"] == "rate_limited"
    assert 1 <= int(response.headers["Retry-After"]) <= lockout_seconds


def test_threshold_failures_lock_even_the_right_password(client, auth):
    auth.register(username="ada")
    fail(client, "ada", 3)

    assert_locked(post_login(client, "ada", PASSWORD))


def test_failures_below_the_threshold_do_not_lock(client, auth):
    auth.register(username="ada")
    fail(client, "ada", 2)

    assert post_login(client, "ada", PASSWORD).status_code == 200


def test_lock_ends_after_lockout_seconds(client, auth):
    auth.register(username="ada")
    fail(client, "ada", 3)
    assert_locked(post_login(client, "ada", PASSWORD))

    time.sleep(2.1)

    assert post_login(client, "ada", PASSWORD).status_code == 200


def test_unknown_username_locks_the_same_way(client, auth):
    auth.register(username="ada")
    fail(client, "ada", 3)
    fail(client, "ghost", 3)

    known, unknown = post_login(client, "ada", PASSWORD), post_login(client, "ghost", PASSWORD)

    assert_locked(known)
    assert_locked(unknown)
    assert known.get_json() == unknown.get_json()
    assert abs(int(known.headers["Retry-After"]) - int(unknown.headers["Retry-After"])) <= 1
    varying = {"X-Request-ID", "Retry-After", "Content-Length", "Date"}
    assert set(known.headers.keys()) - varying == set(unknown.headers.keys()) - varying


def test_failed_answers_do_not_tell_known_from_unknown_before_the_lock(client, auth):
    auth.register(username="ada")

    known = [post_login(client, "ada", WRONG) for _ in range(3)]
    unknown = [post_login(client, "ghost", WRONG) for _ in range(3)]

    assert [r.status_code for r in known] == [r.status_code for r in unknown] == [401] * 3
    assert [r.get_json() for r in known] == [r.get_json() for r in unknown]


def test_username_is_counted_case_insensitively(client, auth):
    auth.register(username="ada")
    fail(client, "ADA", 2)
    fail(client, "Ada", 1)

    assert_locked(post_login(client, "ada", PASSWORD))


def test_successful_login_clears_the_count(client, auth):
    auth.register(username="ada")
    fail(client, "ada", 2)
    assert post_login(client, "ada", PASSWORD).status_code == 200
    fail(client, "ada", 2)

    assert post_login(client, "ada", PASSWORD).status_code == 200


def test_success_by_email_clears_the_count_of_the_username(client, auth):
    auth.register(username="ada", email="ada@example.com")
    fail(client, "ada", 2)
    assert post_login(client, "ada@example.com", PASSWORD).status_code == 200
    fail(client, "ada", 1)

    assert post_login(client, "ada", PASSWORD).status_code == 200


def test_username_and_email_are_counted_apart(client, auth):
    # Locking one must not lock the other: that would confirm to a guesser
    # which email address belongs to which username.
    auth.register(username="ada", email="ada@example.com")
    fail(client, "ada", 3)

    assert_locked(post_login(client, "ada", PASSWORD))
    assert post_login(client, "ada@example.com", PASSWORD).status_code == 200


def test_deactivated_account_fails_and_locks_like_any_other(app, client, auth):
    auth.register(username="ada")
    with app.app_context():
        user = find_by_login("ada")
        user.is_active = False
        db.session.commit()

    responses = [post_login(client, "ada", PASSWORD) for _ in range(4)]

    assert [r.status_code for r in responses] == [401, 401, 401, 429]


def test_password_reset_clears_the_lock(app, client, auth):
    auth.register(username="ada")
    fail(client, "ada", 3)
    assert_locked(post_login(client, "ada", PASSWORD))
    with app.app_context():
        token = recovery.issue_token(find_by_login("ada"), recovery.PASSWORD_RESET)

    reset = client.post("/auth/password/reset", json={"token": token, "new_password": "a brand new passphrase"})

    assert reset.status_code == 200
    assert post_login(client, "ada", "a brand new passphrase").status_code == 200


def test_lock_is_shared_between_app_instances(app, client, auth, serve):
    # Two failures through a separate process (a real gunicorn), one here: the
    # count lives in Redis, so both see the lock.
    server = serve(**LOCKOUT)
    auth.register(username="ada")
    for _ in range(2):
        response = requests.post(server.url + "/auth/login", json={"username": "ada", "password": WRONG}, timeout=10)
        assert response.status_code == 401
    fail(client, "ada", 1)

    remote = requests.post(server.url + "/auth/login", json={"username": "ada", "password": PASSWORD}, timeout=10)

    assert remote.status_code == 429
    assert remote.json()["error"]["code"] == "rate_limited"
    assert_locked(post_login(client, "ada", PASSWORD))


def test_lockout_is_logged_as_a_security_event(client, auth, caplog):
    auth.register(username="ada")
    with caplog.at_level("INFO"):
        fail(client, "ada", 3)
        post_login(client, "ada", PASSWORD)  # one past the threshold: locks
        post_login(client, "ada", PASSWORD)  # while locked

    events = [getattr(r, "event", None) for r in caplog.records]
    assert events.count("login_failed") == 3
    # Counted before the account is looked up, so the lock names no user.
    assert events.count("lockout") == 1
    assert events.count("login_locked") == 1


def test_current_password_guesses_with_a_token_are_locked_out_too(client, auth):
    _, pair = auth.user(username="ada")
    headers = {"Authorization": f"Bearer {pair['access_token']}"}
    body = {"current_password": WRONG, "new_password": "a brand new passphrase"}
    for _ in range(3):
        assert client.post("/auth/password/change", json=body, headers=headers).status_code == 422
    right = {"current_password": PASSWORD, "new_password": "a brand new passphrase"}
    assert_locked(client.post("/auth/password/change", json=right, headers=headers))
    assert_locked(client.delete("/users/me", json={"password": PASSWORD}, headers=headers))
    assert client.get("/users/me", headers=headers).status_code == 200


def test_concurrent_failures_never_pass_the_threshold(make_app, auth):
    from concurrent.futures import ThreadPoolExecutor

    client = make_app(LOCKOUT_THRESHOLD="5", LOCKOUT_SECONDS="30").test_client()
    auth.register(username="ada")
    with ThreadPoolExecutor(8) as pool:
        statuses = list(pool.map(lambda _: post_login(client, "ada", WRONG).status_code, range(24)))
    # At most the threshold's worth of passwords were checked (concurrent
    # attempts past it may lock a few still in flight); the rest were locked out.
    assert 1 <= statuses.count(401) <= 5
    assert statuses.count(401) + statuses.count(429) == 24


def test_a_login_named_like_a_password_check_key_does_not_lock_that_check(client, auth):
    # Each purpose has its own key prefix: what a client types as a login can
    # never count toward a user's current-password checks (issue 13, finding 3).
    user, pair = auth.user(username="ada")
    fail(client, f"password-check:{user['id']}", 3)
    for _ in range(8):
        assert_locked(post_login(client, f"password-check:{user['id']}", WRONG))
    change = {"current_password": PASSWORD, "new_password": "a brand new passphrase"}
    response = client.post("/auth/password/change", json=change, headers=bearer(pair["access_token"]))
    assert response.status_code == 200, response.get_json()


def test_lockout_keys_of_each_purpose_have_their_own_prefix():
    login_keys = lockout.login_keys("password:7")
    password_keys = lockout.password_check_keys(7)
    assert all(key.startswith("authapi:lockout:login:") for key in login_keys)
    assert all(key.startswith("authapi:lockout:password:7:") for key in password_keys)
    assert not set(login_keys) & set(password_keys)
