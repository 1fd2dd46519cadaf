"""CORS (API.md §5 CORS_ORIGINS): only the listed origins, credentials only for
them, Authorization and Content-Type allowed, X-Request-ID exposed."""

import pytest

from config import ConfigError, load_config

from .conftest import base_env

ALLOWED = "https://app.example.com"
OTHER_ALLOWED = "http://localhost:3000"


@pytest.fixture(scope="session")
def database_url(sqlite_url):
    # Headers only: one database is enough.
    return sqlite_url


@pytest.fixture
def client(make_app):
    return make_app(CORS_ORIGINS=f"{ALLOWED}, {OTHER_ALLOWED}").test_client()


def preflight(client, origin, path="/auth/login", method="POST", headers="Content-Type, Authorization"):
    return client.options(
        path,
        headers={
            "Origin": origin,
            "Access-Control-Request-Method": method,
            "Access-Control-Request-Headers": headers,
        },
    )


def allowed_headers(response) -> set[str]:
    return {h.strip().lower() for h in response.headers.get("Access-Control-Allow-Headers", "").split(",")}


@pytest.mark.parametrize("origin", [ALLOWED, OTHER_ALLOWED])
def test_preflight_from_a_listed_origin_is_allowed_with_credentials(client, origin):
    response = preflight(client, origin)

    assert response.status_code == 200
    assert response.headers["Access-Control-Allow-Origin"] == origin
    assert response.headers["Access-Control-Allow-Credentials"] == "true"
    assert {"authorization", "content-type"} <= allowed_headers(response)
    assert "POST" in response.headers["Access-Control-Allow-Methods"]
    assert "Origin" in response.headers["Vary"]


def test_preflight_allows_the_csrf_header_of_browser_refresh(client):
    response = preflight(client, ALLOWED, path="/auth/refresh", headers="X-CSRF-TOKEN")

    assert "x-csrf-token" in allowed_headers(response)


@pytest.mark.parametrize(
    "origin",
    [
        "https://evil.example.com",
        "https://app.example.com.evil.example",
        "http://app.example.com",  # another scheme is another origin
        "https://app.example.com:8443",
        "null",
    ],
)
def test_preflight_from_another_origin_gets_no_allow_origin(client, origin):
    response = preflight(client, origin)

    assert "Access-Control-Allow-Origin" not in response.headers
    assert "Access-Control-Allow-Credentials" not in response.headers


def test_actual_request_from_a_listed_origin_exposes_the_request_id(client):
    response = client.get("/users/me", headers={"Origin": ALLOWED})

    assert response.status_code == 401
    assert response.headers["Access-Control-Allow-Origin"] == ALLOWED
    assert response.headers["Access-Control-Allow-Credentials"] == "true"
    exposed = {h.strip().lower() for h in response.headers["Access-Control-Expose-Headers"].split(",")}
    assert {"x-request-id", "retry-after", "ratelimit-remaining"} <= exposed


def test_actual_request_from_another_origin_gets_no_cors_headers(client):
    response = client.get("/users/me", headers={"Origin": "https://evil.example.com"})

    assert response.status_code == 401
    assert not [name for name in response.headers.keys() if name.lower().startswith("access-control-")]


def test_without_cors_origins_no_origin_is_allowed(make_app):
    client = make_app().test_client()

    response = preflight(client, ALLOWED)

    assert "Access-Control-Allow-Origin" not in response.headers
    assert "Access-Control-Allow-Credentials" not in response.headers


def test_error_responses_carry_cors_headers_for_listed_origins(client):
    # A browser page can only read the error (and its request id) if the
    # error response itself is allowed.
    response = client.post("/auth/login", data="{nope", content_type="application/json", headers={"Origin": ALLOWED})

    assert response.status_code == 400
    assert response.headers["Access-Control-Allow-Origin"] == ALLOWED


@pytest.mark.parametrize(
    "value", ["*", "https://*.example.com", "app.example.com", "https://app.example.com/", "https://app.example.com/path"]
)
def test_cors_origins_must_be_exact_origins(value):
    with pytest.raises(ConfigError, match="CORS_ORIGINS"):
        load_config("testing", base_env("sqlite://", None, CORS_ORIGINS=value))
