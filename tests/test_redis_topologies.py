"""authapi on a Redis Sentinel group and on a Redis Cluster (API.md §5, §7;
issue 19), real ones from the installed redis-server (tests/topologies.py),
through two real gunicorns sharing them: the core flows, lockout, the email
reservation and a rate limit across both; the revocation check's one command, counted on
the nodes; a primary killed with kill -9 while a revoked token and a live one
are polled. Slow (a cluster takes ~10 s to form, each failover seconds):
behind the ``redis_topologies`` marker, which .ci/run selects."""

import threading
import time
from contextlib import contextmanager

import pytest
import requests

from authapi import create_app, revocation

from .conftest import PASSWORD, LiveAuth, Server, base_env, bearer, claims_of, reset_database
from .topologies import Cluster, SentinelGroup

pytestmark = pytest.mark.redis_topologies

TOPOLOGIES = {"sentinel": SentinelGroup, "cluster": Cluster}


@pytest.fixture(scope="module", params=list(TOPOLOGIES))
def topology(request, tmp_path_factory):
    started = TOPOLOGIES[request.param](tmp_path_factory.mktemp(request.param))
    try:
        yield started.start()
    finally:
        started.stop()


@contextmanager
def two_servers(env, tmp_path_factory, workers=2, empty=True):
    """Two gunicorns on ``env``, the database migrated (and emptied) first."""
    started = []
    try:
        for name in ("a", "b"):
            server = Server(env, tmp_path_factory.mktemp("gunicorn") / f"{name}.log", workers=workers)
            if empty and not started:
                reset_database(create_app("testing", environ=server.migrate().env))
            started.append(server.start())
        yield started
    finally:
        for server in started:
            server.stop()


@pytest.fixture(scope="module")
def servers(topology, postgres_url, tmp_path_factory):
    """Two gunicorns (two workers each) on PostgreSQL and the topology, rate
    limits off (so the commands counted are authapi's own)."""
    env = base_env(postgres_url, topology.url, LOCKOUT_THRESHOLD=3, EMAIL_RESEND_SECONDS=60)
    with two_servers(env, tmp_path_factory) as started:
        yield started


def me(server, token) -> int:
    return requests.get(server.url + "/users/me", headers=bearer(token), timeout=10).status_code


def data_commands(client) -> dict:
    """INFO commandstats of one node: calls per command, without the ones a
    connection, the test, a replica or a sentinel (its hello PUBLISH) sends."""
    stats = client.info("commandstats")
    skip = ("client", "cluster", "info", "config", "ping", "command", "hello", "select", "readonly",
            "publish", "replconf", "psync", "subscribe")
    return {name.removeprefix("cmdstat_"): value["calls"] for name, value in stats.items()
            if not name.removeprefix("cmdstat_").startswith(skip)}


def node_of_user(topology, user_id):
    if isinstance(topology, Cluster):
        return topology.client(topology.primary_for(revocation.user_key(user_id)))
    return topology.primary_client()


def test_core_flows_across_two_servers(topology, servers):
    a, b = servers
    user = LiveAuth(a.url).register(f"core{type(topology).__name__}")
    pair = LiveAuth(b.url).login(user["username"])
    assert me(a, pair["access_token"]) == me(b, pair["access_token"]) == 200

    refreshed = requests.post(a.url + "/auth/refresh", headers=bearer(pair["refresh_token"]), timeout=10)
    assert refreshed.status_code == 200, refreshed.text
    new = refreshed.json()
    assert me(b, new["access_token"]) == 200

    assert requests.post(b.url + "/auth/logout", headers=bearer(new["access_token"]),
                         timeout=10).status_code == 200
    assert me(a, new["access_token"]) == me(b, new["access_token"]) == 401
    assert requests.post(a.url + "/auth/refresh", headers=bearer(new["refresh_token"]),
                         timeout=10).status_code == 401


def test_lockout_and_email_reservation_across_two_servers(topology, servers):
    a, b = servers
    user = LiveAuth(a.url).register(f"lock{type(topology).__name__}")
    for server in (a, b, a):  # LOCKOUT_THRESHOLD=3 failures, counted in one place
        wrong = requests.post(server.url + "/auth/login", timeout=10,
                              json={"username": user["username"], "password": "wrong password!!"})
        assert wrong.status_code == 401
    locked = requests.post(b.url + "/auth/login", timeout=10,
                           json={"username": user["username"], "password": PASSWORD})
    assert locked.status_code == 429

    for server in (a, b):  # the second within EMAIL_RESEND_SECONDS is capped, not a 500
        forgot = requests.post(server.url + "/auth/password/forgot", json={"email": user["email"]}, timeout=10)
        assert forgot.status_code < 500, forgot.text


