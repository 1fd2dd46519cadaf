"""A real nginx, configured from deploy/nginx.conf, in front of a real gunicorn
(production settings, PROXY_FIX_X_FOR=1): client addresses, rate limits, TLS
and HSTS, body size, hosts and nginx's own errors as the API's JSON."""

import json
import re
import time
import uuid

import pytest
import requests

from .conftest import free_port
from .nginx_server import NGINX_SITE as SITE
from .nginx_server import FromAddress, Nginx, self_signed_certificate

SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}
BEHIND_NGINX = {
    "AUTHAPI_ENV": "production",
    "PROXY_FIX_X_FOR": "1",
    "TRUSTED_HOSTS": "localhost,127.0.0.1",
    "RATELIMIT_ENABLED": "true",
    "RATELIMIT_LOGIN": "3 per minute",
    "LOG_FORMAT": "json",
    "ARGON2_TIME_COST": "1",
    "ARGON2_MEMORY_COST": "1024",
    "ARGON2_PARALLELISM": "1",
}
LOGIN_422 = {"username": "someone"}  # refused by the schema, counted by the limit


@pytest.fixture(scope="session")
def database_url(postgres_url):
    return postgres_url


@pytest.fixture(scope="module")
def certificate(tmp_path_factory):
    return self_signed_certificate(tmp_path_factory.mktemp("tls"))


@pytest.fixture(scope="module")
def start_nginx(tmp_path_factory, certificate):
    started = []

    def start(upstream_port: int) -> Nginx:
        nginx = Nginx(tmp_path_factory.mktemp("nginx"), upstream_port, *certificate)
        started.append(nginx)
        return nginx.start()

    yield start
    for nginx in started:
        nginx.stop()


@pytest.fixture(scope="module")
def gunicorn(serve):
    return serve(**BEHIND_NGINX)


@pytest.fixture(scope="module")
def site(gunicorn, start_nginx):
    return start_nginx(gunicorn.port)


@pytest.fixture
def nginx(make_app, site):
    make_app()  # a fresh database and Redis for each test
    return site


def client(nginx: Nginx, address: str = "127.0.0.1") -> requests.Session:
    session = requests.Session()
    # Else REQUESTS_CA_BUNDLE from the environment would override verify.
    session.trust_env = False
    session.verify = str(nginx.cert)
    session.mount("https://", FromAddress(address))
    session.mount("http://", FromAddress(address))
    return session


def app_log_lines(server) -> list[dict]:
    lines = []
    for line in server.log_path.read_text().splitlines():
        try:
            lines.append(json.loads(line))
        except ValueError:
            pass
    return lines


def assert_json_error(response, status, code):
    assert response.status_code == status
    assert response.headers["Content-Type"].startswith("application/json")
    assert response.json()["error"]["code"] == code
    for name, value in SECURITY_HEADERS.items():
        assert response.headers[name] == value
    assert response.headers["X-Request-ID"]


def test_clients_behind_nginx_are_limited_separately(nginx, gunicorn):
    first, second = client(nginx, "127.0.0.2"), client(nginx, "127.0.0.3")
    for _ in range(3):
        assert first.post(nginx.url + "/auth/login", json=LOGIN_422).status_code == 422

    blocked = first.post(nginx.url + "/auth/login", json=LOGIN_422)
    other = second.post(nginx.url + "/auth/login", json=LOGIN_422)

    assert_json_error(blocked, 429, "rate_limited")
    assert 1 <= int(blocked.headers["Retry-After"]) <= 60
    assert other.status_code == 422
    assert other.headers["X-RateLimit-Remaining"] == "2"
    # The app saw each client's own address, from the X-Forwarded-For nginx set.
    seen = {
        line["request_id"]: line["client_ip"]
        for line in app_log_lines(gunicorn)
        if line.get("logger") == "authapi.request"
    }
    assert seen[blocked.headers["X-Request-ID"]] == "127.0.0.2"
    assert seen[other.headers["X-Request-ID"]] == "127.0.0.3"


def test_forwarded_for_sent_by_a_client_does_not_dodge_the_limit(nginx):
    session = client(nginx, "127.0.0.4")

    statuses = [
        session.post(
            nginx.url + "/auth/login", json=LOGIN_422, headers={"X-Forwarded-For": f"198.51.100.{n}"}
        ).status_code
        for n in range(1, 6)
    ]

    assert statuses == [422, 422, 422, 429, 429]


def test_https_through_nginx_gets_hsts_and_security_headers(nginx):
    response = client(nginx).get(nginx.url + "/users/me")

    assert_json_error(response, 401, "unauthorized")
    assert response.headers["Strict-Transport-Security"].startswith("max-age=")


