"""Liveness and readiness probes (API.md §3 Operations).

Unreachable backends are real: a closed port refuses at once, and a listening
socket that never answers stands for a backend that hangs.
"""

import socket
import time

import pytest

from authapi import create_app

from .conftest import base_env, free_port

READY = {"status": "ok", "checks": {"database": "ok", "redis": "ok"}}


@pytest.fixture
def silent_port():
    """A port that accepts TCP connections and never says a word."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(16)
        yield server.getsockname()[1]


def test_live_answers_ok_without_auth(client):
    response = client.get("/health/live")
    assert (response.status_code, response.get_json()) == (200, {"status": "ok"})


def test_ready_checks_database_and_redis(client):
    response = client.get("/health/ready")
    assert (response.status_code, response.get_json()) == (200, READY)


def test_ready_is_503_naming_redis_when_redis_is_unreachable(make_app):
    app = make_app(REDIS_URL=f"redis://127.0.0.1:{free_port()}/0")
    response = app.test_client().get("/health/ready")
    assert response.status_code == 503
    assert response.get_json() == {"status": "error", "checks": {"database": "ok", "redis": "error"}}


def test_ready_is_503_naming_the_database_when_it_is_unreachable(redis_url):
    env = base_env(f"postgresql://postgres@127.0.0.1:{free_port()}/authapi", redis_url)
    response = create_app("testing", environ=env).test_client().get("/health/ready")
    assert response.status_code == 503
    assert response.get_json() == {"status": "error", "checks": {"database": "error", "redis": "ok"}}


def test_ready_answers_within_its_timeout_when_both_backends_hang(silent_port):
    url = f"127.0.0.1:{silent_port}"
    env = base_env(f"postgresql://postgres@{url}/authapi", f"redis://{url}/0")
    client = create_app("testing", environ=env).test_client()
    started = time.monotonic()
    response = client.get("/health/ready")
    elapsed = time.monotonic() - started
    assert response.status_code == 503
    assert response.get_json()["checks"] == {"database": "error", "redis": "error"}
    # Both checks run at once under one deadline (2 s), not one after the other.
    assert elapsed < 3.0


def test_ready_reports_the_in_process_store_as_ok_in_development(sqlite_url):
    app = create_app("development", environ=base_env(sqlite_url, None, AUTHAPI_ENV="development"))
    response = app.test_client().get("/health/ready")
    assert (response.status_code, response.get_json()) == (200, READY)


def test_probes_answer_any_host_when_trusted_hosts_is_set(make_app):
    # Load balancers probe by address (API.md §5 TRUSTED_HOSTS).
    client = make_app(TRUSTED_HOSTS="api.example.com").test_client()
    for path in ("/health/live", "/health/ready"):
        response = client.get(path, headers={"Host": "10.1.2.3:8000"})
        assert response.status_code == 200, (path, response.get_json())
