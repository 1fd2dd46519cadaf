"""User administration, shared by the admin endpoints and the CLI.

``actor`` names who acts, for the log and the security events: a User, or a
string such as ``"cli"`` (an event's ``actor_id`` is then null).
"""

import logging
import math
from dataclasses import dataclass

from sqlalchemy import func, select

from .. import errors, revocation
from ..extensions import db
from ..models import User
from ..passwords import ensure_password_allowed
from . import accounts, events, mfa, recovery, sessions

log = logging.getLogger("authapi.admin")


def _audit(actor, action: str, target: User, **fields) -> None:
    who = f"admin {actor.id}" if isinstance(actor, User) else str(actor)
    described = ", ".join(f"{k}={v}" for k, v in fields.items())
    log.info(
        "%s: %s user %s%s", who, action, target.id, f" ({described})" if described else "",
        extra={
            "event": f"admin_{action.replace(' ', '_')}",
            "actor": who,
            "target_user_id": target.id,
            **fields,
        },
    )


@dataclass
class Page:
    items: list[User]
    page: int
    per_page: int
    total: int

    @property
    def pages(self) -> int:
        return math.ceil(self.total / self.per_page)


def list_users(page=1, per_page=20, q=None, role=None, is_active=None) -> Page:
    """Users in a stable order (by id), filtered and paginated."""
    query = select(User)
    if q:
        needle = q.lower()
        query = query.where(
            func.lower(User.email).contains(needle, autoescape=True)
            | func.lower(User.username).contains(needle, autoescape=True)
        )
    if role is not None:
        query = query.where(User.role == role)
    if is_active is not None:
        query = query.where(User.is_active.is_(is_active))
    total = db.session.scalar(select(func.count()).select_from(query.subquery()))
    items = db.session.scalars(
        query.order_by(User.id).limit(per_page).offset((page - 1) * per_page)
    ).all()
    return Page(list(items), page, per_page, total)


def get_user(user_id: int) -> User:
    """Raises NotFound."""
    user = db.session.get(User, user_id)
    if user is None:
        raise errors.NotFound("User not found.")
    return user


def get_user_by_email(email: str) -> User:
    """Raises NotFound."""
    user = db.session.scalar(select(User).where(func.lower(User.email) == email.lower()))
    if user is None:
        raise errors.NotFound(f"No user with email {email}.")
    return user


def create_user(actor, email, username, password, full_name=None, role="user", is_verified=False) -> User:
    """Create an account (registration rules, whether or not registration is
    open). Raises ValidationFailed (password policy), Conflict."""
    user = accounts.create_account(email, username, password, full_name, role, is_verified, created_by=actor)
    _audit(actor, "create", user, role=role)
    return user


def update_user(actor, user: User, **changes) -> User:
    """Apply ``full_name``, ``username``, ``email``, ``role``, ``is_active`` and
    ``is_verified``. The changes ``revocation.changes_revoke`` names (a role
    change, a deactivation) revoke the user's tokens at once; a new email is
    unverified unless ``is_verified`` says otherwise.
    Records ``user.updated`` (and ``email.changed``) with what changed.
    Raises Conflict (taken email or username, last active admin)."""
    before = accounts.account_fields(user)
    changed = {k: v for k, v in changes.items() if getattr(user, k) != v}
    if "email" in changed and changed["email"].lower() == user.email.lower():
        changed.pop("email")
        user.email = changes["email"]  # only the letter case differs
    accounts.ensure_unique(changed.get("email"), changed.get("username"), exclude_id=user.id)

    revoke = revocation.changes_revoke(changed)
    demoting = revoke and accounts.removing_admin(user)
    # Read before the changes are applied: a query after them would flush them,
    # and a uniqueness race must surface in commit_unique (409), not here.
    login_sessions = sessions.active_sessions(user) if revoke else []
    for field, value in changed.items():
        setattr(user, field, value)
    if "email" in changed:
        recovery.void_tokens(user, recovery.PASSWORD_RESET)
        if "is_verified" not in changes:
            user.is_verified = False
    if demoting:
        accounts.ensure_an_admin_remains()
    if revoke:
        # After the checks: a refused change must not end anyone's sessions.
        revocation.revoke_user(user, login_sessions)
    accounts.record_update(user, before, actor_id=accounts.actor_id_of(actor))
    accounts.commit_unique(changed.get("email"), changed.get("username"), exclude_id=user.id)
    if changed:
        _audit(actor, "update", user, fields=",".join(sorted(changed)))
    if "email" in changed and not user.is_verified:
        recovery.send_verification_email(user)
    return user


def set_password(actor, user: User, password: str) -> None:
    """Set a user's password; their sessions end. Raises ValidationFailed
    (password policy)."""
    ensure_password_allowed(password, username=user.username, email=user.email)
    recovery.replace_password(user, password)
    events.record("password.changed", user_id=user.id, actor_id=accounts.actor_id_of(actor))
    db.session.commit()
    _audit(actor, "set password", user)


def delete_user(actor, user: User) -> None:
    """Delete an account (``accounts.delete_account``), audited; its tokens stop
    working. Raises Conflict (last admin)."""
    accounts.delete_account(user, actor_id=accounts.actor_id_of(actor))
    _audit(actor, "delete", user)


def reset_mfa(actor, user: User) -> None:
    """Turn a user's two-factor authentication off (a lost device): recovery
    codes void, sessions end (``mfa.reset``), audited."""
    mfa.reset(user, actor_id=accounts.actor_id_of(actor))
    _audit(actor, "reset mfa", user)
