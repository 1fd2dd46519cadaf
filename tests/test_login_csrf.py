"""Login CSRF in cookie mode (API.md §3, finding 10 of issue 13): a page of a
foreign origin cannot log a browser into the attacker's account, and a refresh
that carries its token in the Authorization header or the JSON body is judged
by that token alone, whatever cookies come with it. On PostgreSQL; the last
test drives a real browser through a real gunicorn."""

import json

import pytest
import requests
import sqlalchemy as sa

from authapi.extensions import db

from .conftest import PASSWORD, bearer
# The real gunicorn in cookie mode with CORS_ORIGINS=http://127.0.0.1:PAGE_PORT.
from .browser import PageServer, run_in_chromium
from .test_cookies import PAGE_PORT, api, server  # noqa: F401

ALLOWED = "https://app.example.com"
FOREIGN = "https://evil.example"
LOGIN = {"username": "ada", "password": PASSWORD}
FORM_LOGIN = {**LOGIN, "grant_type": "password"}


@pytest.fixture(scope="session")
def database_url(postgres_url):
    return postgres_url


@pytest.fixture
def browser_app(make_app):
    app = make_app(REFRESH_TOKEN_COOKIE="true", CORS_ORIGINS=ALLOWED)
    response = app.test_client().post(
        "/auth/register", json={"email": "ada@example.com", "username": "ada", "password": PASSWORD}
    )
    assert response.status_code == 201
    return app


@pytest.fixture
def client(browser_app):
    return browser_app.test_client()


def session_count(app) -> int:
    with app.app_context():
        return db.session.scalar(sa.text("SELECT count(*) FROM sessions"))


def assert_forbidden(response):
    assert response.status_code == 403, response.get_json()
    assert response.get_json()["error"]["code"] == "forbidden"
    assert "Set-Cookie" not in response.headers


# ---------------------------------------------------------------- Origin


@pytest.mark.parametrize(
    "origin",
    [
        FOREIGN,
        "null",  # sandboxed frames, some redirects
        "http://localhost:8080",  # another port of the API's host
        "https://localhost",  # another scheme
        ALLOWED + ".evil.example",
        ALLOWED + "/",  # an origin has no path
        "http://user@localhost",
        "http://localhost:99999",
        "http://[::1",
        "\xff",
        "",
        "x" * 5000,
    ],
)
def test_a_login_from_a_foreign_origin_is_refused_and_starts_nothing(browser_app, client, origin):
    response = client.post("/auth/login", json=LOGIN, headers={"Origin": origin})

    assert_forbidden(response)
    assert session_count(browser_app) == 0


@pytest.mark.parametrize("origin", [ALLOWED, "HTTPS://APP.EXAMPLE.COM:443", "http://localhost", "http://LOCALHOST:80"])
def test_a_login_from_the_api_or_an_allowed_origin_sets_the_cookies(client, origin):
    response = client.post("/auth/login", json=LOGIN, headers={"Origin": origin})

    assert response.status_code == 200, response.get_json()
    assert "refresh_token_cookie" in response.headers.get("Set-Cookie", "")


def test_a_form_login_from_a_foreign_origin_is_refused(browser_app, client):
    response = client.post("/auth/login", data=FORM_LOGIN, headers={"Origin": FOREIGN})

    assert_forbidden(response)
    assert session_count(browser_app) == 0


def test_a_refused_login_does_not_count_against_the_lockout(make_app):
    app = make_app(REFRESH_TOKEN_COOKIE="true", LOCKOUT_THRESHOLD="2")
    client = app.test_client()
    client.post("/auth/register", json={"email": "ada@example.com", "username": "ada", "password": PASSWORD})
    for _ in range(3):
        wrong = {"username": "ada", "password": "wrong password here"}
        assert client.post("/auth/login", json=wrong, headers={"Origin": FOREIGN}).status_code == 403

    assert client.post("/auth/login", json=LOGIN).status_code == 200


@pytest.mark.parametrize(
    "headers, content, status",
    [
        # No Origin: Sec-Fetch-Site says whether another site's page sent it.
        ({"Sec-Fetch-Site": "cross-site"}, "json", 403),
        ({"Sec-Fetch-Site": "same-site"}, "json", 403),
        ({"Sec-Fetch-Site": "same-origin"}, "json", 200),
        ({"Sec-Fetch-Site": "none"}, "json", 200),
        # A JSON body needs a CORS preflight, which a foreign page cannot pass:
        # without Origin it is a client outside any browser.
        ({}, "json", 200),
        # A form is what a foreign page can post without a preflight, and older
        # browsers send it without Origin.
        ({}, "form", 403),
        ({"Sec-Fetch-Site": "same-origin"}, "form", 403),
        ({"Origin": ALLOWED}, "form", 200),
    ],
)
def test_a_login_without_origin(client, headers, content, status):
    body = {"json": LOGIN} if content == "json" else {"data": FORM_LOGIN}

    response = client.post("/auth/login", headers=headers, **body)

    assert response.status_code == status, response.get_json()


