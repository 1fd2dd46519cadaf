"""Account changes that race (issue 13, finding 9), on PostgreSQL with real
concurrency: two threads, each with its own connection, interleaved at a fixed
point so that the outcome does not depend on timing. And two smaller rules of
the same flows (finding 12): a deactivated account cannot verify its email,
and a reset that committed is not turned into a 503 by Redis failing after it.
"""

import threading

import pytest
import redis
from sqlalchemy import func, select

from authapi import errors, lockout
from authapi.extensions import db
from authapi.models import OneTimeToken, User
from authapi.passwords import verify_password
from authapi.services import accounts, recovery

from .conftest import PASSWORD

RESET_PASSWORD = "the owner's new passphrase"
ATTACKER_PASSWORD = "the attacker's own passphrase"


@pytest.fixture
def database_url(postgres_url):
    # PostgreSQL only: its row locks and READ COMMITTED snapshots are what
    # these races are about (SQLite has a single writer).
    return postgres_url


def create_user(app, **fields) -> int:
    with app.app_context():
        user = accounts.create_account("ada@example.com", "ada", PASSWORD, is_verified=True, **fields)
        return user.id


class Worker(threading.Thread):
    """Runs ``fn(user)`` in its own app context (its own database session and
    connection); keeps what it returned or raised."""

    def __init__(self, app, user_id, fn):
        super().__init__(daemon=True)
        self.app, self.user_id, self.fn = app, user_id, fn
        self.result = self.error = None

    def run(self):
        with self.app.app_context():
            try:
                self.result = self.fn(db.session.get(User, self.user_id))
            except Exception as exc:  # kept for the test to assert on
                self.error = exc


def unused_tokens(app, user_id, purpose) -> int:
    with app.app_context():
        return db.session.scalar(
            select(func.count(OneTimeToken.id)).where(
                OneTimeToken.user_id == user_id,
                OneTimeToken.purpose == purpose,
                OneTimeToken.used_at.is_(None),
            )
        )


@pytest.mark.parametrize("purpose", [recovery.PASSWORD_RESET, recovery.EMAIL_VERIFY])
def test_concurrent_token_requests_leave_exactly_one_usable_token(app, monkeypatch, purpose):
    user_id = create_user(app)
    # Each request waits, after voiding the older tokens, for the other to have
    # voided too (at most 1.5 s): without a lock both void before either
    # inserts, and both tokens stay usable.
    both_voided = threading.Barrier(2, timeout=1.5)
    original = recovery._void_tokens

    def void_then_wait(user, token_purpose):
        original(user, token_purpose)
        try:
            both_voided.wait()
        except threading.BrokenBarrierError:
            pass  # the other one is waiting for our lock: as it should

    monkeypatch.setattr(recovery, "_void_tokens", void_then_wait)
    workers = [Worker(app, user_id, lambda user: recovery.issue_token(user, purpose)) for _ in range(2)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=30)
    assert [worker.error for worker in workers] == [None, None]
    assert unused_tokens(app, user_id, purpose) == 1


def race_with_a_reset(app, monkeypatch, user_id, change):
    """Run ``change`` (which checks the current password) in a thread, and
    let a password reset commit between its check and its write. Returns the
    thread, finished."""
    with app.app_context():
        token = recovery.issue_token(db.session.get(User, user_id), recovery.PASSWORD_RESET)
    checked, reset_done = threading.Event(), threading.Event()

    def verify_then_wait(password_hash, password):
        matched = verify_password(password_hash, password)
        checked.set()
        reset_done.wait(timeout=10)
        return matched

    monkeypatch.setattr(accounts, "verify_password", verify_then_wait)
    worker = Worker(app, user_id, change)
    worker.start()
    assert checked.wait(timeout=10)
    with app.app_context():
        recovery.reset_password(token, RESET_PASSWORD)
    reset_done.set()
    worker.join(timeout=30)
    return worker


def assert_refused_naming_current_password(worker):
    assert isinstance(worker.error, errors.ValidationFailed), worker.error
    assert "current_password" in worker.error.details


