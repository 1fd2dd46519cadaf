"""Device tokens (API.md §7, OWASP's device cookie): a login presenting the
device token of an earlier successful login of the same user is not refused by
that username's lockout; its failures count against the device token alone,
which is void after LOCKOUT_THRESHOLD of them. In process on SQLite and
PostgreSQL, and through a real gunicorn with real Redis."""

import hashlib
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest
import requests
from sqlalchemy import func, select, update

from authapi import create_app
from authapi.extensions import db
from authapi.models import DeviceToken, utcnow
from authapi.services import devices, recovery
from authapi.services.accounts import find_by_login

from .conftest import PASSWORD, base_env, bearer, error_code, free_port

THRESHOLD = 3
LOCKOUT = {"LOCKOUT_THRESHOLD": str(THRESHOLD), "LOCKOUT_SECONDS": "60"}
WRONG = "not the password at all"
NEW_PASSWORD = "a brand new passphrase 42"


@pytest.fixture
def app(make_app):
    return make_app(**LOCKOUT)


@pytest.fixture
def alice(auth):
    """alice, registered, and the device token of her first login."""
    auth.register(username="alice")
    return auth.login("alice")["device_token"]


def login(client, username, password, device_token=None, **kwargs):
    body = {"username": username, "password": password}
    if device_token is not None:
        body["device_token"] = device_token
    return client.post("/auth/login", json=body, **kwargs)


def lock(client, username):
    """What an attacker does: wrong passwords until the username is locked."""
    for _ in range(THRESHOLD):
        assert login(client, username, WRONG).status_code == 401
    assert login(client, username, PASSWORD).status_code == 429


def device_rows(app, username="alice") -> list[DeviceToken]:
    with app.app_context():
        user = find_by_login(username)
        return list(db.session.scalars(select(DeviceToken).where(DeviceToken.user_id == user.id)))


# ---------------------------------------------------------------- issuing


def test_a_login_carries_a_random_device_token_stored_only_as_its_hash(app, alice):
    (row,) = device_rows(app)

    # 256 bits, URL-safe base64.
    assert len(alice) >= 43
    assert row.token_hash == hashlib.sha256(alice.encode()).hexdigest()
    assert row.voided_at is None
    assert abs((row.expires_at - row.created_at) - timedelta(seconds=31536000)) < timedelta(seconds=5)


def test_presenting_a_valid_device_token_gets_the_same_one_back(app, client, alice):
    response = login(client, "alice", PASSWORD, alice)

    assert response.status_code == 200
    assert response.get_json()["device_token"] == alice
    assert len(device_rows(app)) == 1


def test_a_user_keeps_at_most_ten_device_tokens(app, client, alice):
    # A client that never sends its token back: one row per login, capped.
    for _ in range(devices.MAX_PER_USER + 5):
        assert login(client, "alice", PASSWORD).status_code == 200
    newest = login(client, "alice", PASSWORD).get_json()["device_token"]
    rows = device_rows(app)
    assert len(rows) == devices.MAX_PER_USER
    assert hashlib.sha256(newest.encode()).hexdigest() in {row.token_hash for row in rows}
    # The first login's token was among the oldest: it no longer exempts.
    assert alice and hashlib.sha256(alice.encode()).hexdigest() not in {r.token_hash for r in rows}


def test_refresh_and_password_change_issue_no_device_token(client, auth, alice):
    pair = auth.login("alice")

    refreshed = client.post("/auth/refresh", headers=bearer(pair["refresh_token"]))
    changed = client.post(
        "/auth/password/change",
        json={"current_password": PASSWORD, "new_password": NEW_PASSWORD},
        headers=bearer(pair["access_token"]),
    )

    assert refreshed.status_code == 200 and "device_token" not in refreshed.get_json()
    assert changed.status_code == 200 and "device_token" not in changed.get_json()


# ---------------------------------------------------------------- the lockout


