"""Password reset and email verification end to end over a real SMTP server."""

import logging
import random
import re
import statistics
import time
from datetime import timedelta

import pytest
from sqlalchemy import select, update

from authapi import mail
from authapi.extensions import db
from authapi.models import OneTimeToken, User, utcnow

from .conftest import PASSWORD, AuthActions, bearer, free_port

NEW_PASSWORD = "a brand new passphrase"
TOKEN_IN_LINK = re.compile(r"token=([A-Za-z0-9_\-]+)")


@pytest.fixture
def mail_app(make_app, smtp_server):
    return make_app(
        MAIL_BACKEND="smtp",
        SMTP_HOST="127.0.0.1",
        SMTP_PORT=smtp_server.port,
        MAIL_FROM="auth@example.com",
        PASSWORD_RESET_URL="https://app.example.com/reset?token={token}",
        EMAIL_VERIFY_URL="https://app.example.com/verify?token={token}",
    )


@pytest.fixture
def client(mail_app):
    return mail_app.test_client()


@pytest.fixture
def auth(client):
    return AuthActions(client)


def error_code(response):
    return response.get_json()["error"]["code"]


def token_from(message) -> str:
    body = message.get_body(preferencelist=("plain",)).get_content()
    match = TOKEN_IN_LINK.search(body)
    assert match, body
    return match.group(1)


def forgot(client, email):
    return client.post("/auth/password/forgot", json={"email": email})


def reset_token(client, smtp_server, email) -> str:
    assert forgot(client, email).status_code == 202
    return token_from(smtp_server.wait_for(email, subject="Reset your password")[-1])


def verify_token(smtp_server, email) -> str:
    return token_from(smtp_server.wait_for(email, subject="Confirm your email address")[-1])


# ---------------------------------------------------------------- verification


def test_registration_sends_a_verification_email_that_verifies(client, auth, smtp_server):
    user = auth.register(username="ada", email="ada@example.com")
    message = smtp_server.wait_for("ada@example.com")[0]
    assert message["From"] == "auth@example.com"
    body = message.get_body(preferencelist=("plain",)).get_content()
    assert "https://app.example.com/verify?token=" in body
    response = client.post("/auth/email/verify", json={"token": token_from(message)})
    assert response.status_code == 200
    assert response.get_json()["id"] == user["id"]
    assert response.get_json()["is_verified"] is True


def test_verification_token_works_once(client, auth, smtp_server):
    auth.register(username="ada", email="ada@example.com")
    token = verify_token(smtp_server, "ada@example.com")
    assert client.post("/auth/email/verify", json={"token": token}).status_code == 200
    again = client.post("/auth/email/verify", json={"token": token})
    assert again.status_code == 422
    assert "token" in again.get_json()["error"]["details"]


def test_verify_request_sends_a_new_email_and_supersedes_the_old(client, auth, smtp_server):
    _, pair = auth.user(username="ada", email="ada@example.com")
    first = verify_token(smtp_server, "ada@example.com")
    response = client.post("/auth/email/verify/request", headers=bearer(pair["access_token"]))
    assert response.status_code == 202
    messages = smtp_server.wait_for("ada@example.com", count=2)
    second = token_from(messages[-1])
    assert client.post("/auth/email/verify", json={"token": first}).status_code == 422
    assert client.post("/auth/email/verify", json={"token": second}).status_code == 200


def test_verify_request_needs_a_token(client):
    response = client.post("/auth/email/verify/request")
    assert response.status_code == 401


def test_email_change_sends_verification_to_the_new_address(client, auth, smtp_server):
    _, pair = auth.user(username="ada", email="ada@example.com")
    old_token = verify_token(smtp_server, "ada@example.com")
    response = client.patch(
        "/users/me", json={"email": "countess@example.com", "current_password": PASSWORD},
        headers=bearer(pair["access_token"]),
    )
    assert response.status_code == 200 and response.get_json()["is_verified"] is False
    new_token = verify_token(smtp_server, "countess@example.com")
    # A token sent to the old address cannot verify the new one.
    assert client.post("/auth/email/verify", json={"token": old_token}).status_code == 422
    verified = client.post("/auth/email/verify", json={"token": new_token})
    assert verified.status_code == 200
    assert verified.get_json()["email"] == "countess@example.com"


