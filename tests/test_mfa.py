"""Two-factor authentication through the HTTP API (API.md §8), on SQLite and
PostgreSQL: codes computed by pyotp from the secret the API returns, against
a clock the test moves (authapi.totp.now), never a sleep."""

import threading
import time

import pyotp
import pytest
from sqlalchemy import text

from authapi import metrics, totp
from authapi.extensions import db
from authapi.models import User
from authapi.services import recovery
from tests.clients import PASSWORD, assert_refused, bearer, claims_of, error_code, me, post_login

PERIOD = 30
NEW_PASSWORD = "another horse battery staple"


class Clock:
    """What authapi.totp.now returns: a moment the test sets."""

    def __init__(self):
        self.moment = float(int(time.time()))

    def __call__(self) -> float:
        return self.moment

    def advance(self, periods: int = 1) -> None:
        self.moment += periods * PERIOD


@pytest.fixture
def clock(monkeypatch):
    moment = Clock()
    monkeypatch.setattr(totp, "now", moment)
    return moment


def code(secret, clock, periods=0) -> str:
    return pyotp.TOTP(secret).at(clock.moment + periods * PERIOD)


def enrol(client, pair, clock) -> tuple[str, list[str]]:
    """Turn TOTP on for the pair's user: (secret, recovery codes). The clock
    moves on a period, so the next code is not the confirmed one."""
    headers = bearer(pair["access_token"])
    setup = client.post("/auth/mfa/totp/setup", json={"password": PASSWORD}, headers=headers)
    assert setup.status_code == 200, setup.get_json()
    secret = setup.get_json()["secret"]
    confirm = client.post("/auth/mfa/totp/confirm", json={"code": code(secret, clock)}, headers=headers)
    assert confirm.status_code == 200, confirm.get_json()
    clock.advance()
    return secret, confirm.get_json()["recovery_codes"]


def first_step(client, username) -> str:
    response = post_login(client, username)
    assert response.status_code == 403, response.get_json()
    error = response.get_json()["error"]
    assert error["code"] == "mfa_required" and error["expires_in"] == 300
    return error["mfa_token"]


def second_step(client, mfa_token, one_time_code):
    return client.post("/auth/login/mfa", json={"mfa_token": mfa_token, "code": one_time_code})


def login_with(client, username, one_time_code):
    return second_step(client, first_step(client, username), one_time_code)


@pytest.fixture
def enrolled(client, auth, clock):
    """A user with TOTP on: (user, secret, recovery codes)."""
    user, pair = auth.user()
    secret, codes = enrol(client, pair, clock)
    return user, secret, codes


# ---------------------------------------------------------------- the whole cycle


