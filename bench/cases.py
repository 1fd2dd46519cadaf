"""The cases, each declared once in CASES, and the targets that judge them.

Adding a case is one entry in CASES: its name, which app it drives, how one
run of it is made from the round's ``Setup``, and whether it is measured again
under gthread workers. Its row in the table, its key in results.json and its
place in the rounds follow from that entry; a target on it is one entry in
TARGETS.
"""

import json
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import requests

from argon2_limit import argon2_verify
from clients import Load, with_paced_calls
from refresh_queue import mint_refresh_tokens
from roundtrips import RoundTrips

PASSWORD = "correct horse battery staple"
READ_CONNECTIONS = 32  # the targets on p99 are stated at 32 connections
MIXED_LOGINS_PER_SECOND = 4
# Fresh refresh tokens queued per second of a refresh run: more than it can spend.
REFRESH_QUEUE_PER_SECOND = 1500

# The servers a case can drive: name -> (gunicorn app spec, served from bench/apps/).
APPS = {
    "authapi": ("wsgi:app", False),
    "ceiling": ("ceiling:app", True),
    "floors": ("floors:app", True),
}


@dataclass
class Setup:
    """What a round has ready for its cases: one worker class's servers, the
    environment they run with, authapi users made through the API (so the
    floors check a token authapi signed), and the round-trip counters."""

    urls: dict[str, str]
    client: Callable
    duration: int
    workdir: Path
    workers: int
    env: dict
    users: list[str]
    access_token: str
    password_hash: str
    round_trips: RoundTrips

    def load(self, app: str, load: Load) -> dict:
        """One run of ``load`` against ``app``: the client's figures and the
        round trips per request its server sent to Redis and PostgreSQL."""
        before = self.round_trips.snapshot()
        figures = self.client(self.urls[app], load, self.duration, self.workdir)
        figures.update(self.round_trips.per_request(before, figures["requests"]))
        return figures


@dataclass(frozen=True)
class Case:
    """One case: a load the round's client sends to ``app`` (built anew for
    each run), or a ``run`` of its own that returns the same figures."""

    name: str
    app: str | None  # the APPS entry it drives; None: no server
    load: Callable[[Setup], Load] | None = None
    run: Callable[[Setup], dict] | None = None
    gthread: bool = False  # measured again under gthread workers, for the worker-class choice
    needs: tuple[str, ...] = ()  # cases it is compared with, run whenever it is

    def run_once(self, setup: Setup) -> dict:
        if self.run is not None:
            return self.run(setup)
        return setup.load(self.app, self.load(setup))


# ---------------------------------------------------------------- preparing


def api(url, method, path, **kwargs):
    response = requests.request(method, url + path, timeout=30, **kwargs)
    response.raise_for_status()
    return response.json() if response.content else None


def register_users(url, count, prefix) -> list[str]:
    stamp = time.time_ns() % 10**9
    names = [f"{prefix}{stamp}_{i}" for i in range(count)]
    for name in names:
        api(url, "POST", "/auth/register", json={"email": f"{name}@example.com", "username": name,
                                                 "password": PASSWORD})
    return names


def login(url, username) -> dict:
    return api(url, "POST", "/auth/login", json={"username": username, "password": PASSWORD})