def test_plain_http_to_gunicorn_gets_no_hsts(nginx, gunicorn):
    # RFC 6797: never over plain HTTP, even in production.
    response = requests.get(gunicorn.url + "/users/me", headers={"Host": "localhost"}, timeout=10)

    assert response.status_code == 401
    assert "Strict-Transport-Security" not in response.headers


def test_plain_http_is_redirected_to_https(nginx):
    response = client(nginx).get(nginx.http_url + "/users/me", allow_redirects=False)

    assert response.status_code == 301
    assert response.headers["Location"].startswith("https://localhost")


def test_body_over_the_limit_is_a_json_413_from_nginx(nginx, gunicorn):
    body = json.dumps({"username": "x" * 70000, "password": "y"})

    response = client(nginx).post(
        nginx.url + "/auth/login", data=body, headers={"Content-Type": "application/json"}
    )

    assert_json_error(response, 413, "payload_too_large")
    assert response.headers["Strict-Transport-Security"].startswith("max-age=")


def test_body_within_the_limit_reaches_the_app(nginx):
    body = json.dumps({"username": "x" * 60000, "password": "y"})

    response = client(nginx).post(
        nginx.url + "/auth/login", data=body, headers={"Content-Type": "application/json"}
    )

    assert_json_error(response, 422, "validation_error")


def test_untrusted_host_is_refused_through_nginx(nginx):
    response = client(nginx).get(nginx.url + "/users/me", headers={"Host": "evil.example.com"})

    assert_json_error(response, 400, "bad_request")


def test_health_answers_on_any_host(nginx):
    response = client(nginx).get(nginx.url + "/health/live", headers={"Host": "10.0.0.7"})

    assert response.status_code == 200


def test_metrics_are_not_public_through_nginx(nginx):
    response = client(nginx).get(nginx.url + "/metrics")

    assert_json_error(response, 404, "not_found")


def test_nginx_and_the_app_log_one_request_id_and_no_query_string(nginx, gunicorn):
    secret = uuid.uuid4().hex

    response = client(nginx).get(nginx.url + f"/users/me?token={secret}")

    request_id = response.headers["X-Request-ID"]
    assert re.fullmatch(r"[0-9a-f]{32}", request_id)  # nginx's $request_id
    # Unbuffered, but written in nginx's log phase, after the response went
    # out: on a loaded machine the client can read the file first.
    deadline = time.monotonic() + 5
    while f"request_id={request_id}" not in (nginx_log := nginx.access_log.read_text()):
        assert time.monotonic() < deadline, nginx_log[-2000:]
        time.sleep(0.05)
    assert any(line.get("request_id") == request_id for line in app_log_lines(gunicorn))
    assert secret not in nginx_log
    assert secret not in gunicorn.log_path.read_text()


def test_upstream_down_is_a_json_503(make_app, start_nginx):
    nginx = start_nginx(free_port())  # nothing listens there

    response = client(nginx).get(nginx.url + "/users/me")

    assert_json_error(response, 503, "service_unavailable")
    assert response.headers["Retry-After"] == "5"


# ---------------------------------------------------------------- the site file against the Python source
# nginx cannot import the catalogue or the header list: its own pages repeat
# them, and these tests hold them to authapi.errors and authapi.http.

NGINX_PAGE = re.compile(r"location [^{]*\{(?P<body>[^}]*?return (?P<status>\d{3}) '(?P<json>[^']*)';[^}]*)\}")


def nginx_pages() -> list[tuple[int, dict, dict]]:
    pages = []
    for match in NGINX_PAGE.finditer(SITE.read_text()):
        headers = dict(re.findall(r'add_header ([\w-]+) "?([^";]+?)"? always;', match["body"]))
        pages.append((int(match["status"]), json.loads(match["json"].replace("\\n", "")), headers))
    return pages


def test_nginx_pages_answer_the_catalogues_code_and_message():
    from authapi import errors

    pages = nginx_pages()
    assert {status for status, _, _ in pages} == {400, 404, 405, 413, 414, 431, 500, 503}
    for status, body, _ in pages:
        # 414 and 431: the refusals gunicorn answers the same way.
        code, message = errors.HTTP_CODES.get(status) or errors.SERVER_REFUSALS[status]
        assert body == errors.envelope(code, message), status


def test_nginx_pages_carry_the_apps_security_headers():
    from authapi import http

    for status, _, headers in nginx_pages():
        expected = {**http.SECURITY_HEADERS, "Strict-Transport-Security": http.HSTS}
        assert {name: headers.get(name) for name in expected} == expected, status
        assert headers["X-Request-ID"] == "$authapi_request_id"
