"""The resend cap (API.md §4, EMAIL_RESEND_SECONDS): no address gets more than
one email of a purpose per window, whichever endpoint asks, and the forgot
endpoint still says nothing about which accounts exist."""

import logging
import threading
import time

import pytest
import redis
from sqlalchemy import update

from authapi import mail
from authapi.extensions import db, store
from authapi.models import User

from .conftest import PASSWORD, AuthActions, bearer

VERIFY = "Confirm your email address"
RESET = "Reset your password"


@pytest.fixture
def mail_app(make_app, smtp_server):
    def build(**extra):
        return make_app(
            MAIL_BACKEND="smtp", SMTP_HOST="127.0.0.1", SMTP_PORT=smtp_server.port, **extra
        )

    return build


@pytest.fixture
def app(mail_app):
    return mail_app()  # the default window: 60 s


@pytest.fixture
def client(app):
    return app.test_client()


def sent(smtp_server, to, subject) -> int:
    """How many emails of ``subject`` went to ``to``, once every queued job ran."""
    mail.wait_for_background_jobs()
    time.sleep(0.1)  # delivered, and now handled by the server
    return sum(1 for m in smtp_server.messages if m["To"] == to and m["Subject"] == subject)


def forgot(client, address):
    return client.post("/auth/password/forgot", json={"email": address})


def verify_request(client, pair):
    return client.post("/auth/email/verify/request", headers=bearer(pair["access_token"]))


# ---------------------------------------------------------------- verification on request


def test_verify_request_within_the_window_is_429_with_retry_after(client, auth, smtp_server):
    # Registration has just mailed ada@: asking again is too soon.
    _, pair = auth.user(username="ada", email="ada@example.com")
    response = verify_request(client, pair)
    assert response.status_code == 429
    assert response.get_json()["error"]["code"] == "rate_limited"
    assert 55 <= int(response.headers["Retry-After"]) <= 60
    assert sent(smtp_server, "ada@example.com", VERIFY) == 1


def test_verify_request_after_the_window_sends_again(mail_app, smtp_server):
    client = mail_app(EMAIL_RESEND_SECONDS=1).test_client()
    _, pair = AuthActions(client).user(username="ada", email="ada@example.com")
    assert verify_request(client, pair).status_code == 429
    time.sleep(1.1)
    assert verify_request(client, pair).status_code == 202
    assert sent(smtp_server, "ada@example.com", VERIFY) == 2


def test_the_cap_also_holds_for_a_verified_address(app, client, auth, smtp_server):
    _, pair = auth.user(username="ada", email="ada@example.com")
    with app.app_context():
        db.session.execute(update(User).values(is_verified=True))
        db.session.commit()
    assert verify_request(client, pair).status_code == 429
    assert sent(smtp_server, "ada@example.com", VERIFY) == 1


def test_zero_turns_the_cap_off(mail_app, smtp_server):
    client = mail_app(EMAIL_RESEND_SECONDS=0).test_client()
    _, pair = AuthActions(client).user(username="ada", email="ada@example.com")
    assert [verify_request(client, pair).status_code for _ in range(2)] == [202, 202]
    assert sent(smtp_server, "ada@example.com", VERIFY) == 3


# ---------------------------------------------------------------- forgot


def test_forgot_within_the_window_answers_the_same_202_and_sends_nothing(client, auth, smtp_server):
    auth.register(username="ada", email="ada@example.com")
    first, second = forgot(client, "ada@example.com"), forgot(client, "ADA@example.com")
    assert first.status_code == second.status_code == 202
    assert first.get_json() == second.get_json()
    assert "Retry-After" not in second.headers
    assert sent(smtp_server, "ada@example.com", RESET) == 1


def test_forgot_reserves_an_address_that_has_no_account_yet(client, auth, smtp_server):
    # Reserved whether or not the account exists: the store holds nothing
    # that depends on it, so the answer and its timing cannot either.
    assert forgot(client, "ada@example.com").status_code == 202
    mail.wait_for_background_jobs()  # its look-up finds no account
    auth.register(username="ada", email="ada@example.com")
    assert forgot(client, "ada@example.com").status_code == 202
    assert sent(smtp_server, "ada@example.com", RESET) == 0


