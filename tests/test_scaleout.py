"""Two gunicorn instances sharing one PostgreSQL database and one Redis, as two
hosts behind a load balancer: what is done through one is in force on the other
at once (API.md §7)."""

import pytest
import redis
import requests
from sqlalchemy import select

from authapi import create_app
from authapi.extensions import db
from authapi.models import User

from .conftest import LiveAuth, base_env, bearer, error_code


@pytest.fixture(scope="module")
def hosts(serve, redis_url):
    # Rate-limit counts of an earlier run would still be in the window.
    redis.Redis.from_url(redis_url).flushdb()
    settings = {
        "RATELIMIT_ENABLED": "true",
        "RATELIMIT_FORGOT": "3 per hour",
        # The other limits stay out of the way of the other tests.
        "RATELIMIT_LOGIN": "1000 per minute",
        "RATELIMIT_REGISTER": "1000 per minute",
        "RATELIMIT_DEFAULT": "10000 per minute",
    }
    return serve(workers=2, **settings).url, serve(workers=2, **settings).url


def me(url: str, pair: dict) -> requests.Response:
    return requests.get(url + "/users/me", headers=bearer(pair["access_token"]), timeout=30)


def test_logout_through_one_host_is_in_force_on_the_other(hosts):
    a, b = hosts
    _, pair = LiveAuth(a).user("s")
    assert me(b, pair).status_code == 200

    assert requests.post(a + "/auth/logout", headers=bearer(pair["access_token"]), timeout=30).status_code == 200

    refused = me(b, pair)
    assert refused.status_code == 401 and error_code(refused) == "token_revoked"
    refresh = requests.post(b + "/auth/refresh", headers=bearer(pair["refresh_token"]), timeout=30)
    assert refresh.status_code == 401 and error_code(refresh) == "token_revoked"


def test_session_revoked_through_one_host_is_refused_by_the_other(hosts):
    a, b = hosts
    user, first = LiveAuth(a).user("s")
    second = LiveAuth(b).login(user["username"])
    sessions = requests.get(b + "/auth/sessions", headers=bearer(second["access_token"]), timeout=30).json()
    other = next(s["id"] for s in sessions["items"] if not s["current"])

    ended = requests.delete(f"{b}/auth/sessions/{other}", headers=bearer(second["access_token"]), timeout=30)
    assert ended.status_code == 204

    refused = me(a, first)
    assert refused.status_code == 401 and error_code(refused) == "token_revoked"
    assert me(a, second).status_code == 200


def test_role_change_through_one_host_is_in_force_on_the_other(hosts, postgres_url, redis_url):
    a, b = hosts
    admin, _ = LiveAuth(a).user("s")
    app = create_app("testing", environ=base_env(postgres_url, redis_url))
    with app.app_context():
        # Nobody can become an admin over HTTP: the first one is made directly.
        db.session.scalar(select(User).where(User.id == admin["id"])).role = "admin"
        db.session.commit()
    admin_pair = LiveAuth(a).login(admin["username"])
    user, user_pair = LiveAuth(b).user("s")
    assert requests.get(b + "/users", headers=bearer(user_pair["access_token"]), timeout=30).status_code == 403

    changed = requests.patch(f"{a}/users/{user['id']}", json={"role": "admin"},
                             headers=bearer(admin_pair["access_token"]), timeout=30)
    assert changed.status_code == 200 and changed.json()["role"] == "admin"

    refused = me(b, user_pair)
    assert refused.status_code == 401 and error_code(refused) == "token_revoked"
    promoted = LiveAuth(b).login(user["username"])
    assert requests.get(b + "/users", headers=bearer(promoted["access_token"]), timeout=30).status_code == 200


def test_rate_limit_count_is_shared_between_hosts(hosts):
    a, b = hosts
    # RATELIMIT_FORGOT is 3 per hour per client address, whichever host counts.
    for url in (a, b, a):
        response = requests.post(url + "/auth/password/forgot", json={"email": "nobody@example.com"}, timeout=30)
        assert response.status_code == 202, response.text

    limited = requests.post(b + "/auth/password/forgot", json={"email": "nobody@example.com"}, timeout=30)
    assert limited.status_code == 429 and error_code(limited) == "rate_limited"
    assert int(limited.headers["Retry-After"]) > 0
