"""One-time tokens by email: password reset and address verification."""

import secrets
from datetime import timedelta

import redis
from flask import current_app
from sqlalchemy import delete, func, or_, select, update

from .. import errors, lockout, mail, ratelimit, revocation
from ..digests import digest
from ..extensions import db
from ..models import OneTimeToken, User, utcnow
from ..passwords import ensure_password_allowed, hash_password
from . import devices, events, sessions

PASSWORD_RESET = "password_reset"
EMAIL_VERIFY = "email_verify"

_TTL_SETTING = {PASSWORD_RESET: "PASSWORD_RESET_TTL", EMAIL_VERIFY: "EMAIL_VERIFY_TTL"}
_URL_SETTING = {PASSWORD_RESET: "PASSWORD_RESET_URL", EMAIL_VERIFY: "EMAIL_VERIFY_URL"}


def void_tokens(user: User, purpose: str) -> None:
    """Spend every unused token of this purpose (not committed)."""
    # No autoflush: the caller's pending changes (a new email, say) are written
    # by its own commit, where a uniqueness race is turned into a 409.
    with db.session.no_autoflush:
        _void_tokens(user, purpose)


def _void_tokens(user: User, purpose: str) -> None:
    db.session.execute(
        update(OneTimeToken)
        .where(
            OneTimeToken.user_id == user.id,
            OneTimeToken.purpose == purpose,
            OneTimeToken.used_at.is_(None),
        )
        .values(used_at=utcnow())
        .execution_options(synchronize_session=False)
    )


def issue_token(user: User, purpose: str) -> str:
    """A new token for ``user``; older unused ones of the purpose are void
    from now on. Committed."""
    # Lock the user's row first (PostgreSQL; SQLite has one writer anyway): two
    # concurrent requests would otherwise each void what was committed before
    # they started, then each insert, leaving two unused tokens.
    db.session.execute(select(User.id).where(User.id == user.id).with_for_update())
    void_tokens(user, purpose)
    token = secrets.token_urlsafe(32)
    db.session.add(
        OneTimeToken(
            user_id=user.id,
            purpose=purpose,
            token_hash=digest(token),
            email=user.email if purpose == EMAIL_VERIFY else None,
            expires_at=utcnow() + timedelta(seconds=current_app.config[_TTL_SETTING[purpose]]),
        )
    )
    db.session.commit()
    return token


def _link(purpose: str, token: str) -> str:
    # From configuration only, never from the request's Host header.
    return current_app.config[_URL_SETTING[purpose]].replace("{token}", token)


def _send_token_email(user_id: int, email: str, purpose: str) -> None:
    """Issue a token and mail its link. Runs in the background, so the account
    may have changed since the request: send only to the address asked for."""
    user = db.session.get(User, user_id)
    if user is None or not user.is_active or user.email.lower() != email.lower():
        return
    link = _link(purpose, issue_token(user, purpose))
    if purpose == PASSWORD_RESET:
        subject = "Reset your password"
        body = (
            f"Hello {user.username},\n\nTo choose a new password, open this link:\n\n{link}\n\n"
            f"It works once, for {current_app.config['PASSWORD_RESET_TTL'] // 60} minutes. "
            "If you did not ask for it, ignore this email: your password stays as it is.\n"
        )
    else:
        subject = "Confirm your email address"
        body = (
            f"Hello {user.username},\n\nTo confirm this address, open this link:\n\n{link}\n\n"
            f"It works once, for {current_app.config['EMAIL_VERIFY_TTL'] // 3600} hours.\n"
        )
    mail.deliver(mail.build_message(user.email, subject, body))


def send_verification_email(user: User) -> None:
    """Queue a verification email for the user's current address, unless one
    went there within ``EMAIL_RESEND_SECONDS`` (then nothing: the account change
    that asked for it is done, and the earlier link still verifies the address).

    After the caller's commit, so a store failure must not fail the request:
    it is logged and the email skipped (asked for again with verify/request)."""
    try:
        held_until = mail.reserve(user.email, EMAIL_VERIFY)
    except redis.RedisError:
        current_app.logger.warning("verification email skipped: store unavailable")
        return
    if held_until is None:
        mail.run_in_background(_send_token_email, user.id, user.email, EMAIL_VERIFY)


def request_verification(user: User) -> None:
    """Send a new verification email (also for a verified address: verifying
    it again is harmless, and the contract promises the email).

    Raises RateLimited while an earlier one to the address is within
    ``EMAIL_RESEND_SECONDS``, and the store's errors (503)."""
    held_until = mail.reserve(user.email, EMAIL_VERIFY)
    if held_until is not None:
        raise errors.RateLimited(
            retry_after=ratelimit.retry_after(held_until),
            message="A verification email was sent recently; try again later.",
        )
    mail.run_in_background(_send_token_email, user.id, user.email, EMAIL_VERIFY)