def test_a_locked_username_still_lets_its_owner_in_with_her_device_token(client, alice):
    lock(client, "alice")

    response = login(client, "alice", PASSWORD, alice)

    assert response.status_code == 200
    # And the attacker is still locked out: the owner's login gave no fresh guesses.
    assert login(client, "alice", PASSWORD).status_code == 429


def test_the_device_token_works_with_the_email_as_login(client, alice):
    lock(client, "alice@example.com")

    assert login(client, "ALICE@example.com", PASSWORD, alice).status_code == 200


def test_a_wrong_password_with_a_device_token_is_still_invalid_credentials(client, alice):
    lock(client, "alice")

    response = login(client, "alice", WRONG, alice)

    assert response.status_code == 401
    assert error_code(response) == "invalid_credentials"


def test_device_token_failures_void_it_after_the_threshold(app, client, alice):
    lock(client, "alice")
    for _ in range(THRESHOLD):
        assert login(client, "alice", WRONG, alice).status_code == 401

    # Void: the username's lockout applies again, even with the right password.
    assert login(client, "alice", PASSWORD, alice).status_code == 429
    (row,) = device_rows(app)
    assert row.voided_at is not None


def test_device_token_failures_do_not_count_against_the_username(client, alice):
    for _ in range(THRESHOLD - 1):
        assert login(client, "alice", WRONG, alice).status_code == 401

    # Had they counted, this would be the attempt that locks.
    assert login(client, "alice", WRONG).status_code == 401
    assert login(client, "alice", PASSWORD).status_code == 200


def test_a_success_resets_the_device_tokens_count(app, client, alice):
    for _ in range(2):
        for _ in range(THRESHOLD - 1):
            assert login(client, "alice", WRONG, alice).status_code == 401
        assert login(client, "alice", PASSWORD, alice).status_code == 200

    (row,) = device_rows(app)
    assert row.voided_at is None


def test_a_device_token_of_another_user_does_not_help(client, auth, alice):
    auth.register(username="bob")
    bobs = auth.login("bob")["device_token"]
    lock(client, "alice")

    response = login(client, "alice", PASSWORD, bobs)

    assert response.status_code == 429


def test_an_unknown_device_token_is_counted_as_none(client, alice):
    lock(client, "alice")

    assert login(client, "alice", PASSWORD, "x" * 43).status_code == 429

def test_an_invalid_device_token_is_never_its_own_error(client, alice):
    with_token = login(client, "alice", WRONG, "x" * 43)
    without = login(client, "alice", WRONG)

    assert with_token.status_code == without.status_code == 401
    assert with_token.get_json() == without.get_json()


def test_an_expired_device_token_is_counted_as_none(app, client, alice):
    with app.app_context():
        db.session.execute(update(DeviceToken).values(expires_at=utcnow() - timedelta(seconds=1)))
        db.session.commit()
    lock(client, "alice")

    assert login(client, "alice", PASSWORD, alice).status_code == 429


def test_an_expired_device_token_is_replaced_at_the_next_login(app, client, alice):
    with app.app_context():
        db.session.execute(update(DeviceToken).values(expires_at=utcnow() - timedelta(seconds=1)))
        db.session.commit()

    response = login(client, "alice", PASSWORD, alice)

    assert response.status_code == 200
    assert response.get_json()["device_token"] != alice


def test_a_password_reset_voids_the_users_device_tokens(app, client, alice):
    with app.app_context():
        token = recovery.issue_token(find_by_login("alice"), recovery.PASSWORD_RESET)
    reset = client.post("/auth/password/reset", json={"token": token, "new_password": NEW_PASSWORD})
    assert reset.status_code == 200
    for _ in range(THRESHOLD):
        login(client, "alice", WRONG)

    assert login(client, "alice", NEW_PASSWORD, alice).status_code == 429
    assert all(row.voided_at is not None for row in device_rows(app))


def test_account_deletion_removes_its_device_tokens(app, client, auth, alice):
    pair = auth.login("alice")

    response = client.delete("/users/me", json={"password": PASSWORD}, headers=bearer(pair["access_token"]))

    assert response.status_code == 204
    with app.app_context():
        assert db.session.scalar(select(func.count(DeviceToken.id))) == 0


