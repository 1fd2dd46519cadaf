"""Token revocation: the one place that decides whether a token still counts.

A token is revoked when:

- its login session is marked (logout, a deleted session, a reused refresh
  token): ``revoke_sessions``;
- it was issued before its user's cut-off, which every token of the user so
  far falls under: ``revoke_user`` on logout-all, a password change or reset,
  and the admin changes ``changes_revoke`` names (a role change, a
  deactivation); ``revoke_deleted_user`` when the account is deleted;
- its account no longer allows it (gone, deactivated, or an access token
  whose role claim is not the user's role): ``is_revoked_by_account``.

``is_revoked`` reads the marks in one round trip. Both keys of a user share the
hash tag ``{u:ID}`` so that its single MGET stays one round trip on a Redis
Cluster too. Marks live no longer than the tokens they cover.

The store is written before any row, and its errors are not caught: if it is
unreachable nothing is changed and the caller answers 503, and a failed
commit afterwards leaves tokens refused rather than alive.
"""

import time

from flask import current_app

from .extensions import store
from .models import utcnow


def session_key(user_id, session_id) -> str:
    """The store key that marks one login session revoked."""
    return f"authapi:{{u:{user_id}}}:s:{session_id}"


def user_key(user_id) -> str:
    """The store key of a user's cut-off: tokens issued before it are revoked."""
    return f"authapi:{{u:{user_id}}}:u"


def is_revoked(claims: dict) -> bool:
    """Whether the token's session is marked or it predates its user's
    cut-off. Raises the store's connection errors: callers must fail closed."""
    session_mark, cutoff = store.get_many(
        [session_key(claims["sub"], claims["sid"]), user_key(claims["sub"])]
    )
    if session_mark is not None:
        return True
    return cutoff is not None and claims["iat"] < int(cutoff)


def is_revoked_by_account(user, claims: dict) -> bool:
    """Whether the account behind a token (``None`` once deleted) refuses it."""
    if user is None or not user.is_active:
        return True
    # A role change revokes tokens; this also refuses any token whose role
    # claim disagrees with the database, should a revocation ever be missed.
    return claims["type"] == "access" and claims["role"] != user.role


def changes_revoke(changed: dict) -> bool:
    """Whether these changes of an account's fields revoke its tokens: a new
    role (the claim would lie) or a deactivation."""
    return "role" in changed or changed.get("is_active") is False


def revoke_sessions(login_sessions) -> None:
    """End login sessions (AuthSession rows): their tokens are refused from now
    on. Sets ``revoked_at``, not committed. Raises the store's errors."""
    _write_marks(login_sessions)
    _set_revoked_at(login_sessions)


def revoke_user(user, login_sessions) -> None:
    """Refuse every token of ``user`` issued so far; ``login_sessions`` are its
    active sessions, which end (not committed). Raises the store's errors."""
    _write_marks(login_sessions, cutoff_user_id=user.id)
    _set_revoked_at(login_sessions)


def revoke_deleted_user(user_id: int, login_sessions) -> None:
    """``revoke_user`` for an account being deleted: its session rows go with
    it, the store's marks outlive them. Raises the store's errors."""
    _write_marks(login_sessions, cutoff_user_id=user_id)


def _set_revoked_at(login_sessions) -> None:
    now = utcnow()
    for login_session in login_sessions:
        if login_session.revoked_at is None:
            login_session.revoked_at = now


def _write_marks(login_sessions, *, cutoff_user_id: int | None = None) -> None:
    # Tokens of a session never outlive its expires_at, so that is the mark's
    # life; a user's cut-off lives as long as the longest token can.
    now = utcnow()
    entries = [
        (session_key(s.user_id, s.id), "1", (s.expires_at - now).total_seconds() + 1)
        for s in login_sessions
        if s.expires_at > now
    ]
    if cutoff_user_id is not None:
        # iat has one-second resolution: tokens of this second that came before
        # the cut-off are caught by their session mark, and tokens issued after
        # it (a new login in the same second) stay valid.
        ttl = max(current_app.config["ACCESS_TOKEN_TTL"], current_app.config["REFRESH_TOKEN_TTL"])
        entries.append((user_key(cutoff_user_id), str(int(time.time())), ttl))
    if entries:
        store.set_many(entries)
