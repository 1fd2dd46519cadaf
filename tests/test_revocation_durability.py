"""Revocation that survives Redis losing its data, and marks that live as long
as the tokens they cover (issue 13, finding 8; API.md §7).

First the rules, against the test Redis (this suite's own db number, flushed
on purpose); then through a real gunicorn and a redis-server of this module's
own, flushed and killed while revoked tokens are polled: never a 200.
"""

import threading
import time
import uuid

import pytest
import redis
import requests
from sqlalchemy import event

from authapi import revocation
from authapi.extensions import Session, db
from authapi.models import AuthSession, User

from .conftest import PASSWORD, AuthActions, bearer
# A redis-server of this module's own (the fixture is module-scoped, so this
# module gets its own), to flush and kill.
from .test_faults import private_redis  # noqa: F401 (a fixture)

NEW_PASSWORD = "a brand new passphrase"


@pytest.fixture
def redis_client(redis_url):
    return redis.Redis.from_url(redis_url, decode_responses=True)


def me(client, pair):
    return client.get("/users/me", headers=bearer(pair["access_token"]))


def refresh(client, pair):
    return client.post("/auth/refresh", headers=bearer(pair["refresh_token"]))


def logged_out(client, auth, username="ada"):
    """A user logged in twice, the first session logged out: (user, ended pair, live pair)."""
    user, ended = auth.user(username=username)
    live = auth.login(username)
    assert client.post("/auth/logout", headers=bearer(ended["access_token"])).status_code == 200
    return user, ended, live


def code(response):
    return response.status_code, response.get_json()["error"]["code"] if response.status_code >= 400 else None


# ---------------------------------------------------------------- after a flush


def test_a_logged_out_session_stays_refused_after_a_flush(client, auth, redis_client):
    _, ended, live = logged_out(client, auth)
    redis_client.flushdb()
    assert code(me(client, ended)) == (401, "token_revoked")
    assert code(refresh(client, ended)) == (401, "token_revoked")
    assert me(client, live).status_code == 200
    assert refresh(client, live).status_code == 200


def test_a_password_change_stays_in_force_after_a_flush(client, auth, redis_client):
    _, old = auth.user(username="ada")
    other = auth.login("ada")
    change = {"current_password": PASSWORD, "new_password": NEW_PASSWORD}
    new = client.post("/auth/password/change", json=change, headers=bearer(old["access_token"])).get_json()
    redis_client.flushdb()
    for pair in (old, other):
        assert code(me(client, pair)) == (401, "token_revoked")
        assert code(refresh(client, pair)) == (401, "token_revoked")
    assert me(client, new).status_code == 200


def test_the_user_cut_off_is_kept_in_the_database(app, client, auth):
    user, pair = auth.user(username="ada")
    assert client.post("/auth/logout-all", headers=bearer(pair["access_token"])).status_code == 200
    with app.app_context():
        cutoff = db.session.get(User, user["id"]).tokens_valid_after
    assert cutoff is not None and abs(cutoff.timestamp() - time.time()) < 5


def test_a_rebuild_writes_the_user_key_so_the_next_check_is_one_command(app, client, auth, redis_client):
    user, _, live = logged_out(client, auth)
    redis_client.flushdb()
    assert me(client, live).status_code == 200
    assert redis_client.get(revocation.user_key(user["id"])) == "0"
    backend = app.extensions["authapi_store"]
    commands = []
    original = backend.client.execute_command

    def counting(*args, **options):
        commands.append(args[0])
        return original(*args, **options)

    backend.client.execute_command = counting
    try:
        assert me(client, live).status_code == 200
    finally:
        del backend.client.execute_command
    assert commands == ["MGET"]


def test_login_writes_the_user_key(client, auth, redis_client):
    user, _ = auth.user(username="ada")
    key = revocation.user_key(user["id"])
    assert redis_client.get(key) == "0"
    redis_client.flushdb()
    auth.login("ada")
    assert redis_client.get(key) == "0"


def test_a_deleted_user_rebuilds_as_revoked(app):
    with app.app_context():
        ended, cutoff = revocation.rebuild_user(424242)
    assert ended == set() and abs(int(cutoff) - time.time()) < 5