def test_unverified_login_is_refused_when_verification_is_required(make_app, smtp_server):
    app = make_app(REQUIRE_VERIFIED_EMAIL="true", MAIL_BACKEND="smtp",
                   SMTP_HOST="127.0.0.1", SMTP_PORT=smtp_server.port)
    client = app.test_client()
    AuthActions(client).register(username="ada", email="ada@example.com")
    wrong = client.post("/auth/login", json={"username": "ada", "password": "wrong password!!"})
    assert wrong.status_code == 401 and error_code(wrong) == "invalid_credentials"
    refused = client.post("/auth/login", json={"username": "ada", "password": PASSWORD})
    assert refused.status_code == 403 and error_code(refused) == "email_not_verified"
    client.post("/auth/email/verify", json={"token": verify_token(smtp_server, "ada@example.com")})
    assert client.post("/auth/login", json={"username": "ada", "password": PASSWORD}).status_code == 200


# ---------------------------------------------------------------- reset


def test_password_reset_end_to_end(client, auth, smtp_server):
    _, pair = auth.user(username="ada", email="ada@example.com")
    token = reset_token(client, smtp_server, "ada@example.com")
    response = client.post("/auth/password/reset", json={"token": token, "new_password": NEW_PASSWORD})
    assert response.status_code == 200
    # Every session ended at once.
    me = client.get("/users/me", headers=bearer(pair["access_token"]))
    assert me.status_code == 401 and error_code(me) == "token_revoked"
    assert client.post("/auth/refresh", headers=bearer(pair["refresh_token"])).status_code == 401
    assert client.post("/auth/login", json={"username": "ada", "password": PASSWORD}).status_code == 401
    auth.login("ada", NEW_PASSWORD)


def test_reset_link_uses_the_configured_url_not_the_host_header(client, auth, smtp_server):
    auth.register(username="ada", email="ada@example.com")
    client.post("/auth/password/forgot", json={"email": "ada@example.com"},
                headers={"Host": "evil.example.net"})
    message = smtp_server.wait_for("ada@example.com", subject="Reset your password")[0]
    body = message.get_body(preferencelist=("plain",)).get_content()
    assert "https://app.example.com/reset?token=" in body
    assert "evil" not in body


def _spent(client, smtp_server, token):
    assert client.post("/auth/password/reset", json={"token": token, "new_password": NEW_PASSWORD}).status_code == 200
    return token


def _expired(client, smtp_server, token):
    with client.application.app_context():
        db.session.execute(update(OneTimeToken).values(expires_at=utcnow() - timedelta(seconds=1)))
        db.session.commit()
    return token


def _superseded(client, smtp_server, token):
    forgot(client, "ada@example.com")
    smtp_server.wait_for("ada@example.com", subject="Reset your password", count=2)
    return token


def _wrong_purpose(client, smtp_server, token):
    return verify_token(smtp_server, "ada@example.com")


def _unknown(client, smtp_server, token):
    return "A" * 43


def _malformed(client, smtp_server, token):
    return "not a token at all \u2603"


def _password_changed(client, smtp_server, token):
    pair = AuthActions(client).login("ada")
    response = client.post(
        "/auth/password/change",
        json={"current_password": PASSWORD, "new_password": "yet another passphrase"},
        headers=bearer(pair["access_token"]),
    )
    assert response.status_code == 200
    return token


@pytest.mark.parametrize(
    "spoil", [_spent, _expired, _superseded, _wrong_purpose, _unknown, _malformed, _password_changed]
)
def test_bad_reset_tokens_are_refused_naming_token(client, auth, smtp_server, spoil):
    auth.register(username="ada", email="ada@example.com")
    token = spoil(client, smtp_server, reset_token(client, smtp_server, "ada@example.com"))
    with client.application.app_context():
        before = db.session.scalar(select(User.password_hash).where(User.username == "ada"))
    response = client.post("/auth/password/reset", json={"token": token, "new_password": "never gonna be set!"})
    assert response.status_code == 422
    assert error_code(response) == "validation_error"
    assert "token" in response.get_json()["error"]["details"]
    with client.application.app_context():
        assert db.session.scalar(select(User.password_hash).where(User.username == "ada")) == before


