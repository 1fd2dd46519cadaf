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
from authapi.extensions import db
from authapi.models import User
from authapi.passwords import hash_password
from authapi.services import recovery

from .conftest import PASSWORD, Server, base_env, bearer, error_code, free_port, post_login, token_from
from .servers import running_inbox

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


def test_redis_down_is_a_page_and_the_reset_changes_nothing(make_app, database_url):
    make_app()  # a fresh database
    app = create_app("testing", environ=base_env(database_url, f"redis://127.0.0.1:{free_port()}/0"))
    with app.app_context():
        user = User(email="ada@example.com", username="ada", password_hash=hash_password(PASSWORD))
        db.session.add(user)
        db.session.commit()
        token = recovery.issue_token(user, recovery.PASSWORD_RESET)
    client = app.test_client()

    # Its sessions cannot be revoked without Redis: refused, fail closed.
    response = client.post("/reset", data={"token": token, "new_password": NEW_PASSWORD,
                                           "new_password_confirm": NEW_PASSWORD})
    assert response.status_code == 503 and page_error(response) == "service_unavailable"
    assert "A backing service is unavailable" in html(response)
    with app.app_context():
        assert db.session.get(User, user.id).password_hash == user.password_hash
        db.engine.dispose()


# ---------------------------------------------------------------- over HTTP, on a real gunicorn


@pytest.fixture(scope="module")
def inbox():
    with running_inbox() as inbox:
        yield inbox


@pytest.fixture(scope="module")
def live(postgres_url, redis_url, migrations, inbox, tmp_path_factory):
    """A gunicorn on PostgreSQL mailing ``inbox`` links to its own pages, as
    `make run` links to localhost:8000."""
    env = base_env(postgres_url, redis_url, MAIL_BACKEND="smtp", SMTP_HOST="127.0.0.1",
                   SMTP_PORT=inbox.port, MAIL_FROM="auth@example.com", EMAIL_RESEND_SECONDS=0)
    migrations.ensure(postgres_url, lambda: create_app("testing", environ=env))
    server = Server(env, tmp_path_factory.mktemp("gunicorn") / "gunicorn.log", workers=2)
    server.env.update(EMAIL_VERIFY_URL=server.url + "/verify?token={token}",
                      PASSWORD_RESET_URL=server.url + "/reset?token={token}")
    yield server.start()
    server.stop()


class LiveUser:
    """A new user of the live server, and the links mailed to it."""

    def __init__(self, server, inbox):
        self.url, self.inbox = server.url, inbox
        self.username = "u" + uuid.uuid4().hex[:12]
        self.email = self.username + "@example.com"
        response = requests.post(self.url + "/auth/register", timeout=10, json={
            "email": self.email, "username": self.username, "password": PASSWORD})
        assert response.status_code == 201, response.text

    def link(self, subject) -> str:
        link = link_from(self.inbox.wait_for(self.email, subject=subject)[-1])
        assert link.startswith(self.url + ("/verify?token=" if subject == VERIFY_SUBJECT else "/reset?token="))
        return link

    def reset_link(self) -> str:
        response = requests.post(self.url + "/auth/password/forgot", json={"email": self.email}, timeout=10)
        assert response.status_code == 202
        return self.link(RESET_SUBJECT)

    def login(self, password=PASSWORD):
        return requests.post(self.url + "/auth/login", json={"username": self.username, "password": password},
                             timeout=10)

    def is_verified(self) -> bool:
        access = self.login().json()["access_token"]
        return requests.get(self.url + "/users/me", headers=bearer(access), timeout=10).json()["is_verified"]


def live_page(response, status=200) -> str:
    assert response.status_code == status, response.text[:500]
    assert response.headers["Content-Type"] == "text/html; charset=utf-8"
    assert response.headers["Content-Security-Policy"] == CSP
    return response.text


def test_verify_page_over_http(live, inbox):
    user = LiveUser(live, inbox)
    link = user.link(VERIFY_SUBJECT)
    for _ in range(3):
        assert 'action="/verify"' in live_page(requests.get(link, timeout=10))
    assert not user.is_verified()

    token = link.split("=", 1)[1]
    done = requests.post(live.url + "/verify", data={"token": token}, timeout=10)
    assert user.email in live_page(done)
    assert user.is_verified()
    assert BAD_TOKEN_MESSAGE in live_page(requests.post(live.url + "/verify", data={"token": token}, timeout=10), 422)
    # Logs name the path, never the query or the form that carry the token.
    assert "/verify" in live.log_path.read_text() and token not in live.log_path.read_text()


