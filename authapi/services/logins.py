"""Logins: the password step, the second step of an account with TOTP on
(API.md §8), and the events of each outcome (API.md §10).

A login that starts a session records ``login.succeeded`` in the session's
transaction. A refused one records ``login.failed`` (never the typed name or
password: ``user_id`` is the account's, or null for a name that names none)
and commits it on its own, with ``lockout.started`` when its failure is the
one that reaches ``LOCKOUT_THRESHOLD`` (authapi.lockout). A Redis or database
failure (503) records nothing: the attempt was not judged.

The second step's ``mfa_token`` lives in the shared store under its SHA-256
(300 s, at most ``MAX_CODES_PER_TOKEN`` codes, spent by its success). It does
no argon2 work: the password was checked by the first step, and the token
names the password hash it checked, so a password changed in between voids it.
"""

import json
import secrets

from flask import current_app
from sqlalchemy import update
from sqlalchemy.orm.attributes import set_committed_value

from .. import errors, lockout, metrics, totp
from ..digests import digest
from ..extensions import db, store
from ..models import DeviceToken, User, utcnow
from ..passwords import hash_password, needs_rehash, verify_password
from ..tokens import MFA_AMR
from . import accounts, devices, events, mfa, sessions

MFA_TOKEN_TTL = 300
MAX_CODES_PER_TOKEN = 5


def _refused(user_id: int | None, reason: str, error: errors.APIError, lockout_started: bool = False):
    """Record a refused login (with the lockout it starts), commit, and
    return ``error`` to raise. What the attempt read is all it did: there is
    nothing of its own to roll back, and a void device token must stay void."""
    events.record("login.failed", user_id=user_id, actor_id=None, data={"reason": reason})
    if lockout_started:
        events.record("lockout.started", user_id=user_id, actor_id=None)
    db.session.commit()
    return error


def _succeeded(user: User, login_session, method: str) -> None:
    events.record("login.succeeded", user_id=user.id, actor_id=user.id,
                  data={"method": method, "session_id": login_session.id})


# ---------------------------------------------------------------- the password step


@metrics.count_login
def login(
    username: str, password: str, user_agent: str | None, ip: str | None,
    device_token: str | None = None,
) -> dict:
    """Check credentials and start a session; the pair also carries a device
    token (the one presented, when it was usable, else a new one). Raises
    InvalidCredentials alike for an unknown user, a wrong password and a
    deactivated account; RateLimited while ``username`` is locked out after
    repeated failures, unless a usable device token of the account came with
    the attempt (API.md §7); EmailNotVerified when REQUIRE_VERIFIED_EMAIL holds
    it back; MfaRequired, with the second step's token, when TOTP is on."""
    try:
        device, last_try = _count_login_attempt(username, device_token)
    except errors.RateLimited as locked:
        # Looked up after the refusal: the answer is the same either way.
        user = accounts.find_by_login(username)
        raise _refused(user.id if user else None, "locked", locked) from None
    user = accounts.find_by_login(username)
    password_right = verify_password(user.password_hash if user else None, password)
    if not password_right or not user.is_active:
        user_id = user.id if user else None
        current_app.logger.info("login failed", extra={"event": "login_failed", "user_id": user_id})
        if device is not None:
            last_try = _count_device_failure(device)
        reason = "inactive" if password_right else "invalid_credentials"
        raise _refused(user_id, reason, errors.InvalidCredentials(), last_try)
    if device is None:
        lockout.clear_logins(username, user.username, user.email)
    else:
        # Only the device's count: the owner's login from a known device does
        # not give whoever locked the username a fresh set of guesses.
        lockout.clear_device(device.token_hash)
    # Only after the password is right, so this says nothing to a guesser.
    if current_app.config["REQUIRE_VERIFIED_EMAIL"] and not user.is_verified:
        raise _refused(user.id, "email_not_verified", errors.EmailNotVerified())
    if user.mfa_enabled:
        # No session yet: POST /auth/login/mfa completes the login (and issues
        # the device token) once a code is right. The hash is brought up to
        # date now, when the password is at hand, so that the second step does
        # no argon2 work and such accounts are re-hashed too.
        _swap_passworddigest(user, password)
        db.session.commit()
        begin_second_step(user)
    _swap_passworddigest(user, password, last_login_at=utcnow())
    login_session = sessions.start_session(user, user_agent, ip)
    # The same device token again rather than a new row per login.
    device_token = device_token if device is not None else devices.issue(user)
    _succeeded(user, login_session, "password")
    db.session.commit()
    current_app.logger.info("login", extra={"event": "login", "user_id": user.id})
    pair = sessions.issue_for(user, login_session)
    return {**pair, "device_token": device_token}


def _swap_passworddigest(user: User, password: str, **values) -> None:
    """Store ``values`` and, when its parameters are outdated, a new hash of the
    password just verified against ``user.password_hash``.

    A compare-and-swap on the verified hash: the UPDATE locks the user's row
    (SQLite: the database) until the caller commits. A password change or
    reset that committed first makes it match nothing (InvalidCredentials,
    recorded), and one that comes after sees the new session and ends it."""
    verified_hash = user.password_hash
    new_hash = hash_password(password) if needs_rehash(verified_hash) else verified_hash
    if new_hash == verified_hash and not values:
        return
    updated = db.session.execute(
        update(User)
        .where(User.id == user.id, User.password_hash == verified_hash)
        .values(password_hash=new_hash, **values)
        .execution_options(synchronize_session=False)
    ).rowcount
    if updated != 1:
        db.session.rollback()
        raise _refused(user.id, "invalid_credentials", errors.InvalidCredentials())
    # The loaded row must say what is stored (the second step's token binds
    # to it), without marking it changed.
    set_committed_value(user, "password_hash", new_hash)


