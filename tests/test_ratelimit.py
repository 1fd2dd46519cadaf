"""Rate limits per client address (API.md §1 429, §5 RATELIMIT_*, PROXY_FIX_X_FOR),
counted in the real Redis, shared between app instances."""

import time

import jwt as pyjwt
import pytest
import requests

from config import ConfigError, load_config

from .conftest import base_env, free_port

SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}

LIMITED = {
    "RATELIMIT_ENABLED": "true",
    "RATELIMIT_LOGIN": "3 per minute",
    "RATELIMIT_REGISTER": "3 per minute",
    "RATELIMIT_FORGOT": "3 per minute",
    "RATELIMIT_DEFAULT": "3 per minute",
}
# Bodies the schema refuses (422): the limit is checked before validation, so
# they count without the cost of a password hash.
BAD_BODIES = {
    "/auth/login": {"username": "someone"},
    "/auth/register": {"email": "not-an-email"},
    "/auth/password/forgot": {"email": "not-an-email"},
}


@pytest.fixture(scope="session")
def database_url(postgres_url):
    # Limits live in Redis; one database is enough for these tests.
    return postgres_url


@pytest.fixture
def limited_app(make_app):
    return make_app(**LIMITED)


def assert_rate_limited(response):
    assert response.status_code == 429
    body = response.get_json() if hasattr(response, "get_json") else response.json()
    assert body["error"]["code"] == "rate_limited"
    assert body["error"]["message"]
    assert 1 <= int(response.headers["Retry-After"]) <= 60
    for name, value in SECURITY_HEADERS.items():
        assert response.headers[name] == value


@pytest.mark.parametrize("path", sorted(BAD_BODIES))
def test_endpoint_limit_answers_429_after_its_setting(limited_app, path):
    client = limited_app.test_client()
    for _ in range(3):
        assert client.post(path, json=BAD_BODIES[path]).status_code == 422

    response = client.post(path, json=BAD_BODIES[path])

    assert_rate_limited(response)
    assert response.headers["X-RateLimit-Limit"] == "3"
    assert response.headers["X-RateLimit-Remaining"] == "0"
    assert response.headers["RateLimit-Limit"] == "3"
    assert response.headers["RateLimit-Remaining"] == "0"
    assert response.headers["RateLimit-Policy"] == "3;w=60"
    assert 0 < int(response.headers["RateLimit-Reset"]) <= 60
    assert int(response.headers["X-RateLimit-Reset"]) > time.time()


def test_failed_logins_count_against_the_login_limit(limited_app):
    client = limited_app.test_client()
    for _ in range(3):
        response = client.post("/auth/login", json={"username": "nobody", "password": "wrong password x"})
        assert response.status_code == 401

    assert_rate_limited(client.post("/auth/login", json={"username": "nobody", "password": "x" * 12}))


def test_allowed_requests_say_how_much_is_left(limited_app):
    client = limited_app.test_client()

    first = client.post("/auth/login", json=BAD_BODIES["/auth/login"])
    second = client.post("/auth/login", json=BAD_BODIES["/auth/login"])

    assert first.headers["X-RateLimit-Remaining"] == "2"
    assert second.headers["X-RateLimit-Remaining"] == "1"
    assert second.headers["RateLimit-Remaining"] == "1"
    assert "Retry-After" not in second.headers


def test_endpoints_are_counted_apart(limited_app):
    client = limited_app.test_client()
    for _ in range(3):
        client.post("/auth/login", json=BAD_BODIES["/auth/login"])

    assert client.post("/auth/register", json=BAD_BODIES["/auth/register"]).status_code == 422


def test_default_limit_covers_other_endpoints(limited_app):
    client = limited_app.test_client()
    for _ in range(3):
        assert client.get("/users/me").status_code == 401

    response = client.get("/users/me", headers={"X-Request-ID": "trace-429"})

    assert_rate_limited(response)
    # Answered by the limiter's own hook, before the app's: still echoed.
    assert response.headers["X-Request-ID"] == "trace-429"


def test_default_limit_setting_is_read_per_app(make_app):
    client = make_app(**{**LIMITED, "RATELIMIT_DEFAULT": "1 per minute"}).test_client()

    assert client.get("/users/me").status_code == 401
    assert_rate_limited(client.get("/users/me"))


def test_clients_are_counted_by_address(limited_app):
    client = limited_app.test_client()
    for _ in range(3):
        client.post("/auth/login", json=BAD_BODIES["/auth/login"], environ_base={"REMOTE_ADDR": "198.51.100.1"})

    other = client.post("/auth/login", json=BAD_BODIES["/auth/login"], environ_base={"REMOTE_ADDR": "198.51.100.2"})

    assert other.status_code == 422


def test_forwarded_for_is_ignored_without_trusted_proxies(limited_app):
    client = limited_app.test_client()
    for _ in range(3):
        client.post("/auth/login", json=BAD_BODIES["/auth/login"])

    response = client.post(
        "/auth/login", json=BAD_BODIES["/auth/login"], headers={"X-Forwarded-For": "203.0.113.77"}
    )

    assert_rate_limited(response)


def test_forwarded_for_of_a_trusted_proxy_names_the_client(make_app):
    client = make_app(**LIMITED, PROXY_FIX_X_FOR="1").test_client()
    for _ in range(3):
        client.post("/auth/login", json=BAD_BODIES["/auth/login"], headers={"X-Forwarded-For": "203.0.113.1"})

    blocked = client.post("/auth/login", json=BAD_BODIES["/auth/login"], headers={"X-Forwarded-For": "203.0.113.1"})
    other = client.post("/auth/login", json=BAD_BODIES["/auth/login"], headers={"X-Forwarded-For": "203.0.113.2"})

    assert_rate_limited(blocked)
    assert other.status_code == 422


