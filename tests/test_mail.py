"""Sending email (authapi.mail): in the background, so a slow or absent SMTP
server delays no answer; the console backend for development; plain 7-bit
messages whose link a client reads unbroken."""

import logging
import re
import time

import pytest
from sqlalchemy import select

from authapi import mail
from authapi.extensions import db
from authapi.models import OneTimeToken

from .conftest import AuthActions, free_port


@pytest.fixture
def client(mail_app):
    return mail_app.test_client()


def forgot(client, email):
    return client.post("/auth/password/forgot", json={"email": email})


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


def test_reset_email_is_plain_7bit_with_the_whole_link(client, auth, smtp_server):
    auth.register(username="ada", email="ada@example.com")
    forgot(client, "ada@example.com")
    message = smtp_server.wait_for("ada@example.com", subject="Reset your password")[0]
    assert message["Content-Transfer-Encoding"] == "7bit"
    # A client reading the raw message finds the link unbroken.
    assert re.search(r"https://app\.example\.com/reset\?token=[A-Za-z0-9_\-]{43}\n", message.as_string())
