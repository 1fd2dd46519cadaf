"""Races against a real gunicorn with several workers (API.md §1, §7): requests
start together behind a barrier, so the database and Redis, not luck, decide."""

import re
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from .conftest import PASSWORD, LiveAuth, bearer

PARALLEL = 20
TIMEOUT = 60
ACCESS_LINE = re.compile(r"authapi-access pid=<(\d+)> rid=(\S+)")


@pytest.fixture(scope="module", autouse=True)
def access_log_with_worker_pid():
    """Have gunicorn log which worker answered each request id, so a test can
    show that several workers served it. Set before ``gunicorn_server`` starts
    (autouse fixtures of a scope come first); the server inherits os.environ."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(
            "GUNICORN_CMD_ARGS",
            "--access-logfile=- "
            "--access-logformat='authapi-access pid=%(p)s rid=%({x-request-id}i)s'",
        )
        yield


def workers_by_request_id(server, request_ids) -> dict[str, str]:
    """The pid of the worker that answered each request id, from the access log
    (written just after the response, so wait for it briefly)."""
    deadline = time.monotonic() + 10
    while True:
        found = dict(
            (m.group(2), m.group(1)) for m in ACCESS_LINE.finditer(server.log_path.read_text())
        )
        if all(rid in found for rid in request_ids) or time.monotonic() > deadline:
            return {rid: found.get(rid) for rid in request_ids}
        time.sleep(0.05)


def race(count: int, send) -> list[requests.Response]:
    """Call ``send(http, i)`` for i in range(count) on ``count`` threads released
    at once, each with its own HTTP session (so its own connection)."""
    barrier = threading.Barrier(count)

    def task(i):
        with requests.Session() as http:
            barrier.wait(timeout=TIMEOUT)
            return send(http, i)

    with ThreadPoolExecutor(max_workers=count) as pool:
        return list(pool.map(task, range(count)))


def summary(responses) -> list[tuple[int, str | None]]:
    """(status, error code) of each response, for assertion messages."""
    return [(r.status_code, _error_code(r)) for r in responses]


def _error_code(response) -> str | None:
    try:
        return response.json().get("error", {}).get("code")
    except ValueError:
        return None


def unique(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:10]}"


def registered_pair(server):
    return LiveAuth(server.url, TIMEOUT).user("racer")[1]


def race_registrations(server, emails, usernames):
    def send(http, i):
        return http.post(
            server.url + "/auth/register",
            json={"email": emails[i], "username": usernames[i], "password": PASSWORD},
            timeout=TIMEOUT,
        )

    return race(PARALLEL, send)


def assert_one_created_rest_conflict(responses):
    outcomes = summary(responses)
    assert not [o for o in outcomes if o[0] >= 500], outcomes
    assert sum(1 for o in outcomes if o[0] == 201) == 1, outcomes
    refused = sorted(o for o in outcomes if o[0] != 201)
    assert refused == [(409, "conflict")] * (PARALLEL - 1), outcomes


# ---------------------------------------------------------------- refresh rotation


def test_concurrent_refreshes_with_one_token_exactly_one_succeeds(gunicorn_server):
    refresh_token = registered_pair(gunicorn_server)["refresh_token"]

    def send(http, i):
        return http.post(
            gunicorn_server.url + "/auth/refresh", headers=bearer(refresh_token), timeout=TIMEOUT
        )

    outcomes = summary(race(PARALLEL, send))

    assert not [o for o in outcomes if o[0] >= 500], outcomes
    assert [o for o in outcomes if o[0] == 200] == [(200, None)], outcomes
    losers = [o for o in outcomes if o[0] != 200]
    assert all(o in {(401, "token_reused"), (401, "token_revoked")} for o in losers), outcomes
    # At least the first loser must have detected the reuse (and ended the session).
    assert (401, "token_reused") in losers, outcomes


def test_concurrent_refresh_race_ends_the_session_of_the_winner_too(gunicorn_server):
    pair = registered_pair(gunicorn_server)

    def send(http, i):
        return http.post(
            gunicorn_server.url + "/auth/refresh",
            headers=bearer(pair["refresh_token"]),
            timeout=TIMEOUT,
        )

    responses = race(PARALLEL, send)
    winner = next(r for r in responses if r.status_code == 200).json()

    # A reuse revokes the whole session (API.md §7): the winner's fresh pair included.
    again = requests.post(
        gunicorn_server.url + "/auth/refresh",
        headers=bearer(winner["refresh_token"]),
        timeout=TIMEOUT,
    )
    me = requests.get(
        gunicorn_server.url + "/users/me", headers=bearer(winner["access_token"]), timeout=TIMEOUT
    )
    assert (again.status_code, _error_code(again)) == (401, "token_revoked")
    assert (me.status_code, _error_code(me)) == (401, "token_revoked")


# ---------------------------------------------------------------- registration


def test_concurrent_registrations_of_one_email_create_one_account(gunicorn_server):
    email = unique("dup") + "@example.com"
    usernames = [unique(f"r{i}x") for i in range(PARALLEL)]

    responses = race_registrations(gunicorn_server, [email] * PARALLEL, usernames)

    assert_one_created_rest_conflict(responses)


def test_concurrent_registrations_of_one_username_create_one_account(gunicorn_server):
    username = unique("same")
    emails = [unique(f"e{i}x") + "@example.com" for i in range(PARALLEL)]

    responses = race_registrations(gunicorn_server, emails, [username] * PARALLEL)

    assert_one_created_rest_conflict(responses)


def test_concurrent_registrations_of_one_email_in_different_case_create_one_account(
    gunicorn_server,
):
    local = unique("mixedcase")
    # Twenty distinct spellings of one address: bit i of the index picks the case of letter i.
    emails = [
        "".join(c.upper() if (n >> k) & 1 else c for k, c in enumerate(local)) + "@Example.COM"
        for n in range(PARALLEL)
    ]
    assert len(set(emails)) == PARALLEL
    usernames = [unique(f"c{i}x") for i in range(PARALLEL)]

    responses = race_registrations(gunicorn_server, emails, usernames)

    assert_one_created_rest_conflict(responses)


# ---------------------------------------------------------------- shared revocation


def test_logout_on_one_worker_is_seen_by_every_worker(gunicorn_server):
    server = gunicorn_server
    access = registered_pair(server)["access_token"]
    before = requests.get(server.url + "/users/me", headers=bearer(access), timeout=TIMEOUT)
    assert before.status_code == 200, before.text
    run = uuid.uuid4().hex

    logout = requests.post(
        server.url + "/auth/logout",
        headers={**bearer(access), "X-Request-ID": f"{run}-logout"},
        timeout=TIMEOUT,
    )
    assert logout.status_code == 200, logout.text
    logout_worker = workers_by_request_id(server, [f"{run}-logout"])[f"{run}-logout"]
    assert logout_worker is not None

    outcomes, other_workers = [], set()
    # The kernel may hand a run of dozens of connections to one worker, so ask
    # in batches of 30 until another worker than the one that logged out answered.
    for batch in range(10):
        request_ids = [f"{run}-{batch}-{i}" for i in range(30)]
        for request_id in request_ids:
            # A new connection each time, so the kernel hands it to any worker.
            response = requests.get(
                server.url + "/users/me",
                headers={**bearer(access), "Connection": "close", "X-Request-ID": request_id},
                timeout=TIMEOUT,
            )
            outcomes.append((response.status_code, _error_code(response)))
        workers = workers_by_request_id(server, request_ids)
        assert None not in workers.values(), workers
        other_workers |= set(workers.values()) - {logout_worker}
        if other_workers:
            break

    assert outcomes == [(401, "token_revoked")] * len(outcomes)
    assert other_workers, f"every request was answered by the logout's worker {logout_worker}"


def test_password_change_ends_sessions_started_with_the_old_password_meanwhile(gunicorn_server):
    """Logins racing a password change: every session they got must end with it."""
    url = gunicorn_server.url
    old, new = PASSWORD, "a completely different passphrase"
    register = requests.post(url + "/auth/register", timeout=TIMEOUT,
                             json={"email": "grace@example.com", "username": "grace", "password": old})
    assert register.status_code == 201
    owner = requests.post(url + "/auth/login", json={"username": "grace", "password": old}, timeout=TIMEOUT).json()
    stop = threading.Event()
    tokens = []

    def keep_logging_in():
        while not stop.is_set():
            response = requests.post(url + "/auth/login", json={"username": "grace", "password": old},
                                     timeout=TIMEOUT)
            if response.status_code == 200:
                tokens.append(response.json()["access_token"])

    with ThreadPoolExecutor(3) as pool:
        for _ in range(3):
            pool.submit(keep_logging_in)
        time.sleep(0.5)
        changed = requests.post(url + "/auth/password/change",
                                json={"current_password": old, "new_password": new},
                                headers={"Authorization": f"Bearer {owner['access_token']}"}, timeout=TIMEOUT)
        time.sleep(0.5)
        stop.set()
    assert changed.status_code == 200
    assert tokens, "no login got in before the change"
    survivors = [t for t in tokens if requests.get(url + "/users/me", timeout=TIMEOUT,
                                                   headers={"Authorization": f"Bearer {t}"}).status_code != 401]
    assert survivors == []
    new_pair = changed.json()
    assert requests.get(url + "/users/me", timeout=TIMEOUT,
                        headers={"Authorization": f"Bearer {new_pair['access_token']}"}).status_code == 200