def test_a_rate_limit_is_counted_once_across_two_servers(topology, servers, postgres_url, tmp_path_factory):
    env = base_env(postgres_url, topology.url, RATELIMIT_ENABLED="true", RATELIMIT_FORGOT="3 per hour")
    # Beside ``servers``, on its database as it is (its users' ids stay theirs).
    with two_servers(env, tmp_path_factory, workers=1, empty=False) as (a, b):
        statuses = [requests.post(server.url + "/auth/password/forgot", timeout=10,
                                  json={"email": "nobody@example.com"}).status_code
                    for server in (a, b, a, b)]

    assert statuses == [202, 202, 202, 429]


def test_the_revocation_check_is_one_command_on_the_users_node(topology, servers):
    a, _ = servers
    user, pair = LiveAuth(a.url).user("round")
    for _ in range(10):  # every worker thread has its connection made
        assert me(a, pair["access_token"]) == 200
    node = node_of_user(topology, user["id"])
    nodes = ([topology.client(port) for port in topology.processes]
             if isinstance(topology, Cluster) else [node])
    for each in nodes:
        each.config_resetstat()

    for _ in range(20):
        assert me(a, pair["access_token"]) == 200

    assert data_commands(node) == {"mget": 20}
    assert sum(sum(data_commands(each).values()) for each in nodes) == 20


class Poller(threading.Thread):
    """GET /users/me with one token, over and over, recording (time, status)."""

    def __init__(self, server, token):
        super().__init__(daemon=True)
        self.server, self.token = server, token
        self.seen: list[tuple[float, int]] = []
        self.stop = threading.Event()

    def run(self):
        while not self.stop.is_set():
            try:
                self.seen.append((time.monotonic(), me(self.server, self.token)))
            except requests.RequestException:
                self.seen.append((time.monotonic(), 0))
            time.sleep(0.02)


def wait_until_served(pollers, since, timeout=30):
    """Until every poller got a 200 a second or more after ``since``, then one more second."""
    deadline = since + timeout
    while time.monotonic() < deadline:
        if all(any(t > since + 1 and status == 200 for t, status in poller.seen) for poller in pollers):
            break
        time.sleep(0.1)
    time.sleep(1)


def test_failover_fails_closed_and_serves_again_without_restart(topology, servers):
    a, b = servers
    user, live = LiveAuth(a.url).user("failover")
    revoked = LiveAuth(b.url).login(user["username"])
    assert requests.post(b.url + "/auth/logout", headers=bearer(revoked["access_token"]),
                         timeout=10).status_code == 200
    primary = node_of_user(topology, user["id"])
    # The logout's marks reached the replica (docs/performance.md: a write the
    # replica never got is what min-replicas-to-write guards against).
    assert primary.wait(1, 2000) == 1
    assert claims_of(live["access_token"])["sub"] == str(user["id"])
    pollers = [Poller(server, token) for server in (a, b)
               for token in (live["access_token"], revoked["access_token"])]
    for poller in pollers:
        poller.start()
    time.sleep(0.5)

    killed_at = time.monotonic()
    topology.kill(primary.connection_pool.connection_kwargs["port"])
    wait_until_served(pollers[::2], killed_at)
    for poller in pollers:
        poller.stop.set()
        poller.join()

    live_seen = [entry for poller in pollers[::2] for entry in poller.seen]
    revoked_seen = [entry for poller in pollers[1::2] for entry in poller.seen]
    assert {status for _, status in revoked_seen} <= {401, 503}, "a revoked token got through"
    assert {status for _, status in live_seen} <= {200, 503}, "a live token got neither 200 nor 503"
    unavailable = [t for t, status in live_seen + revoked_seen if status == 503]
    back = max(min(t for t, status in poller.seen if t > killed_at and status == 200) for poller in pollers[::2])
    print(f"\n{type(topology).__name__}: {len(unavailable)} 503s of {len(live_seen + revoked_seen)} answers, "
          f"first {max(0, min(unavailable, default=killed_at) - killed_at):.2f} s after the kill, "
          f"last {max(unavailable, default=killed_at) - killed_at:.2f} s; "
          f"the live token served again {back - killed_at:.2f} s after the kill")
    assert back - killed_at < 20

    ready = [requests.get(s.url + "/health/ready", timeout=10) for s in (a, b)]
    assert [r.status_code for r in ready] == [200, 200], [r.text for r in ready]
    assert all(r.json()["checks"]["redis"] == "ok" for r in ready)