def test_purge_deletes_void_and_expired_device_tokens(app, client, auth, alice):
    auth.register(username="bob")
    auth.login("bob")
    auth.register(username="carol")
    carols = auth.login("carol")["device_token"]
    with app.app_context():
        db.session.execute(update(DeviceToken).where(DeviceToken.token_hash == hashlib.sha256(
            carols.encode()).hexdigest()).values(expires_at=utcnow() - timedelta(seconds=1)))
        db.session.commit()
    for _ in range(THRESHOLD):
        login(client, "alice", WRONG, alice)

    result = app.test_cli_runner().invoke(args=["sessions", "purge"])

    assert result.exit_code == 0
    assert "Purged 2 void or expired device tokens." in result.output
    assert device_rows(app) == [] and len(device_rows(app, "bob")) == 1


def test_a_new_device_token_does_not_inherit_the_failures_of_a_purged_one(app, client, alice):
    for _ in range(THRESHOLD):
        login(client, "alice", WRONG, alice)
    app.test_cli_runner().invoke(args=["sessions", "purge"])
    # On SQLite the new row may get the purged row's id.
    fresh = login(client, "alice", PASSWORD).get_json()["device_token"]
    lock(client, "alice")

    assert login(client, "alice", PASSWORD, fresh).status_code == 200


def test_the_oauth2_form_grant_carries_the_device_token(client, alice):
    lock(client, "alice")

    response = client.post("/auth/login", data={
        "grant_type": "password", "username": "alice", "password": PASSWORD, "device_token": alice})

    assert response.status_code == 200
    assert response.get_json()["device_token"] == alice


def test_the_lockout_still_fails_closed_with_a_device_token(make_app, alice):
    down = make_app(REDIS_URL=f"redis://127.0.0.1:{free_port()}/0", **LOCKOUT)

    response = login(down.test_client(), "alice", PASSWORD, alice)

    assert response.status_code == 503
    assert error_code(response) == "service_unavailable"


def test_the_document_states_the_device_token_field(client):
    document = client.get("/openapi.json").get_json()
    schemas = document["components"]["schemas"]
    content = document["paths"]["/auth/login"]["post"]["requestBody"]["content"]

    for media_type in ("application/json", "application/x-www-form-urlencoded"):
        ref = content[media_type]["schema"]["$ref"].rsplit("/", 1)[1]
        assert schemas[ref]["properties"]["device_token"]["type"] == "string"
        assert "device_token" not in schemas[ref].get("required", [])
    assert "device_token" not in schemas["TokenPairOut"].get("required", [])
    assert schemas["TokenPairOut"]["properties"]["device_token"]["type"] == "string"


# ---------------------------------------------------------------- browser clients


def device_cookie(response) -> dict[str, str]:
    (header,) = [h for h in response.headers.getlist("Set-Cookie") if h.startswith("device_token=")]
    parts = [part.strip() for part in header.split(";")]
    attributes = {p.split("=", 1)[0].lower(): (p.split("=", 1)[1] if "=" in p else "") for p in parts[1:]}
    return {"value": parts[0].split("=", 1)[1], **attributes}


@pytest.fixture
def browser(make_app):
    app = make_app(REFRESH_TOKEN_COOKIE="true", **LOCKOUT)
    client = app.test_client()
    client.post("/auth/register", json={"email": "alice@example.com", "username": "alice", "password": PASSWORD})
    return client


@pytest.fixture
def attacker(browser):
    """Another browser: a cookie jar of its own."""
    return browser.application.test_client()


def test_cookie_mode_sets_the_device_token_as_an_httponly_cookie(browser):
    response = login(browser, "alice", PASSWORD)

    cookie = device_cookie(response)
    assert response.status_code == 200
    assert "device_token" not in response.get_json()
    assert len(cookie["value"]) >= 43
    assert "httponly" in cookie and cookie["path"] == "/auth" and cookie["samesite"] == "Strict"
    assert int(cookie["max-age"]) == 31536000
    assert "secure" not in cookie  # plain HTTP outside production