# ---------------------------------------------------------------- races


def test_a_logout_racing_a_flush_and_a_rebuild_stays_in_force(app, client, auth, redis_client):
    # The worst order: the logout's marks are written, Redis loses its data,
    # and another worker rebuilds the user's marks from a database read made
    # before the logout's commit. The marks written again after the commit
    # must put the logout back.
    user, pair = auth.user(username="ada")

    def rebuild_elsewhere():
        with app.app_context():
            revocation.rebuild_user(user["id"])

    def flush_and_rebuild(session):
        redis_client.flushdb()
        worker = threading.Thread(target=rebuild_elsewhere)
        worker.start()
        worker.join()

    event.listen(Session, "before_commit", flush_and_rebuild, once=True)
    try:
        assert client.post("/auth/logout", headers=bearer(pair["access_token"])).status_code == 200
    finally:
        if event.contains(Session, "before_commit", flush_and_rebuild):
            event.remove(Session, "before_commit", flush_and_rebuild)
    assert redis_client.exists(revocation.user_key(user["id"]))
    assert code(me(client, pair)) == (401, "token_revoked")


def test_a_flush_during_a_rebuild_is_noticed_and_the_rebuild_repeated(app, client, auth, redis_client, monkeypatch):
    _, ended, live = logged_out(client, auth)
    redis_client.flushdb()
    reads = []
    original = revocation._read_database

    def read_then_lose_everything(user_id):
        reads.append(user_id)
        result = original(user_id)
        if len(reads) == 1:
            redis_client.flushdb()  # the guard goes with it
        return result

    monkeypatch.setattr(revocation, "_read_database", read_then_lose_everything)
    assert code(me(client, ended)) == (401, "token_revoked")
    assert len(reads) == 2


def test_a_rebuild_that_never_completes_fails_closed(app, client, auth, redis_client, monkeypatch):
    _, ended, live = logged_out(client, auth)
    redis_client.flushdb()
    original = revocation._read_database

    def read_then_lose_everything(user_id):
        result = original(user_id)
        redis_client.flushdb()
        return result

    monkeypatch.setattr(revocation, "_read_database", read_then_lose_everything)
    assert code(me(client, ended)) == (503, "service_unavailable")
    assert code(me(client, live)) == (503, "service_unavailable")


# ---------------------------------------------------------------- marks live as long as tokens


@pytest.fixture
def long_access_app(make_app):
    # Not refused by the configuration, so it must be safe.
    return make_app(ACCESS_TOKEN_TTL="60", REFRESH_TOKEN_TTL="2")


def test_marks_live_as_long_as_the_access_tokens(long_access_app, redis_client):
    client = long_access_app.test_client()
    auth = AuthActions(client)
    user, ended, _ = logged_out(client, auth)
    sid = ended_session_id(long_access_app, user["id"])
    assert redis_client.ttl(revocation.session_key(user["id"], sid)) >= 59
    assert redis_client.ttl(revocation.user_key(user["id"])) >= 59


def test_an_access_token_outliving_its_session_can_still_be_logged_out(long_access_app):
    client = long_access_app.test_client()
    _, pair = AuthActions(client).user(username="ada")
    time.sleep(3)  # the session (REFRESH_TOKEN_TTL) is over, the access token is not
    assert me(client, pair).status_code == 200
    assert client.post("/auth/logout", headers=bearer(pair["access_token"])).status_code == 200
    assert code(me(client, pair)) == (401, "token_revoked")


def ended_session_id(app, user_id):
    with app.app_context():
        return db.session.query(AuthSession.id).filter(
            AuthSession.user_id == user_id, AuthSession.revoked_at.is_not(None)
        ).scalar()


# ---------------------------------------------------------------- through a real gunicorn


@pytest.fixture
def fresh_redis(private_redis):
    if not private_redis.running():  # a failed test left it down
        private_redis.start()
    return private_redis


