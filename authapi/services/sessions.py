"""Login sessions (AuthSession rows, one per login) and the token pairs they
issue: start, rotate, list, end.

"Session" in this module is always a login session; the database's unit of
work is ``db.session``. Ending one goes through ``authapi.revocation``.
"""

import uuid
from datetime import timedelta

from flask import current_app
from sqlalchemy import delete, select, update

from .. import errors, metrics, revocation
from ..extensions import db
from ..models import AuthSession, User, utcnow
from ..tokens import PASSWORD_AMR, UUID_PATTERN, amr_of, issue_token_pair
from . import events


def _new_id() -> str:
    return str(uuid.uuid4())


def _refresh_ttl() -> timedelta:
    return timedelta(seconds=current_app.config["REFRESH_TOKEN_TTL"])


def start_session(user: User, user_agent: str | None, ip: str | None, amr=PASSWORD_AMR) -> AuthSession:
    """Add a new login session for ``user``, whose login was made with the
    methods ``amr``, to ``db.session`` (not committed). Raises the store's
    errors (503)."""
    # The user key must be there for the new tokens' checks to need no rebuild.
    revocation.track_user(user.id)
    now = utcnow()
    login_session = AuthSession(
        id=_new_id(),
        user=user,
        refresh_jti=_new_id(),
        created_at=now,
        last_used_at=now,
        expires_at=now + _refresh_ttl(),
        user_agent=(user_agent or None) and user_agent[:255],
        ip=ip,
        amr=" ".join(amr),
    )
    db.session.add(login_session)
    return login_session


def issue_for(user: User, login_session: AuthSession) -> dict:
    """The token pair of a login session just started."""
    return issue_token_pair(user, login_session.id, login_session.refresh_jti, amr_of(login_session))


def _current_refresh_token(user: User, claims: dict, now) -> tuple:
    """The conditions under which a refresh token is accepted: the current
    one of its user's session, neither ended nor expired."""
    return (
        AuthSession.id == claims["sid"],
        AuthSession.user_id == user.id,
        AuthSession.refresh_jti == claims["jti"],
        AuthSession.revoked_at.is_(None),
        AuthSession.expires_at > now,
    )


def is_current_refresh_token(user: User, claims: dict) -> bool:
    """Whether ``rotate_refresh_token`` would accept this refresh token now
    (introspection asks: it reads, it does not spend). One SELECT."""
    found = db.session.scalar(select(AuthSession.id).where(*_current_refresh_token(user, claims, utcnow())))
    return found is not None


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
        .where(*_current_refresh_token(user, claims, now))
        .values(refresh_jti=new_jti, last_used_at=now, expires_at=now + _refresh_ttl())
        # The session's own amr, in the same statement: a refresh keeps how
        # its login was made.
        .returning(AuthSession.amr)
        .execution_options(synchronize_session=False)
    )
    amr = result.scalar_one_or_none()
    if amr is not None:
        db.session.commit()
        return issue_token_pair(user, claims["sid"], new_jti, amr.split())
    db.session.rollback()

    login_session = db.session.get(AuthSession, claims["sid"])
    if login_session is None or login_session.user_id != user.id or not login_session.is_active_at(now):
        raise errors.TokenRevoked()
    # The session is alive but this token is not its current one: it was spent
    # before, so someone holds a copy. End the session for both holders.
    current_app.logger.warning(
        "refresh token reuse detected", extra={"event": "refresh_reuse", "user_id": user.id}
    )
    metrics.REFRESH_REUSE.inc()
    revocation.revoke_sessions([login_session])
    events.record("session.reuse_detected", user_id=user.id, data={"session_id": login_session.id})
    db.session.commit()
    raise errors.TokenReused()


def active_sessions(user: User) -> list[AuthSession]:
    """The user's login sessions that are neither ended nor expired, newest first."""
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
    """``active_sessions``, each with ``current`` telling whether it is the caller's."""
    login_sessions = active_sessions(user)
    for login_session in login_sessions:
        login_session.current = login_session.id == current_session_id
    return login_sessions


def end_session(user: User, session_id: str, reason: str = "deleted") -> None:
    """Revoke one of the user's login sessions whose tokens may still work;
    ``session.ended`` says why (``logout`` or ``deleted``). Raises NotFound
    for an unknown, ended, fully expired or foreign session; the store's
    errors (503)."""
    # Only a well-formed id reaches the database (PostgreSQL refuses NUL in text).
    login_session = db.session.get(AuthSession, session_id) if UUID_PATTERN.match(session_id) else None
    if (
        login_session is None
        or login_session.user_id != user.id
        or login_session.revoked_at is not None
        # Past expires_at its access tokens may still work (ACCESS_TOKEN_TTL >
        # REFRESH_TOKEN_TTL): logging out must still end them.
        or revocation.tokens_expire_by(login_session.expires_at) <= utcnow()
    ):
        raise errors.NotFound("Session not found.")
    revocation.revoke_sessions([login_session])
    _record_ended([login_session], reason)
    db.session.commit()


def end_all_sessions(user: User) -> None:
    """Revoke every login session and every token issued to the user so far
    (``session.ended`` for each live one). Raises the store's errors (503)."""
    login_sessions = active_sessions(user)
    revocation.revoke_user(user, login_sessions)
    _record_ended(login_sessions, "logout_all")
    db.session.commit()
    current_app.logger.info("logged out everywhere", extra={"event": "logout_all", "user_id": user.id})


def _record_ended(login_sessions: list[AuthSession], reason: str) -> None:
    for login_session in login_sessions:
        events.record("session.ended", user_id=login_session.user_id,
                      data={"session_id": login_session.id, "reason": reason})


def purge_expired_sessions() -> int:
    """Delete the rows of login sessions whose every token has expired.
    Returns how many."""
    # Not at expires_at: an access token may outlive it, and until it expires
    # the row is what a revocation rebuild (and a logout) needs.
    latest = revocation.live_sessions_expire_after(utcnow())
    count = db.session.execute(delete(AuthSession).where(AuthSession.expires_at <= latest)).rowcount
    db.session.commit()
    return count