def test_cookie_mode_reads_the_device_cookie_back(browser, attacker):
    first = device_cookie(login(browser, "alice", PASSWORD))["value"]
    lock(attacker, "alice")

    response = login(browser, "alice", PASSWORD)  # the client's jar sends the cookie

    assert response.status_code == 200
    assert device_cookie(response)["value"] == first


def test_logout_keeps_the_device_cookie(browser, attacker):
    pair = login(browser, "alice", PASSWORD).get_json()
    logout = browser.post("/auth/logout", headers=bearer(pair["access_token"]))
    assert logout.status_code == 200
    assert not [h for h in logout.headers.getlist("Set-Cookie") if h.startswith("device_token=")]
    lock(attacker, "alice")

    assert login(browser, "alice", PASSWORD).status_code == 200


def test_the_device_cookie_is_not_read_outside_cookie_mode(make_app, alice):
    client = make_app(**LOCKOUT).test_client()
    lock(client, "alice")
    client.set_cookie("device_token", alice, path="/auth")

    assert login(client, "alice", PASSWORD).status_code == 429


def test_the_device_cookie_is_secure_in_production(postgres_url, redis_url):
    env = base_env(postgres_url, redis_url, REFRESH_TOKEN_COOKIE="true", ARGON2_TIME_COST="1", ARGON2_MEMORY_COST="1024")
    client = create_app("production", environ=env).test_client()
    name = "p" + uuid.uuid4().hex[:12]
    client.post("/auth/register", json={"email": f"{name}@example.com", "username": name, "password": PASSWORD})

    response = login(client, name, PASSWORD)

    assert response.status_code == 200
    assert "secure" in device_cookie(response)


# ---------------------------------------------------------------- a real gunicorn


@pytest.fixture(scope="module")
def server(serve):
    return serve(workers=2, **LOCKOUT)


def http_login(url, username, password, device_token=None):
    body = {"username": username, "password": password}
    if device_token is not None:
        body["device_token"] = device_token
    return requests.post(url + "/auth/login", json=body, timeout=30)


def http_user(url) -> tuple[str, str]:
    """A new user through the API: (username, device token of its first login)."""
    name = "d" + uuid.uuid4().hex[:12]
    response = requests.post(url + "/auth/register", json={
        "email": f"{name}@example.com", "username": name, "password": PASSWORD}, timeout=30)
    assert response.status_code == 201, response.text
    first = http_login(url, name, PASSWORD)
    assert first.status_code == 200, first.text
    return name, first.json()["device_token"]


def test_through_gunicorn_a_locked_out_owner_logs_in_with_her_device_token(server):
    alice, alices = http_user(server.url)
    _, bobs = http_user(server.url)
    for _ in range(THRESHOLD):
        assert http_login(server.url, alice, WRONG).status_code == 401
    assert http_login(server.url, alice, PASSWORD).status_code == 429

    owner = http_login(server.url, alice, PASSWORD, alices)
    assert owner.status_code == 200 and owner.json()["device_token"] == alices
    assert http_login(server.url, alice, PASSWORD, bobs).status_code == 429
    for _ in range(THRESHOLD):
        wrong = http_login(server.url, alice, WRONG, alices)
        assert wrong.status_code == 401 and wrong.json()["error"]["code"] == "invalid_credentials"
    assert http_login(server.url, alice, PASSWORD, alices).status_code == 429


def test_through_gunicorn_concurrent_guesses_with_one_device_token_get_the_threshold_at_most(server):
    alice, alices = http_user(server.url)

    with ThreadPoolExecutor(max_workers=8) as pool:
        statuses = list(pool.map(lambda _: http_login(server.url, alice, WRONG, alices).status_code, range(16)))

    # THRESHOLD counted against the device token, the rest against the
    # username, which locks after THRESHOLD more.
    assert statuses.count(401) <= 2 * THRESHOLD
    assert set(statuses) <= {401, 429}
    assert http_login(server.url, alice, PASSWORD, alices).status_code == 429
