"""Accounts: registration, login, profile, password change, deletion."""

from flask import current_app
from sqlalchemy import func, or_, select
from sqlalchemy.exc import IntegrityError

from .. import errors
from ..extensions import db
from ..models import User, utcnow
from ..security import hash_password, needs_rehash, password_problems, verify_password
from . import recovery, sessions


def find_by_login(login: str) -> User | None:
    """The user whose username or email is ``login``, case-insensitively."""
    lowered = login.lower()
    return db.session.scalar(
        select(User).where(
            or_(func.lower(User.username) == lowered, func.lower(User.email) == lowered)
        )
    )


def _conflicts(email: str | None, username: str | None, exclude_id: int | None = None) -> dict:
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


def _commit_unique(email: str | None, username: str | None, exclude_id: int | None = None):
    """Commit, turning a uniqueness violation (also one lost to a concurrent
    request after our pre-check) into Conflict."""
    try:
        db.session.commit()
    except IntegrityError:
        db.session.rollback()
        details = _conflicts(email, username, exclude_id) or None
        raise errors.Conflict("The email or username is already taken.", details) from None


def register(email: str, username: str, password: str, full_name: str | None = None) -> User:
    """Create an account. Raises Forbidden when registration is closed,
    Conflict when the email or username is taken."""
    if not current_app.config["REGISTRATION_OPEN"]:
        raise errors.Forbidden("Registration is closed.")
    details = _conflicts(email, username)
    if details:
        raise errors.Conflict("The email or username is already taken.", details)
    user = User(
        email=email,
        username=username,
        full_name=full_name,
        password_hash=hash_password(password),
    )
    db.session.add(user)
    _commit_unique(email, username)
    current_app.logger.info("user registered", extra={"event": "register", "user_id": user.id})
    recovery.send_verification_email(user)
    return user


def login(username: str, password: str, user_agent: str | None, ip: str | None) -> dict:
    """Check credentials and start a session. Raises InvalidCredentials alike
    for an unknown user, a wrong password and a deactivated account."""
    user = find_by_login(username)
    if not verify_password(user.password_hash if user else None, password) or not user.is_active:
        current_app.logger.info("login failed", extra={"event": "login_failed"})
        raise errors.InvalidCredentials()
    # Only after the password is right, so this says nothing to a guesser.
    if current_app.config["REQUIRE_VERIFIED_EMAIL"] and not user.is_verified:
        raise errors.EmailNotVerified()
    if needs_rehash(user.password_hash):
        user.password_hash = hash_password(password)
    user.last_login_at = utcnow()
    session = sessions.start_session(user, user_agent, ip)
    db.session.commit()
    current_app.logger.info("login", extra={"event": "login", "user_id": user.id})
    return sessions.issue_token_pair(user, session.id, session.refresh_jti)


def _require_password(user: User, password: str | None, field: str) -> None:
    if not password:
        raise errors.ValidationFailed(details={field: ["Your current password is required."]})
    if not verify_password(user.password_hash, password):
        raise errors.ValidationFailed(details={field: ["Incorrect password."]})


def update_profile(user: User, current_password: str | None = None, **changes) -> User:
    """Apply ``full_name``, ``username`` and ``email`` changes. A new email needs
    the current password and is unverified again. Raises ValidationFailed,
    Conflict."""
    new_email = changes.get("email")
    email_changes = new_email is not None and new_email.lower() != user.email.lower()
    if email_changes:
        # Checked first, so the endpoint cannot probe which emails exist.
        _require_password(user, current_password, "current_password")
    details = _conflicts(new_email, changes.get("username"), exclude_id=user.id)
    if details:
        raise errors.Conflict("The email or username is already taken.", details)
    for field in ("full_name", "username", "email"):
        if field in changes:
            setattr(user, field, changes[field])
    if email_changes:
        user.is_verified = False
    _commit_unique(changes.get("email"), changes.get("username"), exclude_id=user.id)
    if email_changes:
        recovery.send_verification_email(user)
    return user


def change_password(
    user: User, current_password: str, new_password: str, user_agent=None, ip=None
) -> dict:
    """Set a new password, end every session and start a new one.
    Raises ValidationFailed for a wrong current or a weak new password."""
    _require_password(user, current_password, "current_password")
    problems = password_problems(new_password, username=user.username, email=user.email)
    if problems:
        raise errors.ValidationFailed(details={"new_password": problems})
    sessions.revoke_sessions(user, sessions.active_sessions(user), whole_user=True)
    user.password_hash = hash_password(new_password)
    recovery.void_tokens(user, recovery.PASSWORD_RESET)
    session = sessions.start_session(user, user_agent, ip)
    db.session.commit()
    current_app.logger.info("password changed", extra={"event": "password_change", "user_id": user.id})
    return sessions.issue_token_pair(user, session.id, session.refresh_jti)


def ensure_not_last_admin(user: User) -> None:
    """Raises Conflict when ``user`` is the last active admin."""
    if user.role != "admin" or not user.is_active:
        return
    admins = db.session.scalar(
        select(func.count(User.id)).where(User.role == "admin", User.is_active.is_(True))
    )
    if admins <= 1:
        raise errors.Conflict("The last active admin cannot be removed.")


def delete_account(user: User, password: str) -> None:
    """Delete the user's own account after checking the password; every token
    stops working. Raises ValidationFailed, Conflict (last admin)."""
    _require_password(user, password, "password")
    ensure_not_last_admin(user)
    sessions.revoke_sessions(user, sessions.active_sessions(user), whole_user=True)
    db.session.delete(user)
    db.session.commit()
    current_app.logger.info("account deleted", extra={"event": "account_delete", "user_id": user.id})