@pytest.mark.parametrize("spoil", [_expired, _unknown, _malformed])
def test_bad_verification_tokens_are_refused_naming_token(client, auth, smtp_server, spoil):
    auth.register(username="ada", email="ada@example.com")
    token = spoil(client, smtp_server, verify_token(smtp_server, "ada@example.com"))
    response = client.post("/auth/email/verify", json={"token": token})
    assert response.status_code == 422
    assert "token" in response.get_json()["error"]["details"]


def test_reset_token_cannot_verify_an_email(client, auth, smtp_server):
    auth.register(username="ada", email="ada@example.com")
    token = reset_token(client, smtp_server, "ada@example.com")
    response = client.post("/auth/email/verify", json={"token": token})
    assert response.status_code == 422
    assert "token" in response.get_json()["error"]["details"]
    # ... and it still works for what it is for.
    assert client.post("/auth/password/reset", json={"token": token, "new_password": NEW_PASSWORD}).status_code == 200


@pytest.mark.parametrize("body, field", [({}, "token"), ({"token": 5, "new_password": NEW_PASSWORD}, "token"),
                                        ({"token": "abc"}, "new_password")])
def test_reset_validation(client, body, field):
    response = client.post("/auth/password/reset", json=body)
    assert response.status_code == 422
    assert field in response.get_json()["error"]["details"]


def test_weak_new_password_does_not_spend_the_token(client, auth, smtp_server):
    auth.register(username="ada", email="ada@example.com")
    token = reset_token(client, smtp_server, "ada@example.com")
    for weak in ("short", "password", "ada is my name!!", "ada@example.com 123"):
        response = client.post("/auth/password/reset", json={"token": token, "new_password": weak})
        assert response.status_code == 422
        assert "new_password" in response.get_json()["error"]["details"]
    assert client.post("/auth/password/reset", json={"token": token, "new_password": NEW_PASSWORD}).status_code == 200


def test_tokens_are_stored_only_as_hashes(client, auth, smtp_server):
    auth.register(username="ada", email="ada@example.com")
    token = reset_token(client, smtp_server, "ada@example.com")
    with client.application.app_context():
        stored = db.session.scalars(select(OneTimeToken.token_hash)).all()
    assert stored and token not in stored
    assert all(len(value) == 64 for value in stored)


# ---------------------------------------------------------------- forgot: no enumeration


def test_forgot_for_an_unknown_email_sends_nothing(client, auth, smtp_server):
    response = forgot(client, "nobody@example.com")
    assert response.status_code == 202
    mail.wait_for_background_jobs()
    assert smtp_server.messages == []


def _comparable(response):
    headers = {k: v for k, v in response.headers.items() if k not in {"X-Request-ID", "Date"}}
    return response.status_code, response.get_data(), headers


def test_forgot_answers_alike_for_known_and_unknown_emails(client, auth, smtp_server):
    auth.register(username="ada", email="ada@example.com")
    known = forgot(client, "ada@example.com")
    unknown = forgot(client, "nobody@example.com")
    assert known.status_code == 202
    assert _comparable(known) == _comparable(unknown)


def test_forgot_takes_the_same_time_for_known_and_unknown_emails(make_app):
    # Delivery happens after the answer, so the backend does not matter here;
    # the console backend leaves no SMTP server thread running in this process
    # to slow whichever request comes next.
    client = make_app(MAIL_BACKEND="console", LOG_LEVEL="WARNING").test_client()
    AuthActions(client).register(username="ada", email="ada@example.com")
    timings = {"ada@example.com": [], "nobody@example.com": []}
    order = list(timings) * 20
    random.Random(7).shuffle(order)  # no periodic effect favours one side
    for email in order:
        start = time.perf_counter()
        assert forgot(client, email).status_code == 202
        timings[email].append(time.perf_counter() - start)
        mail.wait_for_background_jobs()  # the delivery is not the answer's time
    known, unknown = (statistics.median(v) for v in timings.values())
    assert abs(known - unknown) <= 0.25 * max(known, unknown), (known, unknown)


