"""Two-factor authentication (API.md §8): TOTP enrolment, the second login
step, recovery codes, step-up codes, and the admin reset.

Every code a user types goes through ``_accept_code``: a TOTP code is
accepted once (``UPDATE users ... WHERE totp_last_step < :step``, so of two
requests racing with one code one wins: PostgreSQL's row lock makes the
second re-read the row, SQLite has one writer), a recovery code is spent by
``UPDATE ... WHERE used_at IS NULL``. Both writes are in the request's
transaction: a request refused after them rolls them back, so nothing is spent.
Wrong codes count per user (authapi.lockout), at login and at every step-up.

The second step's ``mfa_token`` lives in the shared store under its SHA-256
(300 s, at most ``MAX_CODES_PER_TOKEN`` codes, spent by its success). It does
no argon2 work: the password was checked by the first step, and the token
names the password hash it checked, so a password changed in between voids it.
"""

import hashlib
import json
import secrets
from datetime import timedelta

from flask import current_app
from sqlalchemy import delete, func, or_, select, update

from .. import errors, lockout, metrics, revocation, totp
from ..extensions import db, store
from ..models import RecoveryCode, User, utcnow
from ..tokens import MFA_AMR
from . import accounts, devices, passkeys, sessions

MFA_TOKEN_TTL = 300
MAX_CODES_PER_TOKEN = 5
ENROLMENT_TTL = timedelta(minutes=10)
WRONG_CODE = "The code is wrong or was already used."
CODE_NEEDED = "A code from your authenticator app, or a recovery code, is required."


# ---------------------------------------------------------------- codes


def _accept_code(user: User, code: str) -> bool:
    """Accept a TOTP code (once) or spend an unused recovery code of ``user``.
    Writes in the current transaction; the caller commits."""
    normalised = totp.normalise_code(code)
    if totp.is_totp_code(normalised):
        step = totp.matching_step(totp.decrypt(user.totp_secret), normalised)
        if step is None:
            return False
        return db.session.execute(
            update(User)
            .where(
                User.id == user.id,
                User.totp_enabled_at.is_not(None),
                or_(User.totp_last_step.is_(None), User.totp_last_step < step),
            )
            .values(totp_last_step=step)
            .execution_options(synchronize_session=False)
        ).rowcount == 1
    return db.session.execute(
        update(RecoveryCode)
        .where(
            RecoveryCode.user_id == user.id,
            RecoveryCode.code_hash == totp.recovery_code_hash(normalised),
            RecoveryCode.used_at.is_(None),
        )
        .values(used_at=utcnow())
        .execution_options(synchronize_session=False)
    ).rowcount == 1


def require_code(user: User, code: str | None) -> None:
    """Check a code of a user whose TOTP is on (management, step-up).
    Raises ValidationFailed naming ``code``, RateLimited."""
    if not code:
        raise errors.ValidationFailed(details={"code": [CODE_NEEDED]})
    lockout.count_code_check(user.id)
    if not _accept_code(user, code):
        current_app.logger.info("wrong second-factor code", extra={"event": "mfa_code_failed", "user_id": user.id})
        raise errors.ValidationFailed(details={"code": [WRONG_CODE]})
    lockout.clear_code_checks(user.id)


def step_up(user: User, code: str | None) -> None:
    """While TOTP is on, a sensitive change needs a code too (``require_code``)."""
    if user.mfa_enabled:
        require_code(user, code)


def _replace_recovery_codes(user: User) -> list[str]:
    """A new set of recovery codes (added, not committed); the old set is gone."""
    db.session.execute(delete(RecoveryCode).where(RecoveryCode.user_id == user.id))
    codes = totp.new_recovery_codes()
    db.session.add_all(RecoveryCode(user_id=user.id, code_hash=totp.recovery_code_hash(c)) for c in codes)
    return codes


def _ensure_on(user: User) -> None:
    if not user.mfa_enabled:
        raise errors.Conflict("Two-factor authentication is off.")


# ---------------------------------------------------------------- enrolment


def status(user: User) -> dict:
    left = db.session.scalar(
        select(func.count(RecoveryCode.id)).where(RecoveryCode.user_id == user.id, RecoveryCode.used_at.is_(None))
    )
    return {"totp": user.mfa_enabled, "recovery_codes_left": left, "passkeys": passkeys.count_passkeys(user)}


def start_setup(user: User, password: str) -> dict:
    """A pending enrolment (replacing any other) with a new secret. Raises
    Conflict when TOTP is on, ValidationFailed (``password``), RateLimited."""
    if user.mfa_enabled:
        raise errors.Conflict("Two-factor authentication is already on.")
    accounts.confirm_password(user, password, "password")
    secret = totp.new_secret()
    user.totp_pending_secret = totp.encrypt(secret)
    user.totp_pending_expires_at = utcnow() + ENROLMENT_TTL
    db.session.commit()
    uri = totp.provisioning_uri(secret, user.email)
    return {"secret": secret, "otpauth_uri": uri, "qr_svg": totp.qr_svg(uri)}


