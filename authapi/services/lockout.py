"""Failed-login lockout per username (API.md §5: LOCKOUT_THRESHOLD, LOCKOUT_SECONDS).

Counted in the shared store under a hash of the lower-cased login as typed, so
an unknown username counts and locks exactly like a real one, and nothing in
the answer (status, body, headers, timing) tells them apart. Each failure keeps
the count alive for another ``LOCKOUT_SECONDS``; the failure that reaches the
threshold locks the login for ``LOCKOUT_SECONDS``, during which even the right
password gets 429. A successful login or a password reset clears it.

A username and an email address are counted apart: tying them together would
let a guesser confirm which email belongs to which username.

The store's errors are not caught: with Redis down a login answers 503 rather
than letting password guesses through uncounted (fail closed).

The same counter guards the current-password checks of a logged-in user
(password change, email change, account deletion), keyed by the user id, so a
stolen token cannot be used to guess the password.
"""

import hashlib
import math
import time

from flask import current_app

from .. import errors
from ..extensions import token_store


def _keys(login: str) -> tuple[str, str]:
    digest = hashlib.sha256(login.lower().encode()).hexdigest()
    return f"authapi:lockout:{digest}:n", f"authapi:lockout:{digest}:until"


def count_attempt(login: str, user_id: int | None = None) -> None:
    """Count an attempt for ``login`` before any password work; raises
    RateLimited (429 with Retry-After) while it is locked, or when this attempt
    is one past ``LOCKOUT_THRESHOLD`` consecutive failures (which locks it).

    Counting first makes the threshold exact under concurrency (the counter is
    atomic), and a store failure then stops the attempt before the password is
    checked, so a 503 says nothing about the password. A success ``clear``s.
    """
    config = current_app.config
    count_key, lock_key = _keys(login)
    _refuse_if_locked(lock_key)
    seconds = config["LOCKOUT_SECONDS"]
    if token_store.incr(count_key, seconds) <= config["LOCKOUT_THRESHOLD"]:
        # Look again: a concurrent attempt may have locked the login (and reset
        # the count) between our first look and our count.
        _refuse_if_locked(lock_key)
        return
    until = time.time() + seconds
    token_store.set_many([(lock_key, str(until), seconds)])
    token_store.delete(count_key)
    current_app.logger.warning(
        "login locked out after repeated failures", extra={"event": "lockout", "user_id": user_id}
    )
    raise _locked(until)


def _refuse_if_locked(lock_key: str) -> None:
    (locked_until,) = token_store.get_many([lock_key])
    if locked_until is not None:
        current_app.logger.info("login refused: locked out", extra={"event": "login_locked"})
        raise _locked(float(locked_until))


def _locked(until: float) -> errors.RateLimited:
    return errors.RateLimited(
        retry_after=max(math.ceil(until - time.time()), 1),
        message="Too many failed logins; try again later.",
    )


def clear(*logins: str) -> None:
    """Forget the failures and any lock of these logins."""
    keys = [key for login in logins if login for key in _keys(login)]
    if keys:
        token_store.delete(*keys)
