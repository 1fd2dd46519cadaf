"""Token revocation: the one place that decides whether a token still counts.

A token is revoked when:

- its login session is marked (logout, a deleted session, a reused refresh
  token): ``revoke_sessions``;
- it was issued before its user's cut-off, which every token of the user so
  far falls under: ``revoke_user`` on logout-all, a password change or reset,
  and the admin changes ``changes_revoke`` names (a role change, a
  deactivation); ``revoke_deleted_user`` when the account is deleted;
- its account no longer allows it (gone, deactivated, an access token whose
  role claim is not the user's role, or issued before the cut-off the
  database holds): ``is_revoked_by_account``.

``is_revoked`` reads the marks in one round trip: an MGET of the session's mark
and the user key. Every key of a user shares the hash tag ``{u:ID}``, so that
stays one round trip on a Redis Cluster too.

Surviving a Redis that lost its data (API.md §7): the user key doubles as the
marker that the user's marks are in the store. It holds the cut-off ("0" for
none), is written only together with every mark the database knows of
(``rebuild_user``, run by the first check that misses it, and at login), and
lives at least as long as any token it covers, as do the marks. A missing user
key therefore means "unknown", never "not revoked": the check rebuilds that
user's marks from the database (``users.tokens_valid_after``, the sessions
ended whose tokens may still live) and then decides. The steady state stays one
round trip; the database is read only on a miss.

Writes: the store is written before any row and its errors are not caught (if
it is unreachable nothing is changed and the caller answers 503; a failed
commit afterwards leaves tokens refused rather than alive), and written again
once the row is committed (``init_app``), so a loss of Redis's data between
the two cannot hide a revocation from a rebuild that read the database before
the commit. docs/security.md says what this guarantees.
"""

import logging
import secrets
import time
from datetime import datetime, timedelta, timezone

import redis
from flask import current_app
from sqlalchemy import and_, bindparam, event, or_, select

from .extensions import Session, db, store
from .models import AuthSession, User, utcnow

log = logging.getLogger("authapi.revocation")

PENDING = "authapi_revocations"  # db.session.info: store writes to repeat after the commit
REBUILD_TRIES = 3
REBUILD_GUARD_TTL = 60


class RebuildInterrupted(redis.exceptions.RedisError):
    """Redis lost its data again while a user's marks were rebuilt (503)."""


def session_key(user_id, session_id) -> str:
    """The store key that marks one login session revoked."""
    return f"authapi:{{u:{user_id}}}:s:{session_id}"


def user_key(user_id) -> str:
    """The store key of a user's cut-off (tokens issued before it are revoked),
    present whenever the user's marks are."""
    return f"authapi:{{u:{user_id}}}:u"


def _guard_key(user_id, nonce: str) -> str:
    return f"authapi:{{u:{user_id}}}:r:{nonce}"


def is_revoked(claims: dict) -> bool:
    """Whether the token's session is marked or it predates its user's
    cut-off. Raises the store's errors (and RebuildInterrupted): callers must
    fail closed."""
    user_id = claims["sub"]
    session_mark, cutoff = store.get_many([session_key(user_id, claims["sid"]), user_key(user_id)])
    if session_mark is not None:
        return True
    if cutoff is None:
        ended, cutoff = rebuild_user(int(user_id))
        if claims["sid"] in ended:
            return True
    return claims["iat"] < int(cutoff)


def is_revoked_by_account(user, claims: dict) -> bool:
    """Whether the account behind a token (``None`` once deleted) refuses it."""
    if user is None or not user.is_active:
        return True
    # The database's copy of the cut-off, read with the user anyway: a Redis
    # that came back with older data (a lagging replica) cannot revive these.
    cutoff = _epoch(user.tokens_valid_after)
    if cutoff and claims["iat"] < cutoff:
        return True
    # A role change revokes tokens; this also refuses any token whose role
    # claim disagrees with the database, should a revocation ever be missed.
    return claims["type"] == "access" and claims["role"] != user.role


# The query form of is_revoked_by_account for a refresh token: a condition on
# the users row of its sub (the caller selects it) that holds exactly when
# that function says the account accepts the token; bind ACCOUNT_CUTOFF to
# account_cutoff(claims). Prepared once: a statement built per request cost
# more than its round trip.
ACCOUNT_CUTOFF = "account_cutoff"
_users = User.__table__.c
ACCOUNT_ACCEPTS = and_(_users.is_active.is_(True), or_(
    _users.tokens_valid_after.is_(None), _users.tokens_valid_after < bindparam(ACCOUNT_CUTOFF)
))


def account_cutoff(claims: dict) -> datetime:
    """The bound value of ACCOUNT_ACCEPTS for ``claims``: iat < the cut-off's
    whole seconds refuses, so a cut-off before iat + 1 accepts."""
    return datetime.fromtimestamp(int(claims["iat"]) + 1, timezone.utc)


def changes_revoke(changed: dict) -> bool:
    """Whether these changes of an account's fields revoke its tokens: a new
    role (the claim would lie) or a deactivation."""
    return "role" in changed or changed.get("is_active") is False


def tokens_expire_by(expires_at: datetime) -> datetime:
    """When every token of a session ending at ``expires_at`` has expired: its
    refresh tokens by then, its access tokens (issued at the latest then)
    up to ACCESS_TOKEN_TTL later, which may exceed REFRESH_TOKEN_TTL."""
    return expires_at + timedelta(seconds=current_app.config["ACCESS_TOKEN_TTL"])


def live_sessions_expire_after(now: datetime) -> datetime:
    """A session whose ``expires_at`` is after this may still have a token
    that works at ``now`` (the query form of ``tokens_expire_by``)."""
    return now - timedelta(seconds=current_app.config["ACCESS_TOKEN_TTL"])