def test_reset_page_over_http(live, inbox):
    user = LiveUser(live, inbox)
    link = user.reset_link()
    for _ in range(3):
        live_page(requests.get(link, timeout=10))
    token = link.split("=", 1)[1]

    def post(new, confirm, status):
        return live_page(requests.post(live.url + "/reset", timeout=10, data={
            "token": token, "new_password": new, "new_password_confirm": confirm}), status)

    assert "New password: Must not contain the username." in post(user.username + "-1234", user.username + "-1234", 422)
    assert "Does not match the new password." in post(NEW_PASSWORD, NEW_PASSWORD.upper(), 422)
    assert user.login().status_code == 200
    assert "Password changed" in post(NEW_PASSWORD, NEW_PASSWORD, 200)
    assert user.login().status_code == 401
    assert user.login(NEW_PASSWORD).status_code == 200
    assert BAD_TOKEN_MESSAGE in post("yet another passphrase", "yet another passphrase", 422)


# ---------------------------------------------------------------- in headless Chromium


@pytest.fixture(scope="module")
def artifacts() -> Path:
    directory = Path(os.environ.get("ARTIFACTS_DIR", "/tmp/authapi-artifacts")) / "hosted-pages"
    directory.mkdir(parents=True, exist_ok=True)
    return directory


@pytest.fixture
def browser_page():
    """A Chromium page, and the console messages it reported."""
    from .browser import chromium_page

    with chromium_page() as page:
        page.console = []
        page.on("console", lambda message: page.console.append(message.text))
        yield page


def csp_violations(page) -> list[str]:
    return [text for text in page.console if "Content Security Policy" in text]


def assert_styled(page):
    # pages.css loaded and applied: the card is its 26rem wide.
    assert page.eval_on_selector("main", "e => getComputedStyle(e).maxWidth") == "416px"
    assert csp_violations(page) == []


def test_verify_page_in_chromium(live, inbox, browser_page, artifacts):
    page, user = browser_page, LiveUser(live, inbox)
    link = user.link(VERIFY_SUBJECT)

    page.goto(link)
    assert_styled(page)
    page.screenshot(path=artifacts / "verify.png")
    page.click("text=Confirm my address")
    assert page.inner_text("h1") == "Address confirmed" and user.email in page.inner_text("main")
    assert_styled(page)
    page.screenshot(path=artifacts / "verify-success.png")
    assert user.is_verified()

    page.goto(link)
    page.click("text=Confirm my address")
    assert page.inner_text("h1") == "This link cannot be used" and BAD_TOKEN_MESSAGE in page.inner_text("main")
    assert_styled(page)
    page.screenshot(path=artifacts / "verify-error.png")


def test_reset_page_in_chromium(live, inbox, browser_page, artifacts):
    page, user = browser_page, LiveUser(live, inbox)

    page.goto(user.reset_link())
    assert_styled(page)
    page.screenshot(path=artifacts / "reset.png")

    def submit(new, confirm):
        page.fill("#new_password", new)
        page.fill("#new_password_confirm", confirm)
        page.click("text=Set the new password")

    submit("qwertyqwerty", "qwertyqwerty")
    assert "New password: This password is too common." in page.inner_text(".problems")
    assert_styled(page)
    page.screenshot(path=artifacts / "reset-error.png")
    submit(NEW_PASSWORD, NEW_PASSWORD + "?")
    assert "Does not match the new password." in page.inner_text(".problems")
    page.screenshot(path=artifacts / "reset-mismatch.png")

    submit(NEW_PASSWORD, NEW_PASSWORD)
    assert page.inner_text("h1") == "Password changed"
    assert_styled(page)
    page.screenshot(path=artifacts / "reset-success.png")
    assert user.login(NEW_PASSWORD).status_code == 200 and user.login().status_code == 401


def test_the_browser_reports_a_style_the_policy_refuses(live, browser_page):
    # The check above can fail: the same page with an inline style added is
    # reported, and the style is not applied.
    page = browser_page

    def add_inline_style(route):
        response = route.fetch()
        route.fulfill(response=response,
                      body=response.text().replace("</head>", "<style>main{max-width:1px}</style></head>"))

    page.route("**/verify?*", add_inline_style)
    page.goto(live.url + "/verify?token=t")
    page.wait_for_function("document.readyState === 'complete'")
    assert any("style-src 'self'" in text for text in csp_violations(page)), page.console
    assert page.eval_on_selector("main", "e => getComputedStyle(e).maxWidth") == "416px"