def test_one_trusted_hop_takes_the_address_that_proxy_added(make_app):
    client = make_app(**LIMITED, PROXY_FIX_X_FOR="1").test_client()
    # A client behind the proxy prepends whatever it likes; the proxy appends
    # the real address, and only that one is trusted.
    for forged in ("1.1.1.1", "2.2.2.2", "3.3.3.3"):
        client.post(
            "/auth/login", json=BAD_BODIES["/auth/login"], headers={"X-Forwarded-For": f"{forged}, 203.0.113.5"}
        )

    response = client.post(
        "/auth/login", json=BAD_BODIES["/auth/login"], headers={"X-Forwarded-For": "4.4.4.4, 203.0.113.5"}
    )

    assert_rate_limited(response)


def test_disabled_limits_never_answer_429(make_app):
    client = make_app(**{**LIMITED, "RATELIMIT_ENABLED": "false"}).test_client()

    responses = [client.post("/auth/login", json=BAD_BODIES["/auth/login"]) for _ in range(5)]

    assert [r.status_code for r in responses] == [422] * 5
    assert "X-RateLimit-Limit" not in responses[-1].headers


def test_health_probes_are_not_limited(make_app):
    client = make_app(**{**LIMITED, "RATELIMIT_DEFAULT": "1 per minute"}).test_client()

    statuses = {client.get("/health/live").status_code for _ in range(3)}

    assert 429 not in statuses


@pytest.mark.parametrize("setting", ["RATELIMIT_LOGIN", "RATELIMIT_REGISTER", "RATELIMIT_FORGOT", "RATELIMIT_DEFAULT"])
def test_malformed_limit_is_refused_at_start_naming_the_setting(setting):
    with pytest.raises(ConfigError, match=setting):
        load_config("testing", base_env("sqlite://", None, **{setting: "lots per fortnight"}))


def test_limits_are_shared_between_app_instances(limited_app, serve):
    # A separate process (a real gunicorn with two workers) and this one count
    # in the same Redis: the limit is global, not per process or per host.
    server = serve(**LIMITED)
    client = limited_app.test_client()

    remote = [requests.post(server.url + "/auth/login", json=BAD_BODIES["/auth/login"], timeout=10) for _ in range(2)]
    local = client.post("/auth/login", json=BAD_BODIES["/auth/login"])
    blocked_remote = requests.post(server.url + "/auth/login", json=BAD_BODIES["/auth/login"], timeout=10)
    blocked_local = client.post("/auth/login", json=BAD_BODIES["/auth/login"])

    assert [r.status_code for r in remote] == [422, 422]
    assert local.status_code == 422
    assert local.headers["X-RateLimit-Remaining"] == "0"
    assert_rate_limited(blocked_remote)
    assert_rate_limited(blocked_local)


def test_spoofed_forwarded_for_does_not_reset_the_limit_on_gunicorn(make_app, serve):
    make_app()  # a fresh Redis and database for this test
    server = serve(**LIMITED, PROXY_FIX_X_FOR="0")
    for _ in range(3):
        requests.post(server.url + "/auth/login", json=BAD_BODIES["/auth/login"], timeout=10)

    spoofed = [
        requests.post(
            server.url + "/auth/login",
            json=BAD_BODIES["/auth/login"],
            headers={"X-Forwarded-For": f"203.0.113.{n}", "X-Real-IP": f"203.0.113.{n}"},
            timeout=10,
        )
        for n in range(1, 4)
    ]

    for response in spoofed:
        assert_rate_limited(response)


def _access_token(secret: str) -> str:
    now = int(time.time())
    claims = {
        "sub": "1", "jti": "00000000-0000-4000-8000-000000000001", "type": "access",
        "iat": now, "nbf": now, "exp": now + 60, "role": "user",
        "sid": "00000000-0000-4000-8000-000000000002", "amr": ["pwd"],
    }
    return pyjwt.encode(claims, secret, algorithm="HS256")


def test_redis_down_limits_fail_open_and_token_checks_fail_closed(serve):
    # Nothing listens on this port: every Redis call is refused at once.
    dead_redis = f"redis://127.0.0.1:{free_port()}/0"
    server = serve(workers=1, **{**LIMITED, "REDIS_URL": dead_redis})
    env = base_env("sqlite://", None)
    register = {"email": "not-an-email"}

    # Registration needs only the database: it keeps working, limited in
    # process memory while Redis is away (fail open, not a 500).
    statuses = [
        requests.post(server.url + "/auth/register", json=register, timeout=10).status_code
        for _ in range(4)
    ]
    # The lockout counter is in Redis: a login is refused rather than let
    # password guesses through uncounted.
    login = requests.post(server.url + "/auth/login", json={"username": "ada", "password": "x" * 12}, timeout=10)
    # So is every token check: revocation cannot be verified.
    me = requests.get(
        server.url + "/users/me",
        headers={"Authorization": "Bearer " + _access_token(env["JWT_SECRET_KEY"])},
        timeout=10,
    )

    assert statuses == [422, 422, 422, 429]
    assert login.status_code == 503
    assert login.json()["error"]["code"] == "service_unavailable"
    assert me.status_code == 503
    assert me.json()["error"]["code"] == "service_unavailable"
    assert "Traceback" not in server.log_path.read_text()