def revoke_sessions(login_sessions) -> None:
    """End login sessions (AuthSession rows): their tokens are refused from now
    on. Sets ``revoked_at``, not committed. Raises the store's errors."""
    by_user = {}
    for login_session in login_sessions:
        by_user.setdefault(login_session.user_id, []).append(login_session)
    for user_id, own in by_user.items():
        _write_marks(user_id, own, cutoff=0)
    _set_revoked_at(login_sessions)


def revoke_user(user, login_sessions) -> None:
    """Refuse every token of ``user`` issued so far; ``login_sessions`` are its
    active sessions, which end (not committed). Raises the store's errors."""
    # iat has one-second resolution: tokens of this second that came before
    # the cut-off are caught by their session mark, and tokens issued after it
    # (a new login in the same second) stay valid.
    cutoff = int(time.time())
    _write_marks(user.id, login_sessions, cutoff=cutoff)
    _set_revoked_at(login_sessions)
    user.tokens_valid_after = datetime.fromtimestamp(max(cutoff, _epoch(user.tokens_valid_after)), timezone.utc)


def revoke_deleted_user(user_id: int, login_sessions) -> None:
    """``revoke_user`` for an account being deleted: its rows go with it, the
    store's marks outlive them (and a rebuild treats a missing user as
    revoked). Raises the store's errors."""
    _write_marks(user_id, login_sessions, cutoff=int(time.time()))


def track_user(user_id: int) -> None:
    """Before issuing a user new tokens: make sure the user key is there (and
    lives as long as they can), so that checking them needs no rebuild.
    Raises the store's errors."""
    if store.write_marks(user_key(user_id), [], 0, _cutoff_ttl()) == "":
        rebuild_user(user_id)


def rebuild_user(user_id: int) -> tuple[set[str], str]:
    """Write a user's marks and user key from the database. Returns the ids
    of the sessions ended whose tokens may live, and the cut-off the store
    now holds. Raises the store's errors, RebuildInterrupted."""
    for _ in range(REBUILD_TRIES):
        # The guard is written before the database is read: if Redis loses its
        # data in between, the guard goes with it and nothing is written from
        # what may be a read older than the loss. Each rebuild has its own, so
        # concurrent ones do not spoil each other.
        guard = _guard_key(user_id, secrets.token_hex(8))
        store.set_many([(guard, "1", REBUILD_GUARD_TTL)])
        cutoff, ended = _read_database(user_id)
        marks = [(session_key(user_id, sid), _mark_ttl(expires_at)) for sid, expires_at in ended]
        held = store.write_marks(user_key(user_id), marks, cutoff, _cutoff_ttl(), create=True, guard=guard)
        if held is not None:
            log.info("revocation marks rebuilt", extra={"event": "revocation_rebuilt", "user_id": user_id})
            return {sid for sid, _ in ended}, held
    raise RebuildInterrupted("Redis lost its data during the rebuild")


def _read_database(user_id: int) -> tuple[int, list]:
    """The user's cut-off (now for a user gone or deactivated) and the
    (id, expires_at) of its ended sessions whose tokens may still live: one
    query."""
    ended_and_live = and_(
        AuthSession.user_id == User.id,
        AuthSession.revoked_at.is_not(None),
        AuthSession.expires_at > live_sessions_expire_after(utcnow()),
    )
    with db.session.no_autoflush:
        rows = db.session.execute(
            select(User.is_active, User.tokens_valid_after, AuthSession.id, AuthSession.expires_at)
            .select_from(User)
            .outerjoin(AuthSession, ended_and_live)
            .where(User.id == user_id)
        ).all()
    ended = [(row.id, row.expires_at) for row in rows if row.id is not None]
    if not rows or not rows[0].is_active:
        # Gone or deactivated: no token of it may work.
        return int(time.time()), ended
    return _epoch(rows[0].tokens_valid_after), ended


def _epoch(moment: datetime | None) -> int:
    return int(moment.timestamp()) if moment is not None else 0


def _cutoff_ttl() -> int:
    config = current_app.config
    return max(config["ACCESS_TOKEN_TTL"], config["REFRESH_TOKEN_TTL"]) + 1


def _mark_ttl(expires_at: datetime) -> float:
    return (tokens_expire_by(expires_at) - utcnow()).total_seconds() + 1


def _set_revoked_at(login_sessions) -> None:
    now = utcnow()
    for login_session in login_sessions:
        if login_session.revoked_at is None:
            login_session.revoked_at = now


def _write_marks(user_id: int, login_sessions, *, cutoff: int) -> None:
    now = utcnow()
    marks = [
        (session_key(user_id, s.id), _mark_ttl(s.expires_at))
        for s in login_sessions
        if tokens_expire_by(s.expires_at) > now
    ]
    # Never creates the user key: a missing one means "rebuild", and only a
    # rebuild knows every mark that must come with it.
    write = (user_key(user_id), marks, cutoff, _cutoff_ttl())
    store.write_marks(*write)
    db.session.info.setdefault(PENDING, []).append(write)


def _write_again(session) -> None:
    writes = session.info.pop(PENDING, [])
    try:
        for write in writes:
            store.write_marks(*write)
    except redis.exceptions.RedisError as error:
        # The change is committed and the marks were written before it; if
        # Redis lost them since, the next check rebuilds them from the rows.
        log.warning("revocation marks not written again after the commit: %s", type(error).__name__)


def _forget(session) -> None:
    session.info.pop(PENDING, None)


def init_app(app) -> None:
    """Write each revocation's marks again once its rows are committed."""
    if not event.contains(Session, "after_commit", _write_again):
        event.listen(Session, "after_commit", _write_again)
        event.listen(Session, "after_rollback", _forget)