def test_enrol_login_step_up_disable(client, auth, clock):
    user, pair = auth.user()
    other = auth.login(user["username"])
    headers = bearer(pair["access_token"])
    assert client.get("/auth/mfa", headers=headers).get_json() == {
        "totp": False, "recovery_codes_left": 0, "passkeys": 0}
    assert claims_of(pair["access_token"])["amr"] == ["pwd"]

    setup = client.post("/auth/mfa/totp/setup", json={"password": PASSWORD}, headers=headers).get_json()
    assert len(setup["secret"]) >= 32 and "=" not in setup["secret"]  # >= 160 bits, base32
    assert setup["otpauth_uri"] == (
        f"otpauth://totp/authapi:{user['username']}%40example.com?secret={setup['secret']}&issuer=authapi")
    assert setup["qr_svg"].startswith("<svg") and setup["qr_svg"].rstrip().endswith("</svg>")
    # Pending: logins are not changed yet.
    assert post_login(client, user["username"]).status_code == 200

    confirmed = client.post("/auth/mfa/totp/confirm", json={"code": code(setup["secret"], clock)}, headers=headers)
    codes = confirmed.get_json()["recovery_codes"]
    assert confirmed.status_code == 200 and len(set(codes)) == 10
    # Every other session ended; this one goes on.
    assert_refused(me(client, other["access_token"]), 401, "token_revoked")
    assert me(client, pair["access_token"]).get_json()["mfa_enabled"] is True
    assert client.get("/auth/mfa", headers=headers).get_json() == {
        "totp": True, "recovery_codes_left": 10, "passkeys": 0}
    assert_refused(client.post("/auth/mfa/totp/setup", json={"password": PASSWORD}, headers=headers), 409, "conflict")

    # The login in two steps; the password step starts no session.
    clock.advance()
    sessions_before = len(client.get("/auth/sessions", headers=headers).get_json()["items"])
    mfa_token = first_step(client, user["username"])
    assert len(client.get("/auth/sessions", headers=headers).get_json()["items"]) == sessions_before
    assert_refused(post_login(client, user["username"], "wrong password, long enough"), 401, "invalid_credentials")
    done = second_step(client, mfa_token, code(setup["secret"], clock))
    assert done.status_code == 200, done.get_json()
    mfa_pair = done.get_json()
    assert claims_of(mfa_pair["access_token"])["amr"] == ["pwd", "otp", "mfa"]
    assert mfa_pair["device_token"]
    refreshed = client.post("/auth/refresh", headers=bearer(mfa_pair["refresh_token"])).get_json()
    assert claims_of(refreshed["access_token"])["amr"] == ["pwd", "otp", "mfa"]
    mfa_headers = bearer(refreshed["access_token"])

    # Step-up: a password change needs a code; refused without one, nothing changes.
    change = {"current_password": PASSWORD, "new_password": NEW_PASSWORD}
    missing = client.post("/auth/password/change", json=change, headers=mfa_headers)
    assert_refused(missing, 422, "validation_error")
    assert list(missing.get_json()["error"]["details"]) == ["code"]
    wrong = client.post("/auth/password/change", json={**change, "code": "000000"}, headers=mfa_headers)
    assert list(wrong.get_json()["error"]["details"]) == ["code"]
    assert me(client, refreshed["access_token"]).status_code == 200
    clock.advance()
    changed = client.post("/auth/password/change", json={**change, "code": code(setup["secret"], clock)},
                          headers=mfa_headers)
    assert changed.status_code == 200, changed.get_json()
    assert claims_of(changed.get_json()["access_token"])["amr"] == ["pwd", "otp", "mfa"]
    headers = bearer(changed.get_json()["access_token"])

    # Email change and deletion need a code too.
    email_change = {"email": "new@example.com", "current_password": NEW_PASSWORD}
    refused = client.patch("/users/me", json=email_change, headers=headers)
    assert list(refused.get_json()["error"]["details"]) == ["code"]
    clock.advance()
    moved = client.patch("/users/me", json={**email_change, "code": code(setup["secret"], clock)}, headers=headers)
    assert moved.status_code == 200 and moved.get_json()["email"] == "new@example.com"
    refused = client.delete("/users/me", json={"password": NEW_PASSWORD}, headers=headers)
    assert list(refused.get_json()["error"]["details"]) == ["code"]

    # Disable: password and code; logins are one step again.
    clock.advance()
    wrong_password = client.delete("/auth/mfa/totp", json={"password": PASSWORD, "code": code(setup["secret"], clock)},
                                   headers=headers)
    assert list(wrong_password.get_json()["error"]["details"]) == ["password"]
    off = client.delete("/auth/mfa/totp", json={"password": NEW_PASSWORD, "code": code(setup["secret"], clock)},
                        headers=headers)
    assert off.status_code == 204
    assert client.get("/auth/mfa", headers=headers).get_json() == {
        "totp": False, "recovery_codes_left": 0, "passkeys": 0}
    plain = post_login(client, user["username"], NEW_PASSWORD)
    assert plain.status_code == 200 and claims_of(plain.get_json()["access_token"])["amr"] == ["pwd"]
    assert client.delete("/users/me", json={"password": NEW_PASSWORD}, headers=headers).status_code == 204