def bearer(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


JSON = {"Content-Type": "application/json"}


# ---------------------------------------------------------------- the runs


def me_load(setup: Setup) -> Load:
    return Load("/users/me", READ_CONNECTIONS, headers=bearer(setup.access_token))


def login_load(setup: Setup) -> Load:
    return Load("/auth/login", 4, "POST", JSON, json.dumps({"username": setup.users[1], "password": PASSWORD}))


def refresh_queue(setup: Setup) -> Load:
    # A fresh queue each run: the last run spent its tokens.
    tokens = mint_refresh_tokens(setup.env, setup.users[2], REFRESH_QUEUE_PER_SECOND * setup.duration)
    return Load("/auth/refresh", READ_CONNECTIONS, "POST", kind="queue", seeds=tokens)


REGISTER_BODY = json.dumps({"email": "{name}@example.com", "username": "{name}", "password": PASSWORD})


def mixed(setup: Setup) -> dict:
    """me at full load while logins arrive at a steady MIXED_LOGINS_PER_SECOND."""
    url = setup.urls["authapi"]
    username = register_users(url, 1, "mix")[0]

    def one_login() -> int:
        try:
            return requests.post(url + "/auth/login", json={"username": username, "password": PASSWORD},
                                 timeout=30).status_code
        except requests.RequestException:
            return 0

    figures, logins = with_paced_calls(lambda: setup.load("authapi", me_load(setup)), one_login,
                                       MIXED_LOGINS_PER_SECOND, setup.duration)
    login_ms = [ms for _, ms in logins]
    ok = sum(1 for status, _ in logins if status == 200)
    figures.update(logins=len(logins), logins_ok=ok,
                   login_p50_ms=statistics.median(login_ms) if login_ms else None,
                   login_max_ms=max(login_ms) if login_ms else None)
    figures["errors"] += len(logins) - ok
    return figures


def argon2_limit(setup: Setup) -> dict:
    return argon2_verify(setup.password_hash, PASSWORD, setup.duration, processes=setup.workers)


# In this order in each round and in the table.
CASES = [
    Case("ceiling", "ceiling", load=lambda s: Load("/", READ_CONNECTIONS), gthread=True),
    Case("me", "authapi", load=me_load, gthread=True),
    Case("me_floor", "floors", load=lambda s: Load("/me", READ_CONNECTIONS, headers=bearer(s.access_token))),
    Case("live", "authapi", load=lambda s: Load("/health/live", READ_CONNECTIONS)),
    Case("verify", "authapi", load=lambda s: Load("/auth/verify", READ_CONNECTIONS, headers=bearer(s.access_token))),
    Case("verify_floor", "floors",
         load=lambda s: Load("/verify", READ_CONNECTIONS, headers=bearer(s.access_token))),
    Case("login", "authapi", load=login_load, gthread=True),
    Case("argon2_verify", None, run=argon2_limit),
    Case("refresh", "authapi", load=refresh_queue),
    Case("register", "authapi",
         load=lambda s: Load("/auth/register", 4, "POST", JSON, REGISTER_BODY, kind="unique")),
    Case("mixed", "authapi", run=mixed, gthread=True, needs=("me",)),
]
CASE_NAMES = [case.name for case in CASES]
# The first decides the exit status; the others are measured for the choice of
# worker class, under the cases marked gthread, keyed "<case>_<class>".
WORKER_CLASSES = ("sync", "gthread")


def result_name(case_name: str, worker_class: str) -> str:
    return case_name if worker_class == WORKER_CLASSES[0] else f"{case_name}_{worker_class}"


def select(names: list[str], worker_class: str) -> list[Case]:
    """The cases of a round, in CASES order: those named, those they need,
    and under gthread only those measured for the worker-class choice."""
    unknown = set(names) - set(CASE_NAMES)
    if unknown:
        raise SystemExit(f"bench: unknown cases {sorted(unknown)}; known: {','.join(CASE_NAMES)}")
    wanted = set(names)
    for case in CASES:
        if case.name in wanted:
            wanted.update(case.needs)
    return [case for case in CASES
            if case.name in wanted and (worker_class == WORKER_CLASSES[0] or case.gthread)]


# ---------------------------------------------------------------- targets


@dataclass(frozen=True)
class Target:
    name: str
    description: str
    check: Callable[[dict], tuple]  # results -> (value, limit, met)
    required: bool = True  # False: reported, not part of the exit status


def ratio(case, base, limit):
    def check(r):
        value = r[case]["rps"] / r[base]["rps"]
        return round(value, 3), limit, value >= limit
    return check


def tail(case, limit):
    def check(r):
        value = r[case]["p99_ms"] / r[case]["p50_ms"]
        return round(value, 2), limit, value <= limit
    return check


def p99_ratio(case, base, limit):
    def check(r):
        value = r[case]["p99_ms"] / r[base]["p99_ms"]
        return round(value, 2), limit, value <= limit
    return check


# Issue 18's targets (and issue 8's that still stand). The info ones: how
# near me and verify run to their lean floors (bench/apps/floors.py), and the
# same ratios under gthread workers (gunicorn.conf.py's default) for the
# worker class.
TARGETS = [
    Target("me_vs_ceiling", "me req/s >= 0.30 x ceiling", ratio("me", "ceiling", 0.30)),
    Target("verify_vs_ceiling", "verify req/s >= 0.40 x ceiling", ratio("verify", "ceiling", 0.40)),
    Target("refresh_vs_ceiling", "refresh req/s >= 0.13 x ceiling (32 connections, a queue of tokens)",
           ratio("refresh", "ceiling", 0.13)),
    Target("me_tail", "me p99 <= 3 x me p50", tail("me", 3.0)),
    Target("verify_tail", "verify p99 <= 3 x verify p50", tail("verify", 3.0)),
    Target("refresh_tail", "refresh p99 <= 3 x refresh p50", tail("refresh", 3.0)),
    Target("login_vs_argon2", "login req/s >= 0.90 x argon2_verify", ratio("login", "argon2_verify", 0.90)),
    Target("mixed_throughput", "mixed: me req/s >= 0.5 x solo me", ratio("mixed", "me", 0.5)),
    Target("mixed_tail", "mixed: me p99 <= 3 x solo me p99", p99_ratio("mixed", "me", 3.0)),
    Target("worker_rss", "worker RSS <= 120 MB",
           lambda r: (r["worker_rss_mb"], 120.0, r["worker_rss_mb"] <= 120.0)),
    Target("me_vs_floor", "me req/s / me_floor req/s", ratio("me", "me_floor", 0.0), required=False),
    Target("verify_vs_floor", "verify req/s / verify_floor req/s", ratio("verify", "verify_floor", 0.0),
           required=False),
    Target("login_vs_argon2_gthread", "gthread: login req/s >= 0.90 x argon2_verify",
           ratio("login_gthread", "argon2_verify", 0.90), required=False),
    Target("mixed_throughput_gthread", "gthread: mixed me req/s >= 0.5 x solo me",
           ratio("mixed_gthread", "me_gthread", 0.5), required=False),
    Target("mixed_tail_gthread", "gthread: mixed me p99 <= 3 x solo me p99",
           p99_ratio("mixed_gthread", "me_gthread", 3.0), required=False),
]
