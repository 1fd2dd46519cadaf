"""Lockout after repeated failed password checks (API.md §5: LOCKOUT_THRESHOLD,
LOCKOUT_SECONDS). Every lockout key is built here.

Three kinds of counter, each under its own key prefix so that nothing a client
can type reaches another kind's keys:

- logins, ``authapi:lockout:login:<sha256 of the lower-cased login>``: counted
  as typed, so an unknown username counts and locks exactly like a real one,
  and nothing in the answer (status, body, headers, timing) tells them apart.
  A username and an email address are counted apart: tying them together would
  let a guesser confirm which email belongs to which username.
- current-password checks of a logged-in user (password change, email change,
  account deletion), ``authapi:lockout:password:<user id>``, so a stolen token
  cannot be used to guess the password.
- logins that present a valid device token of the account (API.md §7, OWASP's
  device cookie), ``authapi:lockout:device:<the device token's stored hash>`` (never reused,
  unlike a row id SQLite may hand out again after a purge): counted instead
  of the login's, so a guesser locking the username does not lock the owner
  out of a device it logged in from. ``LOCKOUT_THRESHOLD`` failures in a row
  void the device token (services/devices.py); the count lives as long as a
  device token can.
- second-factor codes of a user (the second login step and every step-up
  code, API.md §8), ``authapi:lockout:code:<user id>``: one count per user
  across mfa_tokens, so fresh mfa_tokens give no fresh guesses.

Each failure keeps the count alive for another ``LOCKOUT_SECONDS``; the failure
that reaches the threshold locks for ``LOCKOUT_SECONDS``, during which even the
right password gets 429. A success clears the count; a password reset clears
the logins of the account. Each ``count_*`` says whether its attempt is the one
that reaches the threshold, so that its failure, and only its, is recorded as
the start of a lockout (``lockout.started``, API.md §10).

The store's errors are not caught: with Redis down a login answers 503 rather
than letting password guesses through uncounted (fail closed).
"""

import time

from flask import current_app

from . import errors, ratelimit
from .digests import digest
from .extensions import store


def login_keys(login: str) -> tuple[str, str]:
    """The failure count and lock keys of a login as typed."""
    key = digest(login.lower())
    return f"authapi:lockout:login:{key}:n", f"authapi:lockout:login:{key}:until"


def password_check_keys(user_id: int) -> tuple[str, str]:
    """The failure count and lock keys of a user's current-password checks."""
    return f"authapi:lockout:password:{int(user_id)}:n", f"authapi:lockout:password:{int(user_id)}:until"


def code_check_keys(user_id: int) -> tuple[str, str]:
    """The failure count and lock keys of a user's second-factor codes."""
    return f"authapi:lockout:code:{int(user_id)}:n", f"authapi:lockout:code:{int(user_id)}:until"


def device_key(token_hash: str) -> str:
    """The failure count key of a device token, by its stored hash."""
    return f"authapi:lockout:device:{token_hash}:n"


def count_login_attempt(login: str) -> bool:
    """Count a login attempt before any password work: True when its failure
    starts a lockout. Raises RateLimited."""
    return _count_attempt(*login_keys(login), user_id=None)


def clear_logins(*logins: str) -> None:
    """Forget the failures and any lock of these logins."""
    _clear([key for login in logins if login for key in login_keys(login)])


def count_device_attempt(token_hash: str) -> bool:
    """Count a login attempt with a device token, before any password work.

    True while the attempt may skip the username's lockout: it is one of the
    first ``LOCKOUT_THRESHOLD`` since the device token's last success. The
    counter is atomic, so concurrent guesses with one device token get at most
    the threshold between them; the rest are counted as plain logins.
    """
    count = store.incr(device_key(token_hash), current_app.config["DEVICE_TOKEN_TTL"])
    return count <= current_app.config["LOCKOUT_THRESHOLD"]


def device_exhausted(token_hash: str) -> bool:
    """Whether the device token's failures in a row reached ``LOCKOUT_THRESHOLD``
    (call after a failure: it is then to be voided)."""
    (count,) = store.get_many([device_key(token_hash)])
    return count is not None and int(count) >= current_app.config["LOCKOUT_THRESHOLD"]


def clear_device(token_hash: str) -> None:
    """Forget the failures of a device token (its login succeeded)."""
    _clear([device_key(token_hash)])


def count_password_check(user_id: int) -> bool:
    """Count a check of a logged-in user's current password: True when its
    failure starts a lockout. Raises RateLimited."""
    return _count_attempt(*password_check_keys(user_id), user_id=user_id)


def clear_password_checks(user_id: int) -> None:
    """Forget the failed current-password checks of a user."""
    _clear(list(password_check_keys(user_id)))


def count_code_check(user_id: int) -> bool:
    """Count a second-factor code of a user before checking it: True when a
    wrong one starts a lockout. Raises RateLimited."""
    return _count_attempt(*code_check_keys(user_id), user_id=user_id)


def clear_code_checks(user_id: int) -> None:
    """Forget the wrong second-factor codes of a user (a code was right)."""
    _clear(list(code_check_keys(user_id)))


def _count_attempt(count_key: str, lock_key: str, user_id: int | None) -> bool:
    """Raises RateLimited (429 with Retry-After) while locked, or when this
    attempt is one past ``LOCKOUT_THRESHOLD`` consecutive failures (which locks).
    Else True when this attempt is the ``LOCKOUT_THRESHOLD``-th in a row: if it
    fails, the next is refused (the counter is atomic: one attempt alone sees it).

    Counting first makes the threshold exact under concurrency (the counter is
    atomic), and a store failure then stops the attempt before the password is
    checked, so a 503 says nothing about the password. A success clears.
    """
    config = current_app.config
    _refuse_if_locked(lock_key)
    seconds = config["LOCKOUT_SECONDS"]
    count = store.incr(count_key, seconds)
    if count <= config["LOCKOUT_THRESHOLD"]:
        # Look again: a concurrent attempt may have locked (and reset the
        # count) between our first look and our count.
        _refuse_if_locked(lock_key)
        return count == config["LOCKOUT_THRESHOLD"]
    until = time.time() + seconds
    store.set_many([(lock_key, str(until), seconds)])
    store.delete(count_key)
    current_app.logger.warning(
        "login locked out after repeated failures", extra={"event": "lockout", "user_id": user_id}
    )
    raise _locked(until)


def _refuse_if_locked(lock_key: str) -> None:
    (locked_until,) = store.get_many([lock_key])
    if locked_until is not None:
        current_app.logger.info("login refused: locked out", extra={"event": "login_locked"})
        raise _locked(float(locked_until))


def _locked(until: float) -> errors.RateLimited:
    return errors.RateLimited(
        retry_after=ratelimit.retry_after(until), message="Too many failed logins; try again later."
    )


def _clear(keys: list[str]) -> None:
    if keys:
        store.delete(*keys)