def test_confirm_needs_a_pending_enrolment_and_its_code(client, auth, clock):
    user, pair = auth.user()
    headers = bearer(pair["access_token"])
    assert_refused(client.post("/auth/mfa/totp/confirm", json={"code": "123456"}, headers=headers), 409, "conflict")
    secret = client.post("/auth/mfa/totp/setup", json={"password": PASSWORD}, headers=headers).get_json()["secret"]
    wrong = client.post("/auth/mfa/totp/confirm", json={"code": code(secret, clock, 3)}, headers=headers)
    assert_refused(wrong, 422, "validation_error")
    assert list(wrong.get_json()["error"]["details"]) == ["code"]
    bad_password = client.post("/auth/mfa/totp/setup", json={"password": "not the password"}, headers=headers)
    assert list(bad_password.get_json()["error"]["details"]) == ["password"]
    # The enrolment lapses after 10 minutes.
    with client.application.app_context():
        db.session.execute(text("UPDATE users SET totp_pending_expires_at = created_at"))
        db.session.commit()
    assert_refused(client.post("/auth/mfa/totp/confirm", json={"code": code(secret, clock)}, headers=headers),
                   409, "conflict")
    assert me(client, pair["access_token"]).get_json()["mfa_enabled"] is False


# ---------------------------------------------------------------- codes


def test_a_totp_code_is_accepted_once(client, enrolled, clock):
    user, secret, _ = enrolled
    first = login_with(client, user["username"], code(secret, clock))
    assert first.status_code == 200
    assert_refused(login_with(client, user["username"], code(secret, clock)), 401, "invalid_credentials")
    # Nor at a step-up.
    headers = bearer(first.get_json()["access_token"])
    again = client.post("/auth/mfa/recovery-codes", json={"password": PASSWORD, "code": code(secret, clock)},
                        headers=headers)
    assert list(again.get_json()["error"]["details"]) == ["code"]
    # An older code than the last accepted one is refused too.
    assert_refused(login_with(client, user["username"], code(secret, clock, -1)), 401, "invalid_credentials")


def test_the_previous_and_next_periods_are_accepted_two_away_are_not(client, enrolled, clock):
    user, secret, _ = enrolled
    clock.advance(10)
    for periods in (2, -2):
        assert_refused(login_with(client, user["username"], code(secret, clock, periods)), 401, "invalid_credentials")
    for periods in (-1, 0, 1):  # in rising order: each is newer than the last accepted
        assert login_with(client, user["username"], code(secret, clock, periods)).status_code == 200


def test_a_recovery_code_works_once_in_any_case_with_or_without_dashes(client, enrolled, clock):
    user, secret, codes = enrolled
    variants = [codes[0], codes[1].upper(), codes[2].replace("-", ""), " ".join(codes[3].split("-"))]
    for variant in variants:
        done = login_with(client, user["username"], variant)
        assert done.status_code == 200, (variant, done.get_json())
        assert claims_of(done.get_json()["access_token"])["amr"] == ["pwd", "otp", "mfa"]
    for used in codes[:4]:
        assert_refused(login_with(client, user["username"], used), 401, "invalid_credentials")
    headers = bearer(done.get_json()["access_token"])
    assert client.get("/auth/mfa", headers=headers).get_json()["recovery_codes_left"] == 6

    # A new set: the old one stops working.
    fresh = client.post("/auth/mfa/recovery-codes", json={"password": PASSWORD, "code": codes[4]}, headers=headers)
    assert fresh.status_code == 200
    assert_refused(login_with(client, user["username"], codes[5]), 401, "invalid_credentials")
    assert login_with(client, user["username"], fresh.get_json()["recovery_codes"][0]).status_code == 200


def test_the_mfa_token_dies_after_use_five_wrong_codes_and_300_seconds(client, enrolled, clock):
    user, secret, codes = enrolled
    assert_refused(second_step(client, "no-such-token", code(secret, clock)), 401, "token_invalid")

    spent = first_step(client, user["username"])
    assert second_step(client, spent, code(secret, clock)).status_code == 200
    assert_refused(second_step(client, spent, codes[0]), 401, "token_invalid")

    guessed = first_step(client, user["username"])
    for wrong in ("000000", "111111", "222222", "333333", "444444"):
        assert_refused(second_step(client, guessed, wrong), 401, "invalid_credentials")
    assert_refused(second_step(client, guessed, codes[0]), 401, "token_invalid")

    expired = first_step(client, user["username"])
    clock.moment += 301
    assert_refused(second_step(client, expired, codes[0]), 401, "token_invalid")
    # The refusals spent nothing.
    assert login_with(client, user["username"], codes[0]).status_code == 200


