"""Two-factor authentication (API.md §8): TOTP enrolment, recovery codes,
step-up codes, and the admin reset. The second login step is
services/logins.py's.

Every code a user types goes through ``accept_code``: a TOTP code is
accepted once (``UPDATE users ... WHERE totp_last_step < :step``, so of two
requests racing with one code one wins: PostgreSQL's row lock makes the
second re-read the row, SQLite has one writer), a recovery code is spent by
``UPDATE ... WHERE used_at IS NULL``. Both writes are in the request's
transaction: a request refused after them rolls them back, so nothing is spent.
Wrong codes count per user (authapi.lockout), at login and at every step-up.
"""

from datetime import timedelta

from flask import current_app
from sqlalchemy import delete, func, or_, select, update

from .. import errors, lockout, revocation, totp
from ..extensions import db
from ..models import RecoveryCode, User, utcnow
from . import accounts, events, passkeys, sessions

ENROLMENT_TTL = timedelta(minutes=10)
WRONG_CODE = "The code is wrong or was already used."
CODE_NEEDED = "A code from your authenticator app, or a recovery code, is required."


# ---------------------------------------------------------------- codes


def accept_code(user: User, code: str) -> bool:
    """Accept a TOTP code (once) or spend an unused recovery code of ``user``
    (recording ``mfa.recovery_code_used``). Writes in the current
    transaction; the caller commits."""
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
    spent = db.session.execute(
        update(RecoveryCode)
        .where(
            RecoveryCode.user_id == user.id,
            RecoveryCode.code_hash == totp.recovery_code_hash(normalised),
            RecoveryCode.used_at.is_(None),
        )
        .values(used_at=utcnow())
        .execution_options(synchronize_session=False)
    ).rowcount == 1
    if spent:
        events.record("mfa.recovery_code_used", user_id=user.id, actor_id=user.id,
                      data={"left": recovery_codes_left(user)})
    return spent


def require_code(user: User, code: str | None) -> None:
    """Check a code of a user whose TOTP is on (management, step-up).
    Raises ValidationFailed naming ``code``, RateLimited."""
    if not code:
        raise errors.ValidationFailed(details={"code": [CODE_NEEDED]})
    last_try = lockout.count_code_check(user.id)
    if not accept_code(user, code):
        current_app.logger.info("wrong second-factor code", extra={"event": "mfa_code_failed", "user_id": user.id})
        raise _wrong_code(user, last_try)
    lockout.clear_code_checks(user.id)


def _wrong_code(user: User, last_try: bool) -> errors.ValidationFailed:
    """The refusal of a wrong code; the lockout it starts is recorded."""
    if last_try:
        events.record_alone("lockout.started", user_id=user.id)
    return errors.ValidationFailed(details={"code": [WRONG_CODE]})


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


def recovery_codes_left(user: User) -> int:
    return db.session.scalar(
        select(func.count(RecoveryCode.id)).where(RecoveryCode.user_id == user.id, RecoveryCode.used_at.is_(None))
    )


def status(user: User) -> dict:
    return {"totp": user.mfa_enabled, "recovery_codes_left": recovery_codes_left(user),
            "passkeys": passkeys.count_passkeys(user)}


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
    last_try = lockout.count_code_check(user.id)
    normalised = totp.normalise_code(code)
    step = totp.matching_step(totp.decrypt(pending), normalised) if totp.is_totp_code(normalised) else None
    if step is None:
        raise _wrong_code(user, last_try)
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
    events.record("mfa.enabled", user_id=user.id)
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
    events.record("mfa.disabled", user_id=user.id)
    db.session.commit()
    current_app.logger.info("two-factor off", extra={"event": "mfa_disabled", "user_id": user.id})


def regenerate_recovery_codes(user: User, password: str, code: str) -> list[str]:
    """A new set of recovery codes. Raises as ``disable``."""
    _ensure_on(user)
    accounts.confirm_password(user, password, "password")
    require_code(user, code)
    codes = _replace_recovery_codes(user)
    events.record("mfa.recovery_codes_regenerated", user_id=user.id)
    db.session.commit()
    return codes


def reset(user: User, actor_id: int | None) -> None:
    """For a user who lost the device (admin API, CLI): TOTP off, recovery
    codes void, every session ends. ``mfa.disabled`` when TOTP was on, by
    ``actor_id`` (an admin, or None for the CLI)."""
    was_on = user.mfa_enabled
    _turn_off(user)
    revocation.revoke_user(user, sessions.active_sessions(user))
    if was_on:
        events.record("mfa.disabled", user_id=user.id, actor_id=actor_id)
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
