"""deploy/nginx.conf's forward-authentication example, run under a real nginx
in front of a real gunicorn and a real upstream app (an HTTP server here that
answers with the headers it got): no token, 401 in the API's JSON; a token,
the app sees the user's id; a logout, 401 on the very next request."""

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests

from .conftest import LiveAuth, bearer, error_code
from .nginx_server import Nginx, self_signed_certificate
from .test_nginx import BEHIND_NGINX

APP_HOST = "app.example.com"


class EchoHeaders(BaseHTTPRequestHandler):
    """The protected app: answers every request with what it received."""

    def _answer(self):
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length).decode() if length else ""
        self.server.seen.append(self.path)
        payload = json.dumps({"path": self.path, "method": self.command, "body": body,
                              "headers": {k.lower(): v for k, v in self.headers.items()}}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _answer

    def log_message(self, *args):
        pass


@pytest.fixture(scope="session")
def database_url(postgres_url):
    return postgres_url


@pytest.fixture(scope="module")
def upstream_app():
    server = ThreadingHTTPServer(("127.0.0.1", 0), EchoHeaders)
    server.seen = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def site(serve, upstream_app, tmp_path_factory):
    # The check names api.example.com as its Host: authapi trusts it.
    gunicorn = serve(**{**BEHIND_NGINX, "TRUSTED_HOSTS": "localhost,127.0.0.1,api.example.com"})
    cert, key = self_signed_certificate(tmp_path_factory.mktemp("tls"))
    nginx = Nginx(tmp_path_factory.mktemp("nginx"), gunicorn.port, cert, key,
                  app_port=upstream_app.server_address[1]).start()
    yield nginx, gunicorn
    nginx.stop()


@pytest.fixture
def app_site(make_app, site, upstream_app):
    make_app()  # a fresh database and Redis for each test
    upstream_app.seen.clear()
    nginx, gunicorn = site
    return nginx, LiveAuth(gunicorn.url)


def to_app(nginx, path="/", method="GET", token=None, **kwargs):
    headers = {"Host": APP_HOST, **(bearer(token) if token else {}), **kwargs.pop("headers", {})}
    return requests.request(method, nginx.url + path, headers=headers, verify=False, timeout=10, **kwargs)


def test_no_token_is_the_apis_json_401_and_the_app_sees_nothing(app_site, upstream_app):
    nginx, _ = app_site

    for method in ("GET", "POST", "OPTIONS", "HEAD"):
        response = to_app(nginx, "/orders", method)
        assert response.status_code == 401, method
        assert response.headers["WWW-Authenticate"].startswith("Bearer")
        if method != "HEAD":
            assert response.headers["Content-Type"].startswith("application/json")
            assert error_code(response) == "unauthorized"
    assert error_code(to_app(nginx, token="not.a.token")) == "token_invalid"
    assert upstream_app.seen == []


def test_a_token_reaches_the_app_with_the_users_id_and_a_forged_one_is_replaced(app_site):
    nginx, live = app_site
    user, pair = live.user()

    response = to_app(nginx, "/orders?page=2", "POST", pair["access_token"], data="hello",
                      headers={"X-Auth-User-Id": "1", "X-Auth-Role": "admin", "Content-Type": "text/plain"})

    assert response.status_code == 200, response.text
    seen = response.json()
    assert seen["path"] == "/orders?page=2" and seen["method"] == "POST" and seen["body"] == "hello"
    assert seen["headers"]["x-auth-user-id"] == str(user["id"])
    assert seen["headers"]["x-auth-role"] == "user"
    assert len(seen["headers"]["x-auth-session-id"]) == 36
    assert "authorization" not in seen["headers"]


def test_a_forged_identity_without_a_token_does_not_pass(app_site, upstream_app):
    nginx, _ = app_site

    response = to_app(nginx, headers={"X-Auth-User-Id": "1"})

    assert response.status_code == 401
    assert upstream_app.seen == []


def test_logout_is_401_on_the_very_next_request(app_site):
    nginx, live = app_site
    _, pair = live.user()
    assert to_app(nginx, token=pair["access_token"]).status_code == 200

    logout = requests.post(live.url + "/auth/logout", headers=bearer(pair["access_token"]), timeout=10)
    assert logout.status_code == 200
    response = to_app(nginx, token=pair["access_token"])

    assert response.status_code == 401
    assert error_code(response) == "token_revoked"


def test_the_admin_area_is_the_apis_403_for_another_role(app_site, upstream_app):
    nginx, live = app_site
    _, pair = live.user()

    response = to_app(nginx, "/admin/users", token=pair["access_token"])

    assert response.status_code == 403
    assert error_code(response) == "forbidden"
    assert upstream_app.seen == []
    assert to_app(nginx, "/reports", token=pair["access_token"]).status_code == 200


def test_authapi_unreachable_is_the_apis_json_503_and_the_app_sees_nothing(upstream_app, tmp_path_factory):
    from .conftest import free_port

    cert, key = self_signed_certificate(tmp_path_factory.mktemp("tls"))
    # authapi's upstream: a port where nothing listens.
    nginx = Nginx(tmp_path_factory.mktemp("nginx"), free_port(), cert, key,
                  app_port=upstream_app.server_address[1]).start()
    upstream_app.seen.clear()
    try:
        response = to_app(nginx, "/orders", token="any.token.at-all")
    finally:
        nginx.stop()

    assert response.status_code == 503
    assert error_code(response) == "service_unavailable"
    assert upstream_app.seen == []