def test_an_outdated_hash_is_renewed_at_the_first_step_and_the_second_does_no_argon2(
        app, make_app, client, enrolled, clock, monkeypatch):
    from argon2 import PasswordHasher, extract_parameters

    user, secret, _ = enrolled

    def stored_hash():
        with app.app_context():
            return db.session.get(User, user["id"]).password_hash

    before = stored_hash()
    stronger = make_app(ARGON2_TIME_COST=2).test_client()
    mfa_token = first_step(stronger, user["username"])
    after = stored_hash()
    assert after != before and extract_parameters(after).time_cost == 2

    def no_argon2(*args, **kwargs):
        raise AssertionError("the second step ran argon2")

    monkeypatch.setattr(PasswordHasher, "hash", no_argon2)
    monkeypatch.setattr(PasswordHasher, "verify", no_argon2)
    assert second_step(stronger, mfa_token, code(secret, clock)).status_code == 200
    assert stored_hash() == after


def test_the_mfa_token_dies_with_a_password_change_in_between(client, auth, enrolled, clock):
    user, secret, codes = enrolled
    mfa_token = first_step(client, user["username"])
    with client.application.app_context():
        recovery.replace_password(db.session.get(User, user["id"]), NEW_PASSWORD)
        db.session.commit()
    assert_refused(second_step(client, mfa_token, codes[0]), 401, "token_invalid")


def test_wrong_codes_lock_the_users_second_step(make_app, auth, clock):
    client = make_app(LOCKOUT_THRESHOLD="3", LOCKOUT_SECONDS="600").test_client()
    user, pair = type(auth)(client).user()
    secret, codes = enrol(client, pair, clock)
    for wrong in ("000000", "111111", "222222"):  # each with a fresh mfa_token
        assert_refused(login_with(client, user["username"], wrong), 401, "invalid_credentials")
    locked = login_with(client, user["username"], code(secret, clock))
    assert_refused(locked, 429, "rate_limited")
    assert 590 <= int(locked.headers["Retry-After"]) <= 600
    # Step-up codes are the same count.
    headers = bearer(pair["access_token"])
    refused = client.post("/auth/mfa/recovery-codes", json={"password": PASSWORD, "code": codes[0]}, headers=headers)
    assert_refused(refused, 429, "rate_limited")


def test_the_login_rate_limit_covers_the_second_step(make_app):
    client = make_app(RATELIMIT_ENABLED="true", RATELIMIT_LOGIN="2 per minute").test_client()
    for _ in range(2):
        assert second_step(client, "unknown", "123456").status_code == 401
    assert_refused(second_step(client, "unknown", "123456"), 429, "rate_limited")


def test_two_concurrent_uses_of_one_code_have_one_winner(client, auth, clock, database_url):
    if database_url.startswith("sqlite"):
        pytest.skip("PostgreSQL's row locks are what is raced; SQLite has one writer")
    user, pair = auth.user()
    secret, _ = enrol(client, pair, clock)
    tokens = [first_step(client, user["username"]) for _ in range(2)]
    one_code, start, statuses = code(secret, clock), threading.Barrier(2, timeout=10), []

    def use(mfa_token):
        own = client.application.test_client()
        start.wait()
        statuses.append(second_step(own, mfa_token, one_code).status_code)

    threads = [threading.Thread(target=use, args=(t,)) for t in tokens]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert sorted(statuses) == [200, 401]


# ---------------------------------------------------------------- resets and admins


def test_a_password_reset_by_email_leaves_totp_on(client, enrolled, clock):
    user, secret, _ = enrolled
    with client.application.app_context():
        token = recovery.issue_token(db.session.get(User, user["id"]), recovery.PASSWORD_RESET)
    reset = client.post("/auth/password/reset", json={"token": token, "new_password": NEW_PASSWORD})
    assert reset.status_code == 200
    assert_refused(post_login(client, user["username"], NEW_PASSWORD), 403, "mfa_required")