def test_forgot_does_not_wait_for_a_slow_smtp_server(client, auth, smtp_server):
    auth.register(username="ada", email="ada@example.com")
    smtp_server.wait_for("ada@example.com")
    smtp_server.delay = 2.0
    start = time.perf_counter()
    assert forgot(client, "ada@example.com").status_code == 202
    assert time.perf_counter() - start < 1.0
    smtp_server.wait_for("ada@example.com", subject="Reset your password", timeout=10)


def test_smtp_down_still_answers_202_and_keeps_the_token(make_app, caplog):
    app = make_app(MAIL_BACKEND="smtp", SMTP_HOST="127.0.0.1", SMTP_PORT=free_port(), SMTP_TIMEOUT=2)
    client = app.test_client()
    AuthActions(client).register(username="ada", email="ada@example.com")
    with caplog.at_level(logging.ERROR, logger="authapi.mail"):
        response = forgot(client, "ada@example.com")
        assert response.status_code == 202
        mail.wait_for_background_jobs()
    assert any("email delivery failed" in r.getMessage() for r in caplog.records)
    with app.app_context():
        purposes = db.session.scalars(select(OneTimeToken.purpose)).all()
    assert "password_reset" in purposes


def test_console_backend_writes_the_email_to_the_log(make_app, caplog):
    client = make_app(MAIL_BACKEND="console").test_client()
    with caplog.at_level(logging.INFO, logger="authapi.mail"):
        AuthActions(client).register(username="ada", email="ada@example.com")
        mail.wait_for_background_jobs()
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "Confirm your email address" in logged and "verify?token=" in logged


# ---------------------------------------------------------------- purge


def test_sessions_purge_removes_expired_sessions_and_dead_tokens(mail_app, client, auth, smtp_server):
    from authapi.models import AuthSession

    _, pair = auth.user(username="ada", email="ada@example.com")
    auth.login("ada")
    smtp_server.wait_for("ada@example.com")
    with mail_app.app_context():
        first = db.session.scalars(select(AuthSession)).first()
        # Expired long enough ago that its last access token has too.
        first.expires_at = utcnow() - timedelta(seconds=mail_app.config["ACCESS_TOKEN_TTL"] + 1)
        db.session.execute(update(OneTimeToken).values(used_at=utcnow()))
        db.session.commit()
    result = mail_app.test_cli_runner().invoke(args=["sessions", "purge"])
    assert result.exit_code == 0, result.output
    assert "Purged 1 expired sessions and 1 one-time tokens." in result.output
    with mail_app.app_context():
        assert db.session.query(AuthSession).count() == 1
        assert db.session.query(OneTimeToken).count() == 0


def test_email_change_voids_reset_links_sent_to_the_old_address(client, auth, smtp_server):
    _, pair = auth.user(username="ada", email="ada@example.com")
    token = reset_token(client, smtp_server, "ada@example.com")
    response = client.patch(
        "/users/me", json={"email": "countess@example.com", "current_password": PASSWORD},
        headers=bearer(pair["access_token"]),
    )
    assert response.status_code == 200
    refused = client.post("/auth/password/reset", json={"token": token, "new_password": NEW_PASSWORD})
    assert refused.status_code == 422 and "token" in refused.get_json()["error"]["details"]
    auth.login("countess@example.com")


def test_verification_on_request_is_sent_even_when_verified(client, auth, smtp_server):
    _, pair = auth.user(username="ada", email="ada@example.com")
    client.post("/auth/email/verify", json={"token": verify_token(smtp_server, "ada@example.com")})
    assert client.post("/auth/email/verify/request", headers=bearer(pair["access_token"])).status_code == 202
    smtp_server.wait_for("ada@example.com", subject="Confirm your email address", count=2)


def test_reset_email_is_plain_7bit_with_the_whole_link(client, auth, smtp_server):
    auth.register(username="ada", email="ada@example.com")
    forgot(client, "ada@example.com")
    message = smtp_server.wait_for("ada@example.com", subject="Reset your password")[0]
    assert message["Content-Transfer-Encoding"] == "7bit"
    # A client reading the raw message finds the link unbroken.
    assert re.search(r"https://app\.example\.com/reset\?token=[A-Za-z0-9_\-]{43}\n", message.as_string())