def test_concurrent_forgot_requests_send_one_email(app, auth, smtp_server):
    auth.register(username="ada", email="ada@example.com")
    start = threading.Barrier(8)
    statuses = []

    def ask():
        with app.test_client() as own_client:
            start.wait()
            statuses.append(forgot(own_client, "ada@example.com").status_code)

    threads = [threading.Thread(target=ask) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert statuses == [202] * 8
    assert sent(smtp_server, "ada@example.com", RESET) == 1


def test_purposes_are_capped_apart(client, auth, smtp_server):
    auth.register(username="ada", email="ada@example.com")  # a verification email
    assert forgot(client, "ada@example.com").status_code == 202
    assert sent(smtp_server, "ada@example.com", RESET) == 1


# ---------------------------------------------------------------- account changes


def change_email(client, pair, address):
    response = client.patch(
        "/users/me", json={"email": address, "current_password": PASSWORD},
        headers=bearer(pair["access_token"]),
    )
    assert response.status_code == 200, response.get_json()
    # The email job sends only to the account's current address: let it run
    # before the next change moves the address on.
    mail.wait_for_background_jobs()


def test_email_changes_mail_an_address_once_per_window(client, auth, smtp_server):
    _, pair = auth.user(username="ada", email="ada@example.com")
    for address in ("b@example.com", "c@example.com", "b@example.com", "c@example.com"):
        change_email(client, pair, address)
    assert sent(smtp_server, "b@example.com", VERIFY) == 1
    assert sent(smtp_server, "c@example.com", VERIFY) == 1


def test_registration_is_capped_like_any_other_sender(client, auth, smtp_server):
    # ada@ got a verification email; ada moves on and someone registers ada@.
    _, pair = auth.user(username="ada", email="ada@example.com")
    change_email(client, pair, "countess@example.com")
    auth.register(username="bob", email="ada@example.com")
    assert sent(smtp_server, "ada@example.com", VERIFY) == 1


def test_admin_email_changes_are_capped(app, client, auth, smtp_server):
    auth.register(username="root", email="root@example.com")
    with app.app_context():
        db.session.execute(update(User).where(User.username == "root").values(role="admin"))
        db.session.commit()
    headers = bearer(auth.login("root")["access_token"])
    user_id = auth.register(username="ada", email="ada@example.com")["id"]
    for address in ("b@example.com", "c@example.com", "b@example.com"):
        response = client.patch(f"/users/{user_id}", json={"email": address}, headers=headers)
        assert response.status_code == 200, response.get_json()
        mail.wait_for_background_jobs()  # as in change_email
    assert sent(smtp_server, "b@example.com", VERIFY) == 1


# ---------------------------------------------------------------- keys and the store


def test_keys_hash_the_lower_cased_address_under_a_prefix_per_purpose(app):
    with app.app_context():
        verify = mail.resend_key("Ada@Example.COM", "email_verify")
        assert verify == mail.resend_key("ada@example.com", "email_verify")
        assert verify != mail.resend_key("ada@example.com", "password_reset")
        assert "ada" not in verify.lower() and verify.startswith("authapi:email-sent:email_verify:")


def test_store_down_skips_a_verification_email_but_never_the_registration(
    app, client, smtp_server, monkeypatch, caplog
):
    def unreachable(*args):
        raise redis.ConnectionError("store down")

    monkeypatch.setattr(store, "reserve", unreachable)
    with caplog.at_level(logging.WARNING):
        AuthActions(client).register(username="ada", email="ada@example.com")
    assert "verification email skipped: store unavailable" in caplog.text
    assert sent(smtp_server, "ada@example.com", VERIFY) == 0
    # Forgot has not answered yet: without the cap it sends nothing (503).
    response = forgot(client, "ada@example.com")
    assert response.status_code == 503
    assert response.get_json()["error"]["code"] == "service_unavailable"
    assert sent(smtp_server, "ada@example.com", RESET) == 0