def test_a_password_change_checked_before_a_reset_cannot_commit_after_it(app, monkeypatch):
    user_id = create_user(app)
    worker = race_with_a_reset(
        app, monkeypatch, user_id,
        lambda user: accounts.change_password(user, PASSWORD, ATTACKER_PASSWORD),
    )
    assert_refused_naming_current_password(worker)
    with app.app_context():
        password_hash = db.session.get(User, user_id).password_hash
        assert verify_password(password_hash, RESET_PASSWORD)


def test_an_email_change_checked_before_a_reset_cannot_commit_after_it(app, monkeypatch):
    user_id = create_user(app)
    worker = race_with_a_reset(
        app, monkeypatch, user_id,
        lambda user: accounts.update_profile(user, PASSWORD, email="mallory@example.com"),
    )
    assert_refused_naming_current_password(worker)
    with app.app_context():
        assert db.session.get(User, user_id).email == "ada@example.com"


def test_a_deletion_checked_before_a_reset_cannot_commit_after_it(app, monkeypatch):
    user_id = create_user(app)
    worker = race_with_a_reset(
        app, monkeypatch, user_id, lambda user: accounts.delete_own_account(user, PASSWORD)
    )
    assert isinstance(worker.error, errors.ValidationFailed), worker.error
    assert "password" in worker.error.details
    with app.app_context():
        assert db.session.get(User, user_id) is not None


def test_a_password_change_without_a_race_still_works(app):
    user_id = create_user(app)
    with app.app_context():
        pair = accounts.change_password(db.session.get(User, user_id), PASSWORD, ATTACKER_PASSWORD)
        assert pair["access_token"]
        assert verify_password(db.session.get(User, user_id).password_hash, ATTACKER_PASSWORD)


# ---------------------------------------------------------------- finding 12


def test_a_deactivated_account_cannot_verify_its_email(app, client):
    user_id = create_user(app)
    with app.app_context():
        user = db.session.get(User, user_id)
        token = recovery.issue_token(user, recovery.EMAIL_VERIFY)
        user.is_verified, user.is_active = False, False
        db.session.commit()
    response = client.post("/auth/email/verify", json={"token": token})
    assert response.status_code == 422
    assert "token" in response.get_json()["error"]["details"]
    with app.app_context():
        assert db.session.get(User, user_id).is_verified is False


def reset_token(app, user_id) -> str:
    with app.app_context():
        return recovery.issue_token(db.session.get(User, user_id), recovery.PASSWORD_RESET)


def password_is(app, user_id, password) -> bool:
    with app.app_context():
        return verify_password(db.session.get(User, user_id).password_hash, password)


def test_a_reset_that_committed_is_not_a_503_when_redis_fails_after_it(app, client, monkeypatch):
    user_id = create_user(app)
    token = reset_token(app, user_id)

    def redis_gone(*logins):
        raise redis.exceptions.ConnectionError("Redis went away")

    monkeypatch.setattr(lockout, "clear_logins", redis_gone)
    response = client.post("/auth/password/reset", json={"token": token, "new_password": RESET_PASSWORD})
    assert response.status_code == 200, response.get_json()
    assert password_is(app, user_id, RESET_PASSWORD)


def test_a_reset_is_a_503_that_changes_nothing_when_redis_fails_before_the_commit(app, client, monkeypatch):
    user_id = create_user(app)
    token = reset_token(app, user_id)

    def redis_gone(*args, **kwargs):
        raise redis.exceptions.ConnectionError("Redis went away")

    monkeypatch.setattr(app.extensions["authapi_store"], "write_marks", redis_gone)
    response = client.post("/auth/password/reset", json={"token": token, "new_password": RESET_PASSWORD})
    assert response.status_code == 503
    monkeypatch.undo()
    assert password_is(app, user_id, PASSWORD)
    # The token was not spent: the owner can try again.
    response = client.post("/auth/password/reset", json={"token": token, "new_password": RESET_PASSWORD})
    assert response.status_code == 200