def make_admin(client, auth, username="root"):
    admin = auth.register(username=username, email=f"{username}@example.com")
    with client.application.app_context():
        db.session.get(User, admin["id"]).role = "admin"
        db.session.commit()
    return auth.login(username)


def test_admin_and_cli_reset_turn_totp_off_and_end_sessions(client, auth, clock):
    admin = make_admin(client, auth)
    for reset in ("api", "cli"):
        user, pair = auth.user()
        secret, _ = enrol(client, pair, clock)
        if reset == "api":
            answer = client.delete(f"/users/{user['id']}/mfa", headers=bearer(admin["access_token"]))
            assert answer.status_code == 204
        else:
            result = client.application.test_cli_runner().invoke(args=["users", "reset-mfa", user["email"]])
            assert result.exit_code == 0 and "off" in result.output
        assert_refused(me(client, pair["access_token"]), 401, "token_revoked")
        relogged = auth.login(user["username"])
        assert me(client, relogged["access_token"]).get_json()["mfa_enabled"] is False
    refused = client.delete(f"/users/{user['id']}/mfa", headers=bearer(relogged["access_token"]))
    assert_refused(refused, 403, "forbidden")
    result = client.application.test_cli_runner().invoke(args=["users", "reset-mfa", "nobody@example.com"])
    assert result.exit_code == 1


def test_require_mfa_for_admins(make_app, clock):
    client = make_app(REQUIRE_MFA_FOR_ADMINS="true").test_client()
    from tests.clients import AuthActions

    auth = AuthActions(client)
    pair = make_admin(client, auth)
    headers = bearer(pair["access_token"])
    assert_refused(client.get("/users", headers=headers), 403, "mfa_enrollment_required")
    assert me(client, pair["access_token"]).status_code == 200
    secret, _ = enrol(client, pair, clock)  # the enrolment endpoints stay open
    mfa_pair = login_with(client, "root", code(secret, clock)).get_json()
    assert client.get("/users", headers=bearer(mfa_pair["access_token"])).status_code == 200
    result = client.application.test_cli_runner().invoke(args=["users", "list"])
    assert result.exit_code == 0 and "root" in result.output


# ---------------------------------------------------------------- storage, documents, metrics


def test_the_database_holds_no_secret_or_code_in_the_clear(client, auth, clock):
    user, pair = auth.user()
    headers = bearer(pair["access_token"])
    pending = client.post("/auth/mfa/totp/setup", json={"password": PASSWORD}, headers=headers).get_json()["secret"]
    secret, codes = enrol(client, pair, clock)
    with client.application.app_context():
        dump = " ".join(
            str(row) for table in ("users", "recovery_codes", "sessions")
            for row in db.session.execute(text(f"SELECT * FROM {table}"))
        ).lower()
    for clear in (secret, pending, *codes, *(c.replace("-", "") for c in codes)):
        assert clear.lower() not in dump


def enrolled_under_old_key(make_app, clock):
    """Two Fernet keys, and ada enrolled under the first (OLD) of them:
    (old, new, client on OLD, auth, ada, ada's pair, ada's secret)."""
    from cryptography.fernet import Fernet
    from tests.clients import AuthActions

    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    client = make_app(MFA_ENCRYPTION_KEYS=old).test_client()
    auth = AuthActions(client)
    user, pair = auth.user()
    secret, _ = enrol(client, pair, clock)
    return old, new, client, auth, user, pair, secret


def test_secrets_survive_a_key_rotation(make_app, clock):
    old, new, _, _, user, _, secret = enrolled_under_old_key(make_app, clock)
    rotated = make_app(MFA_ENCRYPTION_KEYS=f"{new},{old}").test_client()
    rotated_login = login_with(rotated, user["username"], code(secret, clock))
    assert rotated_login.status_code == 200, rotated_login.get_json()
    # The old key removed too early: the secret cannot be read, and the
    # answer says the service cannot serve, not that the code was wrong.
    clock.advance()
    too_early = login_with(make_app(MFA_ENCRYPTION_KEYS=new).test_client(), user["username"], code(secret, clock))
    assert_refused(too_early, 503, "service_unavailable")


