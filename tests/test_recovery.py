"""Password reset (services/recovery.py, API.md §3 /auth/password/*) end to end
over a real SMTP server: forgot, reset, every way a one-time token is refused,
no account enumeration, and the purge of dead sessions and tokens. Email
verification is in test_email_verification.py, sending mail in test_mail.py."""

import random
import statistics
import time
from datetime import timedelta

import pytest
from sqlalchemy import select, update

from authapi import mail
from authapi.extensions import db
from authapi.models import OneTimeToken, User, utcnow

from .conftest import PASSWORD, AuthActions, bearer, error_code, token_from

NEW_PASSWORD = "a brand new passphrase"


@pytest.fixture
def client(mail_app):
    return mail_app.test_client()


def forgot(client, email):
    return client.post("/auth/password/forgot", json={"email": email})


def reset_token(client, smtp_server, email) -> str:
    assert forgot(client, email).status_code == 202
    return token_from(smtp_server.wait_for(email, subject="Reset your password")[-1])


def verify_token(smtp_server, email) -> str:
    return token_from(smtp_server.wait_for(email, subject="Confirm your email address")[-1])


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
