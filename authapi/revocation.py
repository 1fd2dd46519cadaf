"""Token revocation records in the shared store.

A token is revoked when its session is marked, or when it was issued before the
user's cut-off. Both keys of a user share the hash tag ``{u:ID}`` so that the
single MGET of ``is_revoked`` stays one round trip on a Redis Cluster too.
Marks live no longer than the tokens they cover.
"""

import time
from datetime import datetime

from flask import current_app

from .extensions import token_store


def session_key(user_id, session_id) -> str:
    return f"authapi:{{u:{user_id}}}:s:{session_id}"


def user_key(user_id) -> str:
    return f"authapi:{{u:{user_id}}}:u"


def is_revoked(claims: dict) -> bool:
    """Raises the store's connection errors: callers must fail closed."""
    session_mark, cutoff = token_store.get_many(
        [session_key(claims["sub"], claims["sid"]), user_key(claims["sub"])]
    )
    if session_mark is not None:
        return True
    return cutoff is not None and claims["iat"] < int(cutoff)


def revoke_sessions(user_id: int, sessions, *, whole_user: bool = False) -> None:
    """Mark sessions (objects with ``id`` and ``expires_at``) revoked; with
    ``whole_user``, also every token of the user issued before this second.

    Tokens of a session never outlive its ``expires_at``, so that is the mark's
    life; a user-wide cut-off lives as long as the longest token can.
    """
    now = datetime.now().astimezone()
    entries = [
        (session_key(user_id, s.id), "1", (s.expires_at - now).total_seconds() + 1)
        for s in sessions
        if s.expires_at > now
    ]
    if whole_user:
        # iat has one-second resolution: tokens of this second that came before
        # the cut-off are caught by their session mark, and tokens issued after
        # it (a new login in the same second) stay valid.
        ttl = max(current_app.config["ACCESS_TOKEN_TTL"], current_app.config["REFRESH_TOKEN_TTL"])
        entries.append((user_key(user_id), str(int(time.time())), ttl))
    if entries:
        token_store.set_many(entries)