def _forgot_password_job(email: str) -> None:
    user = db.session.scalar(select(User).where(func.lower(User.email) == email.lower()))
    if user is not None:
        _send_token_email(user.id, user.email, PASSWORD_RESET)


def forgot_password(email: str) -> None:
    """Queue a reset email if an active account has this address and no reset
    email went to it within ``EMAIL_RESEND_SECONDS``.

    The address is claimed whether or not an account has it (one store
    operation); everything else, the look-up included, runs in the
    background: the answer takes the same time and says the same whether or
    not the account exists. Raises the store's errors (503)."""
    if mail.reserve(email, PASSWORD_RESET) is None:
        mail.run_in_background(_forgot_password_job, email)


def replace_password(user: User, new_password: str) -> None:
    """Set a new password, void reset tokens and end every session (not
    committed).

    The new hash is written, locking the user's row (SQLite: the database),
    before the sessions are read: a login racing with this either finds the
    new hash and fails (its compare-and-swap matches nothing), or committed its
    session first and has it ended here. Raises the store's errors (503).
    """
    new_hash = hash_password(new_password)  # the slow part, before the lock
    user.password_hash = new_hash
    db.session.flush()
    void_tokens(user, PASSWORD_RESET)
    revocation.revoke_user(user, sessions.active_sessions(user))


def _usable_token(token: str, purpose: str) -> OneTimeToken:
    now = utcnow()
    record = db.session.scalar(
        select(OneTimeToken).where(OneTimeToken.token_hash == digest(token))
    )
    if (
        record is None
        or record.purpose != purpose
        or record.used_at is not None
        or record.expires_at <= now
    ):
        raise _bad_token()
    return record


def _spend(record: OneTimeToken) -> None:
    """Mark the token used; of two concurrent uses only one passes."""
    result = db.session.execute(
        update(OneTimeToken)
        .where(OneTimeToken.id == record.id, OneTimeToken.used_at.is_(None))
        .values(used_at=utcnow())
        .execution_options(synchronize_session=False)
    )
    if result.rowcount != 1:
        db.session.rollback()
        raise _bad_token()


def _bad_token():
    return errors.ValidationFailed(
        details={"token": ["The token is invalid, expired or already used."]}
    )


def reset_password(token: str, new_password: str) -> None:
    """Set a new password with a reset token, ending every session.

    Raises ValidationFailed naming ``token`` (spent, expired, superseded,
    unknown or another purpose) or ``new_password`` (policy); a refused new
    password leaves the token usable.
    """
    record = _usable_token(token, PASSWORD_RESET)
    user = db.session.get(User, record.user_id)
    if user is None or not user.is_active:
        raise _bad_token()
    ensure_password_allowed(new_password, username=user.username, email=user.email, field="new_password")
    _spend(record)
    # Its revocation marks are written before the commit: a store failure up
    # to here changes nothing (503).
    replace_password(user, new_password)
    # Whoever held a device token with the old password starts again from
    # the username's lockout.
    devices.void_all(user)
    # The owner of the mailbox acts, with no token of the account.
    events.record("password.reset", user_id=user.id, actor_id=user.id)
    db.session.commit()
    current_app.logger.info("password reset", extra={"event": "password_reset", "user_id": user.id})
    try:
        # The owner proved control of the mailbox: a lockout a guesser caused ends.
        lockout.clear_logins(user.username, user.email)
    except redis.exceptions.RedisError as error:
        # The reset is done: a 503 now would tell the owner it failed.
        current_app.logger.warning(
            "lockout not cleared after a password reset: %s", type(error).__name__,
            extra={"event": "password_reset", "user_id": user.id},
        )


def verify_email(token: str) -> User:
    """Mark the address a verification token was sent to as verified.
    Raises ValidationFailed naming ``token``."""
    record = _usable_token(token, EMAIL_VERIFY)
    user = db.session.get(User, record.user_id)
    # A deactivated account is refused like a bad token, as reset refuses it.
    if user is None or not user.is_active or (record.email or "").lower() != user.email.lower():
        raise _bad_token()
    _spend(record)
    user.is_verified = True
    events.record("email.verified", user_id=user.id, actor_id=user.id)
    db.session.commit()
    return user


def purge_spent_tokens() -> int:
    """Delete expired and used one-time tokens. Returns how many."""
    now = utcnow()
    count = db.session.execute(
        delete(OneTimeToken).where(or_(OneTimeToken.expires_at <= now, OneTimeToken.used_at.is_not(None)))
    ).rowcount
    db.session.commit()
    return count
