"""Email verification (services/recovery.py, API.md §3 /auth/email/verify)
end to end over a real SMTP server: sent at registration, on request and on an
email change; each token works once; login can require it."""

import pytest

from .conftest import PASSWORD, AuthActions, bearer, error_code, token_from


@pytest.fixture
def client(mail_app):
    return mail_app.test_client()


def verify_token(smtp_server, email) -> str:
    return token_from(smtp_server.wait_for(email, subject="Confirm your email address")[-1])


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


def test_verification_on_request_is_sent_even_when_verified(client, auth, smtp_server):
    _, pair = auth.user(username="ada", email="ada@example.com")
    client.post("/auth/email/verify", json={"token": verify_token(smtp_server, "ada@example.com")})
    assert client.post("/auth/email/verify/request", headers=bearer(pair["access_token"])).status_code == 202
    smtp_server.wait_for("ada@example.com", subject="Confirm your email address", count=2)
