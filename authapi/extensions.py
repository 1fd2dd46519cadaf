"""Extension objects, created unbound and initialised by ``create_app``."""

from flask import current_app, has_request_context, request
from flask_cors import CORS
from flask_jwt_extended import JWTManager
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address
from flask_migrate import Migrate
import flask_smorest
from flask_smorest import Api
from flask_sqlalchemy import SQLAlchemy
import flask_sqlalchemy.session
from sqlalchemy.orm import DeclarativeBase

from .docs import ErrorOut
from .store import SharedStore


class Base(DeclarativeBase):
    pass


READ_ONLY_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


class Session(flask_sqlalchemy.session.Session):
    """Requests that change nothing read in autocommit.

    Each query is then one round trip, with no BEGIN before it and no ROLLBACK
    after it, and psycopg keeps its prepared statements (a ROLLBACK clears
    them). No GET, HEAD or OPTIONS view writes; writes keep their transaction.
    """

    def get_bind(self, *args, **kwargs):
        engine = super().get_bind(*args, **kwargs)
        if has_request_context() and request.method in READ_ONLY_METHODS:
            return _autocommit(engine)
        return engine


def _autocommit(engine):
    # One option engine per engine: it shares the engine's pool.
    try:
        return engine._authapi_autocommit
    except AttributeError:
        engine._authapi_autocommit = engine.execution_options(isolation_level="AUTOCOMMIT")
        return engine._authapi_autocommit


# expire_on_commit=False: a view answers from the objects it just committed
# without loading them again (a BEGIN, a SELECT per object and a ROLLBACK).
db = SQLAlchemy(model_class=Base, session_options={"class_": Session, "expire_on_commit": False})
migrate = Migrate()
jwt = JWTManager()
api = Api()
# Errors are documented in the one envelope of API.md §1, not flask-smorest's.
api.ERROR_SCHEMA = ErrorOut
store = SharedStore()
cors = CORS()
limiter = Limiter(
    # The client's address as ProxyFix leaves it: with PROXY_FIX_X_FOR=0 that is
    # the peer, and a client's own X-Forwarded-For changes nothing.
    key_func=get_remote_address,
    # Read per request, so each app uses its own setting (endpoints with a
    # limit of their own, from authapi.ratelimit.limit_from, replace it).
    default_limits=[lambda: current_app.config["RATELIMIT_DEFAULT"]],
    # Redis unreachable: count in this process until it is back (fail open).
    # Limits are a brake on abuse; token checks are what fail closed (503).
    in_memory_fallback_enabled=True,
    swallow_errors=True,
    headers_enabled=False,
)


class Blueprint(flask_smorest.Blueprint):
    # Login takes JSON or an OAuth2 form: one schema for both (docs.py lists
    # the form content type beside JSON in the document).
    DEFAULT_LOCATION_CONTENT_TYPE_MAPPING = {
        **flask_smorest.Blueprint.DEFAULT_LOCATION_CONTENT_TYPE_MAPPING,
        "json_or_form": "application/json",
    }