def confirm(user: User, code: str, session_id: str) -> list[str]:
    """Turn TOTP on with a first code of the pending secret; end the user's
    other sessions. Returns the recovery codes. Raises Conflict (nothing
    pending, or TOTP on), ValidationFailed (``code``), RateLimited."""
    pending = user.totp_pending_secret
    if user.mfa_enabled or pending is None or user.totp_pending_expires_at <= utcnow():
        raise errors.Conflict("No two-factor enrolment is pending: start one with /auth/mfa/totp/setup.")
    lockout.count_code_check(user.id)
    normalised = totp.normalise_code(code)
    step = totp.matching_step(totp.decrypt(pending), normalised) if totp.is_totp_code(normalised) else None
    if step is None:
        raise errors.ValidationFailed(details={"code": [WRONG_CODE]})
    lockout.clear_code_checks(user.id)
    # Only the enrolment we read: a setup or confirm that committed meanwhile wins.
    turned_on = db.session.execute(
        update(User)
        .where(User.id == user.id, User.totp_enabled_at.is_(None), User.totp_pending_secret == pending)
        .values(totp_secret=pending, totp_enabled_at=utcnow(), totp_last_step=step,
                totp_pending_secret=None, totp_pending_expires_at=None)
        .execution_options(synchronize_session=False)
    ).rowcount
    if turned_on != 1:
        db.session.rollback()
        raise errors.Conflict("No two-factor enrolment is pending: start one with /auth/mfa/totp/setup.")
    codes = _replace_recovery_codes(user)
    revocation.revoke_sessions([s for s in sessions.active_sessions(user) if s.id != session_id])
    db.session.commit()
    current_app.logger.info("two-factor on", extra={"event": "mfa_enabled", "user_id": user.id})
    return codes


def disable(user: User, password: str, code: str) -> None:
    """Turn TOTP off and void the recovery codes. Raises Conflict (TOTP off),
    ValidationFailed (``password``, ``code``), RateLimited."""
    _ensure_on(user)
    accounts.confirm_password(user, password, "password")
    require_code(user, code)
    _turn_off(user)
    db.session.commit()
    current_app.logger.info("two-factor off", extra={"event": "mfa_disabled", "user_id": user.id})


def regenerate_recovery_codes(user: User, password: str, code: str) -> list[str]:
    """A new set of recovery codes. Raises as ``disable``."""
    _ensure_on(user)
    accounts.confirm_password(user, password, "password")
    require_code(user, code)
    codes = _replace_recovery_codes(user)
    db.session.commit()
    return codes


def reset(user: User) -> None:
    """For a user who lost the device (admin API, CLI): TOTP off, recovery
    codes void, every session ends."""
    _turn_off(user)
    revocation.revoke_user(user, sessions.active_sessions(user))
    db.session.commit()
    current_app.logger.info("two-factor reset", extra={"event": "mfa_reset", "user_id": user.id})


def reencrypt_secrets() -> int:
    """Re-encrypt every stored TOTP secret, on or pending, under the first key
    of MFA_ENCRYPTION_KEYS, so the keys after it can be dropped (key rotation,
    docs/two-factor.md). All or nothing, in one transaction, the rows locked
    against a concurrent enrolment. Returns how many accounts it rewrote.
    Raises ServiceUnavailable when a secret opens under no configured key."""
    holders = db.session.scalars(
        select(User)
        .where(or_(User.totp_secret.is_not(None), User.totp_pending_secret.is_not(None)))
        .with_for_update()
    ).all()
    for user in holders:
        if user.totp_secret is not None:
            user.totp_secret = totp.reencrypt(user.totp_secret)
        if user.totp_pending_secret is not None:
            user.totp_pending_secret = totp.reencrypt(user.totp_pending_secret)
    db.session.commit()
    return len(holders)


def _turn_off(user: User) -> None:
    user.totp_secret = user.totp_enabled_at = user.totp_last_step = None
    user.totp_pending_secret = user.totp_pending_expires_at = None
    db.session.execute(delete(RecoveryCode).where(RecoveryCode.user_id == user.id))


# ---------------------------------------------------------------- the second login step


def _token_key(mfa_token: str) -> str:
    digest = hashlib.sha256(mfa_token.encode("utf-8", "surrogatepass")).hexdigest()
    return f"authapi:mfa:token:{digest}"


def _password_digest(user: User) -> str:
    # Which password the first step checked, without putting its hash in the store.
    return hashlib.sha256(user.password_hash.encode()).hexdigest()


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
    and a new device token. Raises TokenInvalid, InvalidCredentials (wrong
    code), RateLimited (the user's codes locked out)."""
    key = _token_key(mfa_token)
    user = _user_of_token(key)
    lockout.count_code_check(user.id)
    if not _accept_code(user, code):
        current_app.logger.info("second step failed", extra={"event": "login_failed", "user_id": user.id})
        raise errors.InvalidCredentials("Invalid code.")
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
    db.session.commit()
    store.delete(key)
    current_app.logger.info("login", extra={"event": "login", "user_id": user.id})
    return {**sessions.issue_for(user, login_session), "device_token": device_token}
