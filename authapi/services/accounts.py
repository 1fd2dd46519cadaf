"""Accounts: registration, profile, password change, deletion."""

from flask import current_app
from sqlalchemy import func, or_, select, update
from sqlalchemy.exc import IntegrityError

from .. import errors, lockout, revocation
from ..extensions import db
from ..models import User
from ..passwords import ensure_password_allowed, hash_password, verify_password
from ..tokens import MFA_AMR, PASSWORD_AMR
from . import events, mfa, recovery, sessions

INCORRECT_PASSWORD = "Incorrect password."


def find_by_login(login: str) -> User | None:
    """The user whose username or email is ``login``, case-insensitively."""
    lowered = login.lower()
    return db.session.scalar(
        select(User).where(
            or_(func.lower(User.username) == lowered, func.lower(User.email) == lowered)
        )
    )


def check_unique(email: str | None, username: str | None, exclude_id: int | None = None) -> dict:
    """Which of ``email`` and ``username`` another account already uses, as
    error details. A friendly pre-check: the unique indexes are the real guard."""
    details = {}
    for field, column, value in (("email", User.email, email), ("username", User.username, username)):
        if value is None:
            continue
        query = select(User.id).where(func.lower(column) == value.lower())
        if exclude_id is not None:
            query = query.where(User.id != exclude_id)
        if db.session.scalar(query.limit(1)) is not None:
            details[field] = [f"This {field} is already taken."]
    return details


def ensure_unique(email: str | None, username: str | None, exclude_id: int | None = None) -> None:
    """Raises Conflict, naming the field, when another account uses ``email``
    or ``username``."""
    details = check_unique(email, username, exclude_id)
    if details:
        raise errors.Conflict("The email or username is already taken.", details)


def flush_unique(email: str | None, username: str | None, exclude_id: int | None = None):
    """Write the pending changes (not committed), turning a uniqueness
    violation (also one lost to a concurrent request after our pre-check)
    into Conflict, rolled back. The unique indexes are checked as each row is
    written, so the commit that follows cannot fail on them."""
    try:
        db.session.flush()
    except IntegrityError:
        db.session.rollback()
        details = check_unique(email, username, exclude_id) or None
        raise errors.Conflict("The email or username is already taken.", details) from None


def commit_unique(email: str | None, username: str | None, exclude_id: int | None = None):
    """``flush_unique``, then commit."""
    flush_unique(email, username, exclude_id)
    db.session.commit()


def register(email: str, username: str, password: str, full_name: str | None = None) -> User:
    """Create an account. Raises Forbidden when registration is closed,
    ValidationFailed for a password the policy refuses, Conflict when the
    email or username is taken."""
    if not current_app.config["REGISTRATION_OPEN"]:
        raise errors.Forbidden("Registration is closed.")
    user = create_account(email, username, password, full_name)
    current_app.logger.info("user registered", extra={"event": "register", "user_id": user.id})
    return user


def create_account(
    email: str, username: str, password: str, full_name: str | None = None,
    role: str = "user", is_verified: bool = False, *, created_by=None,
) -> User:
    """Insert an account and, unless it is verified, send the verification
    email. Records ``user.registered`` (by the user itself) or, with
    ``created_by`` (an admin, or the CLI as ``"cli"``), ``user.created``.
    Raises ValidationFailed (``password``) for a password the policy refuses,
    Conflict when the email or username is taken."""
    ensure_password_allowed(password, username=username, email=email)
    ensure_unique(email, username)
    user = User(
        email=email,
        username=username,
        full_name=full_name,
        password_hash=hash_password(password),
        role=role,
        is_verified=is_verified,
    )
    db.session.add(user)
    flush_unique(email, username)  # the event needs the new id
    if created_by is None:
        events.record("user.registered", user_id=user.id, actor_id=user.id)
    else:
        events.record("user.created", user_id=user.id, actor_id=actor_id_of(created_by), data={"role": role})
    db.session.commit()
    if not user.is_verified:
        recovery.send_verification_email(user)
    return user


def confirm_password(user: User, password: str | None, field: str) -> None:
    """Check a logged-in user's password, then hold it: counted like logins
    (lockout), so a stolen token cannot be used to guess it; and the user's row
    stays locked (SQLite: the database) until the commit, provided the password
    is still the one just checked. A change or reset committed since the check
    makes the hold match nothing: the password given is no longer the
    account's, so the answer is the 422 the request would have had after it
    (not 409: nothing the client could resolve and retry).
    Raises ValidationFailed naming ``field``, RateLimited."""
    if not password:
        raise errors.ValidationFailed(details={field: ["Your current password is required."]})
    last_try = lockout.count_password_check(user.id)
    verified_hash = user.password_hash
    if not verify_password(verified_hash, password):
        if last_try:
            events.record_alone("lockout.started", user_id=user.id)
        raise errors.ValidationFailed(details={field: [INCORRECT_PASSWORD]})
    lockout.clear_password_checks(user.id)
    held = db.session.execute(
        update(User)
        .where(User.id == user.id, User.password_hash == verified_hash)
        .values(password_hash=verified_hash)
        .execution_options(synchronize_session=False)
    ).rowcount
    if held != 1:
        db.session.rollback()
        raise errors.ValidationFailed(details={field: [INCORRECT_PASSWORD]})


