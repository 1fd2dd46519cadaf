"""Security headers on every response (API.md §7), TRUSTED_HOSTS, HSTS and the
scheme through trusted proxies, MAX_CONTENT_LENGTH."""

import pytest

from authapi import create_app

from .conftest import PASSWORD, base_env, bearer

SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


@pytest.fixture(scope="session")
def database_url(sqlite_url):
    return sqlite_url


@pytest.fixture
def app(make_app):
    app = make_app(RATELIMIT_ENABLED="true", RATELIMIT_DEFAULT="2 per minute", MAX_CONTENT_LENGTH="1024")

    @app.get("/boom")
    def boom():
        raise RuntimeError("a bug")

    return app


def answer(client, auth, status):
    if status == 200:
        _, pair = auth.user()
        return client.get("/users/me", headers=bearer(pair["access_token"]))
    if status == 401:
        return client.get("/users/me")
    if status == 404:
        return client.get("/nowhere")
    if status == 413:
        return client.post("/auth/register", data='{"x": "' + "y" * 2000 + '"}', content_type="application/json")
    if status == 429:
        for _ in range(2):
            client.get("/auth/sessions")
        return client.get("/auth/sessions")
    if status == 500:
        return client.get("/boom")
    raise AssertionError(status)


@pytest.mark.parametrize("status", [200, 401, 404, 413, 429, 500])
def test_security_headers_are_on_every_response(client, auth, status):
    response = answer(client, auth, status)

    assert response.status_code == status
    for name, value in SECURITY_HEADERS.items():
        assert response.headers[name] == value
    assert response.headers["X-Request-ID"]
    if status != 200:
        assert response.mimetype == "application/json"
        assert set(response.get_json()) == {"error"}


def test_body_over_max_content_length_is_a_json_413(client):
    response = answer(client, None, 413)

    assert response.get_json()["error"]["code"] == "payload_too_large"


@pytest.fixture
def hosts_client(make_app):
    return make_app(TRUSTED_HOSTS="api.example.com, .internal.example").test_client()


@pytest.mark.parametrize("host", ["api.example.com", "api.example.com:8443", "API.EXAMPLE.COM", "auth.internal.example"])
def test_listed_hosts_are_served(hosts_client, host):
    assert hosts_client.get("/users/me", headers={"Host": host}).status_code == 401


@pytest.mark.parametrize("host", ["evil.example.com", "api.example.com.evil.example", "127.0.0.1", "localhost:80"])
def test_other_hosts_get_a_json_bad_request(hosts_client, host):
    response = hosts_client.post(
        "/auth/login", json={"username": "ada", "password": PASSWORD}, headers={"Host": host}
    )

    assert response.status_code == 400
    assert response.get_json()["error"]["code"] == "bad_request"
    for name, value in SECURITY_HEADERS.items():
        assert response.headers[name] == value


def test_health_answers_whatever_the_host(hosts_client):
    # Load balancers probe instances by address (API.md §5).
    assert hosts_client.get("/health/live", headers={"Host": "10.0.0.7:8000"}).status_code == 200


def test_without_trusted_hosts_any_host_is_served(client):
    assert client.get("/users/me", headers={"Host": "anything.example"}).status_code == 401


def production_client(database_url, redis_url, **extra):
    env = base_env(database_url, redis_url, **extra)
    return create_app("production", environ=env).test_client()


def test_hsts_in_production_on_https_seen_through_a_trusted_proxy(make_app, sqlite_url, redis_url):
    client = production_client(sqlite_url, redis_url, PROXY_FIX_X_FOR="1")

    https = client.get("/users/me", headers={"X-Forwarded-Proto": "https", "X-Forwarded-For": "203.0.113.9"})
    http = client.get("/users/me", headers={"X-Forwarded-Proto": "http", "X-Forwarded-For": "203.0.113.9"})

    assert https.headers["Strict-Transport-Security"] == "max-age=63072000"
    assert "Strict-Transport-Security" not in http.headers


def test_forwarded_proto_is_ignored_without_trusted_proxies(make_app, sqlite_url, redis_url):
    client = production_client(sqlite_url, redis_url, PROXY_FIX_X_FOR="0")

    response = client.get("/users/me", headers={"X-Forwarded-Proto": "https"})

    assert "Strict-Transport-Security" not in response.headers


def test_no_hsts_outside_production(make_app):
    client = make_app(PROXY_FIX_X_FOR="1").test_client()

    response = client.get("/users/me", headers={"X-Forwarded-Proto": "https", "X-Forwarded-For": "203.0.113.9"})

    assert "Strict-Transport-Security" not in response.headers
