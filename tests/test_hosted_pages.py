"""The hosted pages for the email links (authapi/pages.py, API.md §12): the
links of real emails (aiosmtpd) opened with the Flask client, over HTTP on a
real gunicorn, and in headless Chromium, which also takes the screenshots
(kept in $ARTIFACTS_DIR, default /tmp/authapi-artifacts, never in the repo)."""

import os
import re
import uuid
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import requests

from authapi import create_app

from .conftest import PASSWORD, Inbox, Server, base_env, bearer, error_code, free_port, post_login, token_from

CSP = "default-src 'none'; style-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}
NEW_PASSWORD = "a brand new passphrase"
VERIFY_SUBJECT, RESET_SUBJECT = "Confirm your email address", "Reset your password"
BAD_TOKEN_MESSAGE = "The token is invalid, expired or already used."
HOSTILE = '"><script>alert(1)</script>'


@pytest.fixture
def client(mail_app):
    return mail_app.test_client()


def link_from(message) -> str:
    body = message.get_body(preferencelist=("plain",)).get_content()
    match = re.search(r"https?://\S+", body)
    assert match, body
    return match.group(0)


def local(link: str) -> str:
    """The link's path and query, for the Flask client."""
    parts = urlsplit(link)
    return f"{parts.path}?{parts.query}"


def html(response) -> str:
    assert response.mimetype == "text/html", response.data[:300]
    assert response.headers["Content-Security-Policy"] == CSP
    for name, value in SECURITY_HEADERS.items():
        assert response.headers[name] == value
    return response.get_data(as_text=True)


def page_error(response) -> str:
    """The error code a page shows (its data-error-code)."""
    match = re.search(r'data-error-code="([a-z_]+)"', html(response))
    return match and match.group(1)


def is_verified(client, username) -> bool:
    pair = post_login(client, username).get_json()
    return client.get("/users/me", headers=bearer(pair["access_token"])).get_json()["is_verified"]


# ---------------------------------------------------------------- over the Flask client


def test_verify_page_verifies_only_when_its_form_is_posted(client, auth, smtp_server):
    auth.register(username="ada", email="ada@example.com")
    link = local(link_from(smtp_server.wait_for("ada@example.com", subject=VERIFY_SUBJECT)[0]))
    assert link.startswith("/verify?token=")
    token = link.split("=", 1)[1]

    # Mail scanners fetch links: following it, again and again, changes nothing.
    for _ in range(3):
        page = html(client.get(link))
        assert f'<input type="hidden" name="token" value="{token}">' in page
        assert '<form method="post" action="/verify">' in page
    assert not is_verified(client, "ada")

    done = client.post("/verify", data={"token": token})
    assert done.status_code == 200 and "ada@example.com</strong> is confirmed" in html(done)
    assert is_verified(client, "ada")

    spent = client.post("/verify", data={"token": token})
    assert spent.status_code == 422 and page_error(spent) == "validation_error"
    assert BAD_TOKEN_MESSAGE in html(spent)


def test_reset_page_sets_the_password_with_the_apis_rules(client, auth, smtp_server):
    _, pair = auth.user(username="ada", email="ada@example.com")
    assert client.post("/auth/password/forgot", json={"email": "ada@example.com"}).status_code == 202
    link = local(link_from(smtp_server.wait_for("ada@example.com", subject=RESET_SUBJECT)[0]))
    assert link.startswith("/reset?token=")
    token = link.split("=", 1)[1]
    for _ in range(3):
        assert f'name="token" value="{token}"' in html(client.get(link))

    def post(new, confirm):
        return client.post("/reset", data={"token": token, "new_password": new, "new_password_confirm": confirm})

    # The API's own messages, and the form again with the link still good.
    for weak, message in [("short", "Must be at least 12 characters."),
                          ("qwertyqwerty", "This password is too common."),
                          ("ada-and-more-words", "Must not contain the username.")]:
        refused = post(weak, weak)
        assert refused.status_code == 422 and page_error(refused) == "validation_error"
        assert f"New password: {message}" in html(refused)
        assert f'name="token" value="{token}"' in html(refused)
    mismatched = post(NEW_PASSWORD, NEW_PASSWORD + "!")
    assert mismatched.status_code == 422
    assert "New password, again: Does not match the new password." in html(mismatched)
    assert post_login(client, "ada").status_code == 200  # nothing changed yet

    done = post(NEW_PASSWORD, NEW_PASSWORD)
    assert done.status_code == 200 and "Password changed" in html(done)
    assert client.get("/users/me", headers=bearer(pair["access_token"])).status_code == 401
    assert post_login(client, "ada").status_code == 401
    assert post_login(client, "ada", NEW_PASSWORD).status_code == 200

    spent = post("another fine passphrase", "another fine passphrase")
    assert spent.status_code == 422 and BAD_TOKEN_MESSAGE in html(spent)
    assert post_login(client, "ada", NEW_PASSWORD).status_code == 200


@pytest.mark.parametrize("path", ["/verify", "/reset"])
def test_echoed_values_are_escaped(client, path):
    page = html(client.get(path, query_string={"token": HOSTILE}))
    assert 'value="&#34;&gt;&lt;script&gt;alert(1)&lt;/script&gt;"' in page
    assert "<script" not in page

    refused = client.post(path, data={"token": HOSTILE, "<b>field</b>": "x"})
    assert refused.status_code == 422 and "&lt;b&gt;field&lt;/b&gt;: Unknown field." in html(refused)
    assert "<b>" not in html(refused)


