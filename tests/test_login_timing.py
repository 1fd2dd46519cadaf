"""A failed login costs the same whoever it names (API.md §7): an unknown user,
an account whose hash was made with older, cheaper argon2 parameters (a dormant
account, never rehashed), and an inactive account, with a wrong or even the
right password. Measured through the app on PostgreSQL, as ratios of medians
taken in one interleaved run, so that a busy machine slows every case alike."""

import statistics
import time

import pytest
import sqlalchemy as sa
from argon2 import PasswordHasher

from authapi.extensions import db

from .conftest import PASSWORD

# The app's parameters, far costlier than the old ones the dormant accounts
# keep: without the equalisation an old hash checks ~50 times faster.
APP_ARGON2 = {"ARGON2_TIME_COST": "2", "ARGON2_MEMORY_COST": "32768", "ARGON2_PARALLELISM": "1"}
OLD_HASHER = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)
ROUNDS = 15
TOLERANCE = (0.8, 1.25)


@pytest.fixture(scope="session")
def database_url(postgres_url):
    return postgres_url


@pytest.fixture
def timed_app(make_app):
    # No lockout or rate limit in the way of the repeated failures.
    return make_app(LOCKOUT_THRESHOLD="1000000", **APP_ARGON2)


def make_account(app, client, username, *, old_hash=False, active=True):
    response = client.post(
        "/auth/register",
        json={"email": f"{username}@example.com", "username": username, "password": PASSWORD},
    )
    assert response.status_code == 201
    values = {"is_active": active}
    if old_hash:
        values["password_hash"] = OLD_HASHER.hash(PASSWORD)
    with app.app_context():
        db.session.execute(sa.text(
            "UPDATE users SET is_active = :is_active"
            + (", password_hash = :password_hash" if old_hash else "")
            + " WHERE username = :username"
        ), {**values, "username": username})
        db.session.commit()


def login_time(client, username, password) -> float:
    started = time.perf_counter()
    response = client.post("/auth/login", json={"username": username, "password": password})
    elapsed = time.perf_counter() - started
    assert response.status_code == 401, response.get_json()
    assert response.get_json()["error"]["code"] == "invalid_credentials"
    return elapsed


def stored_hash(app, username) -> str:
    with app.app_context():
        return db.session.scalar(sa.text("SELECT password_hash FROM users WHERE username = :u"), {"u": username})


def test_a_failed_login_costs_the_same_for_unknown_old_hash_and_inactive_accounts(timed_app):
    client = timed_app.test_client()
    make_account(timed_app, client, "current")
    make_account(timed_app, client, "dormant", old_hash=True)
    make_account(timed_app, client, "gone", old_hash=True, active=False)
    make_account(timed_app, client, "gonenew", active=False)
    cases = {
        "unknown user": ("nobody", "wrong password here"),
        "current hash, wrong password": ("current", "wrong password here"),
        "old hash, wrong password": ("dormant", "wrong password here"),
        "inactive, old hash, wrong password": ("gone", "wrong password here"),
        "inactive, old hash, right password": ("gone", PASSWORD),
        "inactive, current hash, right password": ("gonenew", PASSWORD),
    }
    for username, password in cases.values():  # warm up connections and caches
        login_time(client, username, password)

    times = {name: [] for name in cases}
    for _ in range(ROUNDS):
        for name, (username, password) in cases.items():
            times[name].append(login_time(client, username, password))

    medians = {name: statistics.median(values) for name, values in times.items()}
    baseline = medians["unknown user"]
    ratios = {name: round(median / baseline, 2) for name, median in medians.items()}
    print("median ms:", {name: round(m * 1000, 1) for name, m in medians.items()}, "ratios:", ratios)
    low, high = TOLERANCE
    assert all(low <= ratio <= high for ratio in ratios.values()), ratios
    # A refused login changes nothing: the inactive account keeps its old hash.
    assert stored_hash(timed_app, "gone").startswith("$argon2id$v=19$m=1024,t=1,p=1$")