def register_and_login(url: str) -> tuple[dict, dict]:
    name = "d" + uuid.uuid4().hex[:12]
    response = requests.post(url + "/auth/register", json={
        "email": f"{name}@example.com", "username": name, "password": PASSWORD}, timeout=30)
    assert response.status_code == 201, response.text
    response = requests.post(url + "/auth/login", json={"username": name, "password": PASSWORD}, timeout=30)
    assert response.status_code == 200, response.text
    return name, response.json()


def http_me(url, pair):
    return requests.get(url + "/users/me", headers=bearer(pair["access_token"]), timeout=30).status_code


def http_refresh(url, pair):
    return requests.post(url + "/auth/refresh", headers=bearer(pair["refresh_token"]), timeout=30).status_code


class Poller(threading.Thread):
    """Presents revoked tokens in a loop and keeps every status seen."""

    def __init__(self, url, probes):
        super().__init__(daemon=True)
        self.url, self.probes = url, probes
        self.seen = {name: [] for name in probes}
        self.stop = threading.Event()

    def run(self):
        while not self.stop.is_set():
            for name, probe in self.probes.items():
                self.seen[name].append(probe(self.url))


@pytest.fixture(scope="module")
def durable_server(serve, private_redis):
    return serve(workers=2, REDIS_URL=private_redis.url)


def revoked_tokens(url):
    """Tokens that must never work again: a logged-out session's access and
    refresh tokens, and an access token from before a password change."""
    _, logged_out_pair = register_and_login(url)
    assert requests.post(url + "/auth/logout", headers=bearer(logged_out_pair["access_token"]),
                         timeout=30).status_code == 200
    name, changed_pair = register_and_login(url)
    change = {"current_password": PASSWORD, "new_password": NEW_PASSWORD}
    assert requests.post(url + "/auth/password/change", json=change,
                         headers=bearer(changed_pair["access_token"]), timeout=30).status_code == 200
    return {
        "logged-out access": lambda u: http_me(u, logged_out_pair),
        "logged-out refresh": lambda u: http_refresh(u, logged_out_pair),
        "password-changed access": lambda u: http_me(u, changed_pair),
    }


def wait_for_200(url, pair, timeout=15.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if http_me(url, pair) == 200:
            return True
        time.sleep(0.1)
    return False


def test_revoked_tokens_never_work_while_redis_is_flushed_and_restarted(durable_server, fresh_redis):
    url = durable_server.url
    probes = revoked_tokens(url)
    _, valid = register_and_login(url)
    poller = Poller(url, probes)
    poller.start()
    try:
        time.sleep(0.5)
        redis.Redis(port=fresh_redis.port).flushdb()
        time.sleep(1.0)
        redis.Redis(port=fresh_redis.port).flushdb()
        time.sleep(0.5)
        fresh_redis.kill()
        time.sleep(1.0)
        fresh_redis.start()  # empty: no persistence
        assert wait_for_200(url, valid), "a valid token did not work again after the restart"
        time.sleep(1.0)
    finally:
        poller.stop.set()
        poller.join(timeout=60)
    for name, statuses in poller.seen.items():
        assert statuses, name
        assert 200 not in statuses, (name, statuses)
        assert set(statuses) <= {401, 503}, (name, sorted(set(statuses)))
        assert statuses[-1] == 401, (name, statuses[-5:])
    # And new logins work on the rebuilt Redis.
    register_and_login(url)


def test_a_logged_out_access_token_outliving_its_session_stays_refused(serve, fresh_redis):
    # ACCESS_TOKEN_TTL > REFRESH_TOKEN_TTL: the mark must outlive the session.
    server = serve(workers=2, REDIS_URL=fresh_redis.url, ACCESS_TOKEN_TTL="8", REFRESH_TOKEN_TTL="2")
    _, pair = register_and_login(server.url)
    assert requests.post(server.url + "/auth/logout", headers=bearer(pair["access_token"]),
                         timeout=30).status_code == 200
    statuses = []
    deadline = time.monotonic() + 5  # well past the 2 s session, before the 8 s token
    while time.monotonic() < deadline:
        statuses.append(http_me(server.url, pair))
        time.sleep(0.2)
    assert statuses and set(statuses) == {401}, statuses
