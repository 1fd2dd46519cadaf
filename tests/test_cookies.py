"""Browser clients (API.md §3, REFRESH_TOKEN_COOKIE=true): the refresh token in
an HttpOnly cookie with the double-submit CSRF check, through a real gunicorn
with a real cookie jar, and from a real browser page on an allowed origin."""

import json

import pytest
import requests

from authapi import create_app

from .browser import PageServer, run_in_chromium
from .conftest import PASSWORD, base_env, free_port

PAGE_PORT = free_port()
PAGE_ORIGIN = f"http://127.0.0.1:{PAGE_PORT}"
BROWSER_MODE = {"REFRESH_TOKEN_COOKIE": "true", "CORS_ORIGINS": PAGE_ORIGIN}


@pytest.fixture(scope="session")
def database_url(postgres_url):
    return postgres_url


@pytest.fixture(scope="module")
def server(serve):
    return serve(**BROWSER_MODE)


@pytest.fixture
def api(make_app, server):
    """The server's URL, on a fresh database and Redis, and a user "ada"."""
    make_app()
    response = requests.post(
        server.url + "/auth/register",
        json={"email": "ada@example.com", "username": "ada", "password": PASSWORD},
        timeout=10,
    )
    assert response.status_code == 201
    return server.url


def set_cookies(response) -> dict[str, str]:
    """Set-Cookie headers by cookie name, as sent on the wire."""
    return {header.split("=", 1)[0]: header for header in response.raw.headers.getlist("Set-Cookie")}


def attributes(header: str) -> dict[str, str]:
    parts = [part.strip() for part in header.split(";")[1:]]
    return {p.split("=", 1)[0].lower(): (p.split("=", 1)[1] if "=" in p else "") for p in parts}


def browser_login(api) -> tuple[requests.Session, dict]:
    session = requests.Session()
    response = session.post(api + "/auth/login", json={"username": "ada", "password": PASSWORD}, timeout=10)
    assert response.status_code == 200
    return session, response


def cookie_refresh(session, api, csrf=None):
    headers = {} if csrf is None else {"X-CSRF-TOKEN": csrf}
    return session.post(api + "/auth/refresh", headers=headers, timeout=10)


def test_login_sets_the_refresh_token_as_an_httponly_cookie(api):
    session, response = browser_login(api)

    body = response.json()
    cookies = set_cookies(response)
    refresh, csrf = attributes(cookies["refresh_token_cookie"]), attributes(cookies["csrf_refresh_token"])
    assert "refresh_token" not in body
    assert body["access_token"] and body["token_type"] == "Bearer"
    assert "httponly" in refresh and refresh["path"] == "/auth" and refresh["samesite"] == "Strict"
    assert int(refresh["max-age"]) == 1209600
    # Readable by the page's script, so it can copy it into X-CSRF-TOKEN.
    assert "httponly" not in csrf and csrf["path"] == "/" and csrf["samesite"] == "Strict"
    # Plain HTTP outside production: Secure would make the browser drop them.
    assert "secure" not in refresh and "secure" not in csrf


def test_refresh_by_cookie_with_the_csrf_header_rotates_the_cookie(api):
    session, _ = browser_login(api)
    old_cookie = session.cookies["refresh_token_cookie"]

    response = cookie_refresh(session, api, session.cookies["csrf_refresh_token"])

    assert response.status_code == 200
    assert "refresh_token" not in response.json()
    assert session.cookies["refresh_token_cookie"] != old_cookie
    # The old cookie was spent by the rotation: presenting it again is reuse.
    replay = requests.post(
        api + "/auth/refresh",
        cookies={"refresh_token_cookie": old_cookie},
        headers={"X-CSRF-TOKEN": session.cookies["csrf_refresh_token"]},
        timeout=10,
    )
    assert replay.status_code == 401


@pytest.mark.parametrize("csrf", [None, "", "0f0e5c1e-6a4e-4c36-8f64-1c5d8a2b9d11", "x" * 300])
def test_refresh_by_cookie_without_the_matching_csrf_header_is_refused(api, csrf):
    session, _ = browser_login(api)

    response = cookie_refresh(session, api, csrf)

    assert response.status_code == 401
    assert response.json()["error"]["code"] == "token_invalid"
    # The refused request spent nothing: the real header still works.
    assert cookie_refresh(session, api, session.cookies["csrf_refresh_token"]).status_code == 200


def test_csrf_cookie_of_another_session_does_not_match(api):
    first, _ = browser_login(api)
    second, _ = browser_login(api)

    response = cookie_refresh(first, api, second.cookies["csrf_refresh_token"])

    assert response.status_code == 401
    assert response.json()["error"]["code"] == "token_invalid"


@pytest.mark.parametrize("path", ["/auth/logout", "/auth/logout-all"])
def test_logout_clears_both_cookies(api, path):
    session, login = browser_login(api)
    old = dict(session.cookies)

    response = session.post(
        api + path, headers={"Authorization": "Bearer " + login.json()["access_token"]}, timeout=10
    )

    assert response.status_code == 200
    cookies = set_cookies(response)
    assert {"refresh_token_cookie", "csrf_refresh_token"} <= set(cookies)
    for name in ("refresh_token_cookie", "csrf_refresh_token"):
        deleted = attributes(cookies[name])
        assert deleted.get("max-age") == "0" or "1970" in deleted.get("expires", ""), cookies[name]
    # The device token (API.md §7) outlives the session: it names the browser.
    assert set(session.cookies.keys()) == {"device_token"}
    # The cookie a browser might still hold is revoked with its session.
    again = requests.post(
        api + "/auth/refresh",
        cookies=old,
        headers={"X-CSRF-TOKEN": old["csrf_refresh_token"]},
        timeout=10,
    )
    assert again.status_code == 401
    assert again.json()["error"]["code"] == "token_revoked"