def update_profile(user: User, current_password: str | None = None, code: str | None = None, **changes) -> User:
    """Apply ``full_name``, ``username`` and ``email`` changes. A new email needs
    the current password (and, while TOTP is on, a code) and is unverified
    again. Raises ValidationFailed, RateLimited (password or code checks locked
    out), Conflict."""
    new_email = changes.get("email")
    email_changes = new_email is not None and new_email.lower() != user.email.lower()
    if email_changes:
        # Checked first, so the endpoint cannot probe which emails exist.
        confirm_password(user, current_password, "current_password")
        mfa.step_up(user, code)
    ensure_unique(new_email, changes.get("username"), exclude_id=user.id)
    before = account_fields(user)
    for field in ("full_name", "username", "email"):
        if field in changes:
            setattr(user, field, changes[field])
    if email_changes:
        user.is_verified = False
        # A reset link mailed to the old address must not take the account back.
        recovery.void_tokens(user, recovery.PASSWORD_RESET)
    record_update(user, before)
    commit_unique(changes.get("email"), changes.get("username"), exclude_id=user.id)
    if email_changes:
        recovery.send_verification_email(user)
    return user


def change_password(
    user: User, current_password: str, new_password: str, code: str | None = None, user_agent=None, ip=None
) -> dict:
    """Set a new password, end every session and start a new one (its amr
    says whether a code was given). Raises ValidationFailed for a wrong current
    password, a weak new one, or a missing or wrong code while TOTP is on;
    RateLimited while the password or code checks are locked out."""
    # Held through the new password's hashing: a login of this user racing
    # with it waits that long, then fails on the new hash, as it must.
    confirm_password(user, current_password, "current_password")
    ensure_password_allowed(new_password, username=user.username, email=user.email, field="new_password")
    mfa.step_up(user, code)
    recovery.replace_password(user, new_password)
    amr = MFA_AMR if user.mfa_enabled else PASSWORD_AMR
    login_session = sessions.start_session(user, user_agent, ip, amr)
    events.record("password.changed", user_id=user.id)
    # The new session is a sign-in too: every session's start is in the trail.
    events.record("login.succeeded", user_id=user.id,
                  data={"method": "mfa" if user.mfa_enabled else "password", "session_id": login_session.id})
    db.session.commit()
    current_app.logger.info("password changed", extra={"event": "password_change", "user_id": user.id})
    return sessions.issue_for(user, login_session)


# What ``user.updated`` reports the changes of (API.md §10).
ACCOUNT_FIELDS = ("full_name", "username", "email", "role", "is_active", "is_verified")


def account_fields(user: User) -> dict:
    """The values ``record_update`` compares with, read before a change."""
    return {field: getattr(user, field) for field in ACCOUNT_FIELDS}


def record_update(user: User, before: dict, actor_id=events.FROM_REQUEST) -> None:
    """Record the changes of ``user`` since ``account_fields`` gave ``before``:
    ``user.updated`` with each changed field's old and new value, and
    ``email.changed`` when the address is another one (not only its case)."""
    changes = {field: [old, getattr(user, field)] for field, old in before.items() if getattr(user, field) != old}
    if changes:
        events.record("user.updated", user_id=user.id, actor_id=actor_id, data={"changes": changes})
    if before["email"].lower() != user.email.lower():
        events.record("email.changed", user_id=user.id, actor_id=actor_id,
                      data={"from": before["email"], "to": user.email})


def actor_id_of(actor) -> int | None:
    """The ``actor_id`` of an event for an admin service's ``actor``: the
    admin's id, or None for the CLI (``"cli"``)."""
    return actor.id if isinstance(actor, User) else None


def removing_admin(user: User) -> bool:
    """Whether ``user`` counts as an active admin, so changing it may leave none."""
    if user.role != "admin" or not user.is_active:
        return False
    # PostgreSQL: lock the active admins' rows so that two admins demoting or
    # deleting each other at once are serialised (SQLite serialises writers).
    db.session.execute(
        select(User.id).where(User.role == "admin", User.is_active.is_(True)).with_for_update()
    )
    return True


def ensure_an_admin_remains() -> None:
    """Call after changing an active admin: writes the change (inside the
    transaction), and raises Conflict, rolling back, if no active admin is left."""
    db.session.flush()
    admins = db.session.scalar(
        select(func.count(User.id)).where(User.role == "admin", User.is_active.is_(True))
    )
    if not admins:
        db.session.rollback()
        raise errors.Conflict("The last active admin cannot be demoted, deactivated or deleted.")


def delete_own_account(user: User, password: str, code: str | None = None) -> None:
    """Self-service deletion: ``delete_account`` after checking the user's
    password (and, while TOTP is on, a code). Raises ValidationFailed,
    RateLimited (password or code checks locked out), Conflict (last admin)."""
    confirm_password(user, password, "password")
    mfa.step_up(user, code)
    delete_account(user)
    current_app.logger.info("account deleted", extra={"event": "account_delete", "user_id": user.id})


def delete_account(user: User, actor_id=events.FROM_REQUEST) -> None:
    """Delete an account and revoke every token it holds: the one deletion,
    for the user, the admin API and the CLI (``actor_id`` None). Its events
    stay. Raises Conflict for the last active admin (nothing is changed)."""
    was_admin = removing_admin(user)
    login_sessions = sessions.active_sessions(user)
    db.session.delete(user)
    if was_admin:
        ensure_an_admin_remains()
    # Only once the change is known to be allowed: a refused one changes nothing.
    revocation.revoke_deleted_user(user.id, login_sessions)
    events.record("user.deleted", user_id=user.id, actor_id=actor_id)
    db.session.commit()