def _count_login_attempt(login: str, device_token: str | None) -> tuple[DeviceToken | None, bool]:
    """Count a login attempt before any password work: against the device
    token when it is a usable one of the account ``login`` names, else against
    ``login`` as typed. Returns the device token it was counted against (or
    None), and whether a failure of this attempt starts the login's lockout.
    Raises RateLimited.

    Without a usable device token the count comes before the account is looked
    up, so a locked login answers the same whether or not the account exists
    (the device token's look-up is by its hash, whatever ``login`` is).
    """
    device = devices.recognise(device_token, login)
    if device is not None and lockout.count_device_attempt(device.token_hash):
        return device, False
    return None, lockout.count_login_attempt(login)


def _count_device_failure(device: DeviceToken) -> bool:
    """After a failed login with a device token: void it once its failures in
    a row reach ``LOCKOUT_THRESHOLD``, so it cannot skip the lockout again.
    True when this failure voided it (its lockout starts)."""
    if not lockout.device_exhausted(device.token_hash):
        return False
    # Its count is left to expire: cleared now, a concurrent guess that
    # looked the token up before the void would be counted from zero.
    voided = devices.void(device)
    current_app.logger.warning(
        "device token voided after repeated failures",
        extra={"event": "device_token_voided", "user_id": device.user_id},
    )
    return voided


# ---------------------------------------------------------------- the second step


def _token_key(mfa_token: str) -> str:
    return f"authapi:mfa:token:{digest(mfa_token)}"


def _password_digest(user: User) -> str:
    # Which password the first step checked, without putting its hash in the store.
    return digest(user.password_hash)


def begin_second_step(user: User) -> None:
    """After the right password of an account with TOTP on: raises
    MfaRequired carrying a new mfa_token. Raises the store's errors (503)."""
    mfa_token = secrets.token_urlsafe(32)
    payload = {"user": user.id, "password": _password_digest(user), "exp": totp.now() + MFA_TOKEN_TTL}
    store.set_many([(_token_key(mfa_token), json.dumps(payload), MFA_TOKEN_TTL)])
    raise errors.MfaRequired(mfa_token, MFA_TOKEN_TTL)


def _user_of_token(key: str) -> User:
    """The user an mfa_token was issued to, counting this attempt against the
    token. Raises TokenInvalid (unknown, expired, exhausted, or the account
    changed since)."""
    (raw,) = store.get_many([key])
    payload = json.loads(raw) if raw else None
    if payload is None or payload["exp"] <= totp.now():
        raise errors.TokenInvalid()
    if store.incr(f"{key}:n", MFA_TOKEN_TTL) > MAX_CODES_PER_TOKEN:
        store.delete(key)
        raise errors.TokenInvalid()
    user = db.session.get(User, payload["user"])
    if user is None or not user.is_active or not user.mfa_enabled or _password_digest(user) != payload["password"]:
        raise errors.TokenInvalid()
    return user


@metrics.count_login
def complete_login(mfa_token: str, code: str, user_agent: str | None, ip: str | None) -> dict:
    """Trade an mfa_token and a code for a token pair (``amr`` pwd otp mfa)
    and a new device token. Raises TokenInvalid (no login event: the token
    names no attempt of its own), InvalidCredentials (wrong code),
    RateLimited (the user's codes locked out)."""
    key = _token_key(mfa_token)
    user = _user_of_token(key)
    try:
        last_try = lockout.count_code_check(user.id)
    except errors.RateLimited as locked:
        raise _refused(user.id, "locked", locked) from None
    if not mfa.accept_code(user, code):
        current_app.logger.info("second step failed", extra={"event": "login_failed", "user_id": user.id})
        raise _refused(user.id, "mfa_invalid", errors.InvalidCredentials("Invalid code."), last_try)
    lockout.clear_code_checks(user.id)
    # As the login's compare-and-swap: a password change or reset that
    # committed since the first step makes this match nothing.
    updated = db.session.execute(
        update(User)
        .where(User.id == user.id, User.password_hash == user.password_hash)
        .values(last_login_at=utcnow())
        .execution_options(synchronize_session=False)
    ).rowcount
    # The token is spent by the first success only (the claim is atomic).
    if updated != 1 or store.reserve(f"{key}:spent", "1", MFA_TOKEN_TTL) is not None:
        db.session.rollback()
        raise errors.TokenInvalid()
    login_session = sessions.start_session(user, user_agent, ip, MFA_AMR)
    device_token = devices.issue(user)
    _succeeded(user, login_session, "mfa")
    db.session.commit()
    store.delete(key)
    current_app.logger.info("login", extra={"event": "login", "user_id": user.id})
    return {**sessions.issue_for(user, login_session), "device_token": device_token}