@pytest.mark.parametrize("body, field, message", [
    ({}, "token", "Missing data for required field."),
    ({"token": "x" * 43, "is_verified": "true"}, "is_verified", "Unknown field."),
    ({"token": ["x" * 43, "y" * 43]}, "token", "Give this parameter once."),
    ({"token": "x" * 513}, "token", "Length must be between 1 and 512."),
])
def test_verify_form_is_validated_by_its_schema(client, body, field, message):
    response = client.post("/verify", data=body)
    assert response.status_code == 422 and page_error(response) == "validation_error"
    assert message in html(response)


def test_reset_form_refuses_unknown_fields_and_changes_nothing(client, auth, smtp_server):
    auth.register(username="ada", email="ada@example.com")
    client.post("/auth/password/forgot", json={"email": "ada@example.com"})
    token = token_from(smtp_server.wait_for("ada@example.com", subject=RESET_SUBJECT)[0])
    form = {"token": token, "new_password": NEW_PASSWORD, "new_password_confirm": NEW_PASSWORD}

    refused = client.post("/reset", data={**form, "role": "admin"})
    assert refused.status_code == 422 and "role: Unknown field." in html(refused)
    assert post_login(client, "ada").status_code == 200
    assert client.post("/reset", data=form).status_code == 200


def test_forms_take_form_bodies_only_and_the_api_json_only(client):
    as_json = client.post("/verify", json={"token": "x" * 43})
    assert as_json.status_code == 415 and page_error(as_json) == "unsupported_media_type"
    # The API's own rule is unchanged: /auth/* bodies are JSON.
    form_to_api = client.post("/auth/email/verify", data={"token": "x" * 43})
    assert form_to_api.status_code == 415 and error_code(form_to_api) == "unsupported_media_type"


@pytest.mark.parametrize("path", ["/verify", "/reset"])
def test_a_link_without_its_token_is_explained(client, path):
    response = client.get(path)
    assert response.status_code == 422 and "This link cannot be used" in html(response)
    # Parameters a mail client adds to links are ignored.
    assert client.get(path, query_string={"token": "t", "utm_source": "mail"}).status_code == 200


def test_pages_load_nothing_but_what_this_origin_serves(client):
    for path in ("/verify?token=t", "/reset?token=t"):
        page = html(client.get(path))
        urls = re.findall(r'(?:src|href|action)="([^"]*)"', page)
        assert "/static/pages.css" in urls
        for url in urls:
            assert url.startswith("/") and not url.startswith("//"), url
        stylesheet = client.get("/static/pages.css")
        assert stylesheet.status_code == 200 and stylesheet.mimetype == "text/css"


def test_pages_are_404_when_hosted_pages_is_off(make_app):
    client = make_app(HOSTED_PAGES="false").test_client()
    for method, path in [("GET", "/verify?token=t"), ("POST", "/verify"), ("GET", "/reset?token=t"), ("POST", "/reset")]:
        response = client.open(path, method=method, data={"token": "t"})
        assert response.status_code == 404 and error_code(response) == "not_found", (method, path)


def test_trusted_hosts_and_cors_let_the_pages_forms_through(make_app):
    client = make_app(TRUSTED_HOSTS="auth.example.com", CORS_ORIGINS="https://app.example.com").test_client()
    # A browser posting the page's form sends the page's own origin.
    headers = {"Host": "auth.example.com", "Origin": "http://auth.example.com"}
    response = client.post("/verify", data={"token": "x" * 43}, headers=headers)
    assert response.status_code == 422 and BAD_TOKEN_MESSAGE in html(response)
    forged = client.post("/verify", data={"token": "x" * 43}, headers={"Host": "evil.example.net"})
    assert forged.status_code == 400 and page_error(forged) == "bad_request"


@pytest.mark.parametrize("page, api, body", [
    ("/verify", "/auth/email/verify", {"token": "x" * 43}),
    ("/reset", "/auth/password/reset", {"token": "x" * 43, "new_password": NEW_PASSWORD}),
])
def test_a_page_and_its_api_endpoint_share_one_rate_limit(make_app, page, api, body):
    client = make_app(RATELIMIT_ENABLED="true", RATELIMIT_DEFAULT="3 per minute").test_client()
    form = {**body, "new_password_confirm": NEW_PASSWORD} if "new_password" in body else body
    assert client.post(api, json=body).status_code == 422
    assert client.post(page, data=form).headers["X-RateLimit-Remaining"] == "1"
    assert client.post(api, json=body).status_code == 422

    limited = client.post(page, data=form)
    assert limited.status_code == 429 and page_error(limited) == "rate_limited"
    assert 1 <= int(limited.headers["Retry-After"]) <= 60
    assert limited.headers["X-RateLimit-Limit"] == "3"
    assert "Too many requests" in html(limited)
    assert client.post(api, json=body).status_code == 429
    # Following the link is counted apart: the page still opens.
    assert client.get(page, query_string={"token": "t"}).status_code == 200