def test_bearer_refresh_keeps_working_beside_the_cookie(api):
    session, _ = browser_login(api)
    token = session.cookies["refresh_token_cookie"]

    response = requests.post(api + "/auth/refresh", headers={"Authorization": f"Bearer {token}"}, timeout=10)

    assert response.status_code == 200
    assert "refresh_token_cookie" in set_cookies(response)


def test_json_refresh_keeps_working_beside_the_cookie(api):
    session, _ = browser_login(api)

    response = requests.post(
        api + "/auth/refresh", json={"refresh_token": session.cookies["refresh_token_cookie"]}, timeout=10
    )

    assert response.status_code == 200


def test_without_browser_mode_a_refresh_cookie_is_ignored(client, auth):
    _, pair = auth.user(username="ada")
    assert "refresh_token" in pair
    client.set_cookie("refresh_token_cookie", pair["refresh_token"], path="/auth")

    response = client.post("/auth/refresh")

    assert response.status_code == 401
    assert response.get_json()["error"]["code"] == "unauthorized"
    assert "Set-Cookie" not in client.post("/auth/login", json={"username": "ada", "password": PASSWORD}).headers


def test_cookies_are_secure_in_production(postgres_url, redis_url, make_app):
    make_app()
    env = base_env(postgres_url, redis_url, REFRESH_TOKEN_COOKIE="true", ARGON2_TIME_COST="1", ARGON2_MEMORY_COST="1024")
    app = create_app("production", environ=env)
    client = app.test_client()
    client.post("/auth/register", json={"email": "ada@example.com", "username": "ada", "password": PASSWORD})

    response = client.post("/auth/login", json={"username": "ada", "password": PASSWORD})

    assert response.status_code == 200
    headers = {h.split("=", 1)[0]: attributes(h) for h in response.headers.getlist("Set-Cookie")}
    assert "secure" in headers["refresh_token_cookie"]
    assert "secure" in headers["csrf_refresh_token"]


# ---------------------------------------------------------------- a real browser

PAGE = """<!doctype html>
<html><body><pre id="result">running</pre><script>
const api = %(api)s;
async function run() {
  const out = {};
  const post = (path, headers) => fetch(api + path, {method: "POST", credentials: "include", headers: headers || {}});
  try {
    let r = await fetch(api + "/auth/login", {
      method: "POST", credentials: "include",
      headers: {"Content-Type": "application/json"},
      body: JSON.stringify({username: "ada", password: %(password)s}),
    });
    out.login = r.status;
    const login = await r.json();
    out.login_body_has_refresh_token = "refresh_token" in login;
    out.script_sees = document.cookie.split("; ").map(c => c.split("=")[0]).sort();
    const csrf = (document.cookie.match(/(?:^|; )csrf_refresh_token=([^;]*)/) || [])[1];
    out.refresh_without_csrf = (await post("/auth/refresh")).status;
    r = await post("/auth/refresh", {"X-CSRF-TOKEN": csrf});
    out.refresh_with_csrf = r.status;
    out.request_id_readable = Boolean(r.headers.get("X-Request-ID"));
    const pair = await r.json();
    const csrf2 = (document.cookie.match(/(?:^|; )csrf_refresh_token=([^;]*)/) || [])[1];
    out.csrf_rotated = csrf2 !== csrf;
    out.logout = (await post("/auth/logout", {"Authorization": "Bearer " + pair.access_token})).status;
    out.script_sees_after_logout = document.cookie;
    out.refresh_after_logout = (await post("/auth/refresh", {"X-CSRF-TOKEN": csrf2})).status;
  } catch (e) {
    out.error = String(e);
  }
  document.getElementById("result").textContent = JSON.stringify(out);
}
run();
</script></body></html>
"""


@pytest.mark.parametrize("page_host", ["127.0.0.1", "localhost"])
def test_browser_page_refreshes_by_cookie_only_from_an_allowed_origin(api, page_host):
    html = PAGE % {"api": json.dumps(api), "password": json.dumps(PASSWORD)}
    with PageServer(html, PAGE_PORT):
        result = run_in_chromium(f"http://{page_host}:{PAGE_PORT}/")

    if page_host == "localhost":
        # http://localhost:PORT is not in CORS_ORIGINS: the browser refuses
        # the preflight, so the page cannot even send the login.
        assert result == {"error": "TypeError: Failed to fetch"}
        return
    assert result == {
        "login": 200,
        "login_body_has_refresh_token": False,
        # The HttpOnly refresh cookie is invisible to the page.
        "script_sees": ["csrf_refresh_token"],
        "refresh_without_csrf": 401,
        "refresh_with_csrf": 200,
        "request_id_readable": True,
        "csrf_rotated": True,
        "logout": 200,
        "script_sees_after_logout": "",
        "refresh_after_logout": 401,
    }