def test_rotate_keys_reencrypts_every_secret_so_the_old_key_can_go(make_app, clock):
    old, new, client, auth, user, _, secret = enrolled_under_old_key(make_app, clock)
    _, pending_pair = auth.user(username="bob", email="bob@example.com")
    setup = client.post("/auth/mfa/totp/setup", json={"password": PASSWORD}, headers=bearer(pending_pair["access_token"]))
    assert setup.status_code == 200, setup.get_json()

    rotated = make_app(MFA_ENCRYPTION_KEYS=f"{new},{old}")
    result = rotated.test_cli_runner().invoke(args=["mfa", "rotate-keys"])
    assert result.exit_code == 0, result.output
    assert "of 2 accounts" in result.output

    new_only = make_app(MFA_ENCRYPTION_KEYS=new)
    with new_only.app_context():
        stored = db.session.scalars(db.select(User).order_by(User.id)).all()
        assert totp.decrypt(stored[0].totp_secret) == secret
        assert totp.decrypt(stored[1].totp_pending_secret) == setup.get_json()["secret"]
    clock.advance()
    assert login_with(new_only.test_client(), user["username"], code(secret, clock)).status_code == 200


def test_rotate_keys_changes_nothing_when_a_secret_opens_under_no_key(make_app, clock):
    _, new, client, _, _, _, _ = enrolled_under_old_key(make_app, clock)
    with client.application.app_context():
        before = db.session.scalars(db.select(User.totp_secret)).one()
    result = make_app(MFA_ENCRYPTION_KEYS=new).test_cli_runner().invoke(args=["mfa", "rotate-keys"])
    assert result.exit_code == 1
    assert "MFA_ENCRYPTION_KEYS" in result.output and "nothing was changed" in result.output
    with client.application.app_context():
        assert db.session.scalars(db.select(User.totp_secret)).one() == before


def test_openapi_documents_the_endpoints_and_mfa_required(client):
    document = client.get("/openapi.json").get_json()
    paths = document["paths"]
    for path, method in [("/auth/mfa", "get"), ("/auth/mfa/totp/setup", "post"), ("/auth/mfa/totp/confirm", "post"),
                         ("/auth/mfa/totp", "delete"), ("/auth/mfa/recovery-codes", "post"),
                         ("/auth/login/mfa", "post"), ("/users/{user_id}/mfa", "delete")]:
        assert method in paths[path], path
    assert "403" in paths["/auth/login"]["post"]["responses"]
    error_body = document["components"]["schemas"]["ErrorBodyOut"]["properties"]
    assert {"mfa_token", "expires_in"} <= set(error_body)
    assert "mfa_required" in document["components"]["responses"]["Forbidden"]["description"]


def test_metrics_count_mfa_required_and_the_second_step(client, enrolled, clock):
    user, secret, _ = enrolled

    def count(outcome):
        return metrics.LOGINS.labels(outcome=outcome)._value.get()

    required, success, wrong = count("mfa_required"), count("success"), count("invalid_credentials")
    assert error_code(login_with(client, user["username"], "000000")) == "invalid_credentials"
    assert login_with(client, user["username"], code(secret, clock)).status_code == 200
    assert count("mfa_required") == required + 2
    assert count("success") == success + 1
    assert count("invalid_credentials") == wrong + 1


def test_the_second_step_sets_cookies_in_browser_mode(make_app, clock):
    from tests.clients import AuthActions

    client = make_app(REFRESH_TOKEN_COOKIE="true").test_client()
    user, pair = AuthActions(client).user()
    secret, _ = enrol(client, pair, clock)
    mfa_token = first_step(client, user["username"])
    done = second_step(client, mfa_token, code(secret, clock))
    assert done.status_code == 200, done.get_json()
    assert "refresh_token" not in done.get_json() and "device_token" not in done.get_json()
    cookies = " ".join(done.headers.getlist("Set-Cookie"))
    assert "refresh_token_cookie=" in cookies and "device_token=" in cookies
    assert claims_of(done.get_json()["access_token"])["amr"] == ["pwd", "otp", "mfa"]
