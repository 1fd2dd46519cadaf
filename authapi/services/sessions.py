"""Login sessions (AuthSession rows, one per login) and the token pairs they
issue: start, rotate, list, end.

"Session" in this module is always a login session; the database's unit of
work is ``db.session``. Ending one goes through ``authapi.revocation``.
"""

import uuid
from datetime import timedelta

from flask import current_app
from sqlalchemy import bindparam, delete, func, select, update

from .. import errors, metrics, revocation
from ..extensions import db
from ..models import AuthSession, User, utcnow
from ..tokens import PASSWORD_AMR, UUID_PATTERN, Identity, amr_of, issue_token_pair
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


def _current_refresh_token(user_id: int, claims: dict, now) -> tuple:
    """The conditions under which a refresh token is accepted: the current
    one of its user's session, neither ended nor expired."""
    return (
        AuthSession.id == claims["sid"],
        AuthSession.user_id == user_id,
        AuthSession.refresh_jti == claims["jti"],
        AuthSession.revoked_at.is_(None),
        AuthSession.expires_at > now,
    )


def is_current_refresh_token(user: User, claims: dict) -> bool:
    """Whether ``rotate_refresh_token`` would accept this refresh token now
    (introspection asks: it reads, it does not spend). One SELECT."""
    found = db.session.scalar(select(AuthSession.id).where(*_current_refresh_token(user.id, claims, utcnow())))
    return found is not None


_sessions, _users = AuthSession.__table__.c, User.__table__.c
# The user's role when the account accepts the token (role is never NULL).
_accepted_role = (
    select(_users.role).where(_users.id == _sessions.user_id, revocation.ACCOUNT_ACCEPTS).scalar_subquery()
)
# rotate_refresh_token's compare-and-swap, prepared once (building it per
# request cost twice its execution): _current_refresh_token's conditions and
# the account's, in one statement that returns what the new pair needs.
ROTATION = (
    update(AuthSession.__table__)
    .where(
        _sessions.id == bindparam("sid"),
        _sessions.user_id == bindparam("sub"),
        _sessions.refresh_jti == bindparam("jti"),
        _sessions.revoked_at.is_(None),
        _sessions.expires_at > bindparam("now"),
        _accepted_role.is_not(None),
    )
    .values(refresh_jti=bindparam("new_jti"), last_used_at=bindparam("now"), expires_at=bindparam("expires_at"))
    # The session's own amr: a refresh keeps how its login was made.
    .returning(_sessions.amr, _accepted_role.label("role"))
)
# On PostgreSQL the rotation's commit does not wait for its WAL to reach the
# disk: set_config(..., true) is SET LOCAL synchronous_commit = off, here in
# the statement's own round trip. What a database crash can then lose, and
# why that is acceptable for a rotation only: docs/performance.md.
ROTATION_WITHOUT_WAITING = ROTATION.returning(func.set_config("synchronous_commit", "off", True))


def rotate_refresh_token(claims: dict) -> dict:
    """Exchange a refresh token (its checked claims) for a new pair, spending it.

    The compare-and-swap on ``refresh_jti`` is one UPDATE, so of concurrent
    refreshes with one token exactly one wins, on PostgreSQL (row lock) and on
    SQLite (one writer at a time). The same statement holds the account to
    ``revocation.ACCOUNT_ACCEPTS`` and returns its role, so a refresh reads
    no user row first.

    Raises TokenRevoked when the account refuses the token or its session is
    gone, TokenReused (and ends the session) when the token was already spent.
    """
    now = utcnow()
    new_jti = _new_id()
    user_id = int(claims["sub"])
    rotation = ROTATION_WITHOUT_WAITING if db.engine.dialect.name == "postgresql" else ROTATION
    rotated = db.session.execute(rotation, {
        "sid": claims["sid"], "sub": user_id, "jti": claims["jti"], "now": now, "new_jti": new_jti,
        "expires_at": now + _refresh_ttl(), revocation.ACCOUNT_CUTOFF: revocation.account_cutoff(claims),
    }).one_or_none()
    if rotated is not None:
        db.session.commit()
        return issue_token_pair(Identity(user_id, rotated.role), claims["sid"], new_jti, rotated.amr.split())
    db.session.rollback()

    user = db.session.get(User, user_id)
    if revocation.is_revoked_by_account(user, claims):
        raise errors.TokenRevoked()
    login_session = db.session.get(AuthSession, claims["sid"])
    if login_session is None or login_session.user_id != user_id or not login_session.is_active_at(now):
        raise errors.TokenRevoked()
    # The session is alive but this token is not its current one: it was spent
    # before, so someone holds a copy. End the session for both holders.
    current_app.logger.warning(
        "refresh token reuse detected", extra={"event": "refresh_reuse", "user_id": user_id}
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
