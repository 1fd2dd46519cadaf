"""Sessions and the token pairs they issue: start, rotate, list, revoke."""

import uuid
from datetime import timedelta

from flask import current_app
from flask_jwt_extended import create_access_token, create_refresh_token
from sqlalchemy import delete, select, update

from .. import errors, metrics, revocation
from ..extensions import db
from ..models import AuthSession, User, utcnow
from ..security import UUID_PATTERN


def _new_id() -> str:
    return str(uuid.uuid4())


def _refresh_ttl() -> timedelta:
    return timedelta(seconds=current_app.config["REFRESH_TOKEN_TTL"])


def start_session(user: User, user_agent: str | None, ip: str | None) -> AuthSession:
    """Add a new session for ``user`` to the database session (not committed)."""
    now = utcnow()
    session = AuthSession(
        id=_new_id(),
        user=user,
        refresh_jti=_new_id(),
        created_at=now,
        last_used_at=now,
        expires_at=now + _refresh_ttl(),
        user_agent=(user_agent or None) and user_agent[:255],
        ip=ip,
    )
    db.session.add(session)
    return session


def issue_token_pair(user: User, session_id: str, refresh_jti: str) -> dict:
    identity = str(user.id)
    config = current_app.config
    return {
        "access_token": create_access_token(
            identity, additional_claims={"role": user.role, "sid": session_id}
        ),
        # Our own jti, so the session row knows which refresh token is current.
        "refresh_token": create_refresh_token(
            identity, additional_claims={"sid": session_id, "jti": refresh_jti}
        ),
        "token_type": "Bearer",
        "expires_in": config["ACCESS_TOKEN_TTL"],
        "refresh_expires_in": config["REFRESH_TOKEN_TTL"],
    }


def rotate_refresh_token(user: User, claims: dict) -> dict:
    """Exchange a refresh token for a new pair, spending it.

    The compare-and-swap on ``refresh_jti`` is one UPDATE, so of concurrent
    refreshes with one token exactly one wins, on PostgreSQL (row lock) and on
    SQLite (one writer at a time).

    Raises TokenReused (and ends the session) when the token was already spent,
    TokenRevoked when its session is gone.
    """
    now = utcnow()
    new_jti = _new_id()
    result = db.session.execute(
        update(AuthSession)
        .where(
            AuthSession.id == claims["sid"],
            AuthSession.user_id == user.id,
            AuthSession.refresh_jti == claims["jti"],
            AuthSession.revoked_at.is_(None),
            AuthSession.expires_at > now,
        )
        .values(refresh_jti=new_jti, last_used_at=now, expires_at=now + _refresh_ttl())
        .execution_options(synchronize_session=False)
    )
    if result.rowcount == 1:
        db.session.commit()
        return issue_token_pair(user, claims["sid"], new_jti)
    db.session.rollback()

    session = db.session.get(AuthSession, claims["sid"])
    if session is None or session.user_id != user.id or not session.is_active_at(now):
        raise errors.TokenRevoked()
    # The session is alive but this token is not its current one: it was spent
    # before, so someone holds a copy. End the session for both holders.
    current_app.logger.warning(
        "refresh token reuse detected", extra={"event": "refresh_reuse", "user_id": user.id}
    )
    metrics.REFRESH_REUSE.inc()
    revoke_sessions(user, [session])
    db.session.commit()
    raise errors.TokenReused()


def active_sessions(user: User) -> list[AuthSession]:
    return list(
        db.session.scalars(
            select(AuthSession)
            .where(
                AuthSession.user_id == user.id,
                AuthSession.revoked_at.is_(None),
                AuthSession.expires_at > utcnow(),
            )
            .order_by(AuthSession.created_at.desc(), AuthSession.id)
        )
    )


def list_sessions(user: User, current_session_id: str) -> list[AuthSession]:
    sessions = active_sessions(user)
    for session in sessions:
        session.current = session.id == current_session_id
    return sessions


def revoke_sessions(user: User, sessions: list[AuthSession], *, whole_user: bool = False) -> None:
    """End sessions: their tokens are refused from now on (not committed).

    The store is written first: if it is unreachable nothing is changed and the
    caller answers 503, and a failed commit afterwards leaves tokens refused
    rather than alive.
    """
    revocation.revoke_sessions(user.id, sessions, whole_user=whole_user)
    now = utcnow()
    for session in sessions:
        if session.revoked_at is None:
            session.revoked_at = now


def end_session(user: User, session_id: str) -> None:
    """Revoke one of the user's active sessions. Raises NotFound for an
    unknown, ended or foreign session."""
    # Only a well-formed id reaches the database (PostgreSQL refuses NUL in text).
    session = db.session.get(AuthSession, session_id) if UUID_PATTERN.match(session_id) else None
    if session is None or session.user_id != user.id or not session.is_active_at(utcnow()):
        raise errors.NotFound("Session not found.")
    revoke_sessions(user, [session])
    db.session.commit()


def end_all_sessions(user: User) -> None:
    """Revoke every session and every token issued to the user so far."""
    revoke_sessions(user, active_sessions(user), whole_user=True)
    db.session.commit()
    current_app.logger.info("logged out everywhere", extra={"event": "logout_all", "user_id": user.id})


def purge_expired_sessions() -> int:
    """Delete the rows of expired sessions. Returns how many."""
    count = db.session.execute(delete(AuthSession).where(AuthSession.expires_at <= utcnow())).rowcount
    db.session.commit()
    return count
