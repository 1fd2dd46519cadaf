"""The caller's own account as ``GET /users/me`` reads it, on the hot path:
one prepared statement in autocommit rather than the ORM's load (the ORM's
load was a third of the request; docs/performance.md has the profile)."""

from functools import cache

import psycopg
from psycopg.rows import namedtuple_row
from sqlalchemy import bindparam, select

from .. import errors, revocation
from ..extensions import autocommit, db
from ..models import User

_users = User.__table__.c
# UserOut's fields (mfa_enabled is User.mfa_enabled's rule) and what
# revocation.is_revoked_by_account reads: the general path's user load.
OWN_ACCOUNT = select(
    _users.id, _users.email, _users.username, _users.full_name, _users.role, _users.is_active,
    _users.is_verified, _users.totp_enabled_at.is_not(None).label("mfa_enabled"), _users.created_at,
    _users.updated_at, _users.last_login_at, _users.tokens_valid_after,
).where(_users.id == bindparam("user_id"))


def own_account(claims):
    """The account behind an access token's claims (a row of OWN_ACCOUNT's
    columns), as the database holds it now (autocommit: whatever was
    committed before is seen). Raises TokenRevoked when the account refuses
    the token (gone, deactivated, issued before its cut-off, another role),
    as the general path's user load does."""
    with autocommit(db.engine).connect() as connection:
        user = _read(connection, {"user_id": int(claims["sub"])})
    if revocation.is_revoked_by_account(user, claims):
        raise errors.TokenRevoked()
    return user


def _read(connection, parameters):
    if connection.dialect.driver != "psycopg":
        return connection.execute(OWN_ACCOUNT, parameters).one_or_none()
    # On PostgreSQL the compiled statement goes to psycopg itself, through
    # SQLAlchemy's pooled connection: SQLAlchemy's execution and result
    # handling cost more than the query (279 against 161 us of CPU).
    try:
        cursor = connection.connection.driver_connection.cursor(row_factory=namedtuple_row)
        return cursor.execute(_compiled(connection.dialect), parameters, prepare=True).fetchone()
    except psycopg.Error:
        # Whatever went wrong (a connection lost), SQLAlchemy's execution
        # handles it as on every other path: its error (503), and a pool
        # renewed after a disconnect.
        return connection.execute(OWN_ACCOUNT, parameters).one_or_none()


@cache
def _compiled(dialect) -> str:
    return str(OWN_ACCOUNT.compile(dialect=dialect))
