"""The refresh case's queue of fresh refresh tokens: each the current token of
a login session of its own, made by authapi's own session service as a login
makes them (a login itself would spend minutes in argon2 for a queue this
long), in the bench process, on the bench's database and Redis."""

import sys
from functools import lru_cache

import sqlalchemy as sa

from servers import ROOT

sys.path.insert(0, str(ROOT))  # authapi, beside bench/

from authapi import create_app  # noqa: E402
from authapi.extensions import db  # noqa: E402
from authapi.models import User  # noqa: E402
from authapi.services import sessions  # noqa: E402


@lru_cache(maxsize=None)
def _app(env: tuple):
    # Quiet: its log lines would land in the bench's table.
    return create_app("production", environ={**dict(env), "LOG_LEVEL": "WARNING"})


def mint_refresh_tokens(env: dict, username: str, count: int) -> list[str]:
    """``count`` refresh tokens of ``username``, each of a new login session."""
    app = _app(tuple(sorted(env.items())))
    with app.app_context():
        user = db.session.scalar(sa.select(User).where(User.username == username))
        started = [sessions.start_session(user, "bench", "127.0.0.1") for _ in range(count)]
        db.session.commit()
        tokens = [sessions.issue_for(user, login_session)["refresh_token"] for login_session in started]
        db.session.remove()
    return tokens