def test_a_refresh_from_a_foreign_origin_is_refused_and_spends_nothing(client):
    client.post("/auth/login", json=LOGIN)
    csrf = client.get_cookie("csrf_refresh_token", path="/").value

    response = client.post("/auth/refresh", headers={"X-CSRF-TOKEN": csrf, "Origin": FOREIGN})

    assert_forbidden(response)
    assert client.post("/auth/refresh", headers={"X-CSRF-TOKEN": csrf}).status_code == 200


def test_without_cookie_mode_the_origin_is_not_checked(make_app):
    client = make_app().test_client()
    client.post("/auth/register", json={"email": "ada@example.com", "username": "ada", "password": PASSWORD})

    response = client.post("/auth/login", json=LOGIN, headers={"Origin": FOREIGN})

    assert response.status_code == 200
    assert "Set-Cookie" not in response.headers


# ---------------------------------------------------------------- a token sent explicitly is judged alone


def json_login(client) -> str:
    """A refresh token as a non-browser client would hold it: the cookie's value."""
    client.post("/auth/login", json=LOGIN)
    return client.get_cookie("refresh_token_cookie", path="/auth").value


@pytest.fixture
def stale_cookie(client):
    """The browser's cookies of a session since ended (no X-CSRF-TOKEN sent)."""
    client.post("/auth/login", json=LOGIN)
    access = client.post("/auth/refresh", headers={
        "X-CSRF-TOKEN": client.get_cookie("csrf_refresh_token", path="/").value,
    }).get_json()["access_token"]
    stale = client.get_cookie("refresh_token_cookie", path="/auth").value
    assert client.post("/auth/logout", headers=bearer(access)).status_code == 200
    client.set_cookie("refresh_token_cookie", stale, path="/auth")
    return stale


@pytest.mark.parametrize("how", ["json", "bearer"])
def test_an_explicit_refresh_token_works_beside_a_stale_cookie(browser_app, client, stale_cookie, how):
    token = json_login(browser_app.test_client())
    kwargs = {"json": {"refresh_token": token}} if how == "json" else {"headers": bearer(token)}

    response = client.post("/auth/refresh", **kwargs)

    assert response.status_code == 200, response.get_json()


@pytest.mark.parametrize("how", ["json", "bearer"])
def test_an_explicit_refresh_token_is_judged_alone_beside_a_good_cookie(client, how):
    client.post("/auth/login", json=LOGIN)
    csrf = client.get_cookie("csrf_refresh_token", path="/").value
    kwargs = {"json": {"refresh_token": "not-a-token"}} if how == "json" else {"headers": bearer("not-a-token")}

    response = client.post("/auth/refresh", headers={"X-CSRF-TOKEN": csrf, **kwargs.pop("headers", {})}, **kwargs)

    assert response.status_code == 401
    assert response.get_json()["error"]["code"] == "token_invalid"


# ---------------------------------------------------------------- a real browser

# What an auto-submitted form does: a form-encoded POST with the browser's
# cookies, sent without a CORS preflight (mode "no-cors"); the page cannot read
# the answer, only cause it.
ATTACK_PAGE = """<!doctype html>
<html><body><pre id="result">running</pre><script>
fetch(%(api)s + "/auth/login", {
  method: "POST", mode: "no-cors", credentials: "include",
  body: new URLSearchParams({grant_type: "password", username: "ada", password: %(password)s}),
}).then(() => "sent", e => String(e)).then(r => {
  document.getElementById("result").textContent = JSON.stringify({result: r});
});
</script></body></html>
"""


def ada_sessions(api_url) -> int:
    response = requests.post(api_url + "/auth/login", json=LOGIN, headers={"Origin": api_url}, timeout=10)
    access = response.json()["access_token"]
    items = requests.get(api_url + "/auth/sessions", headers=bearer(access), timeout=10).json()["items"]
    return len(items) - 1  # less the session just started to count them


@pytest.mark.parametrize("page_host, allowed", [("localhost", False), ("127.0.0.1", True)])
def test_a_foreign_page_cannot_log_a_browser_in_with_a_form(api, page_host, allowed):  # noqa: F811
    html = ATTACK_PAGE % {"api": json.dumps(api), "password": json.dumps(PASSWORD)}

    with PageServer(html, PAGE_PORT):
        result = run_in_chromium(f"http://{page_host}:{PAGE_PORT}/")

    assert result == {"result": "sent"}
    # The page's origin in CORS_ORIGINS is served (so the attack is real);
    # a foreign one starts no session.
    assert ada_sessions(api) == (1 if allowed else 0)
