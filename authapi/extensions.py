"""Extension objects, created unbound and initialised by ``create_app``."""

from flask import current_app, has_request_context, request
from flask_cors import CORS
from flask_jwt_extended import JWTManager
from flask_migrate import Migrate
import flask_smorest
from flask_smorest import Api
from flask_sqlalchemy import SQLAlchemy
import flask_sqlalchemy.session
from sqlalchemy.orm import DeclarativeBase

from .store import SharedStore


class Base(DeclarativeBase):
    pass


READ_ONLY_MARK = "authapi_read_only"


def read_only(view):
    """Mark a view that changes nothing: its queries run in autocommit.

    Each query is then one round trip, with no BEGIN before it and no ROLLBACK
    after it, and psycopg keeps its prepared statements (a ROLLBACK clears
    them). A view must say so itself: guessing from the HTTP method would make
    a GET that writes silently lose its transaction. functools.wraps copies
    the mark through the decorators stacked above it.
    """
    setattr(view, READ_ONLY_MARK, True)
    return view


def serves_read_only_view() -> bool:
    """Whether the current request is routed to a view marked ``read_only``
    (HEAD is routed to the GET view; a preflight runs no query)."""
    if not has_request_context() or request.url_rule is None:
        return False
    view = current_app.view_functions.get(request.endpoint)
    return getattr(view, READ_ONLY_MARK, False)


class Session(flask_sqlalchemy.session.Session):
    """Reads of ``read_only`` views in autocommit; everything else keeps its
    transaction (the default: nothing is lost by a mark forgotten)."""

    def get_bind(self, *args, **kwargs):
        engine = super().get_bind(*args, **kwargs)
        if serves_read_only_view():
            return autocommit(engine)
        return engine


def autocommit(engine):
    """``engine`` in autocommit: each statement is one round trip and sees
    every commit made before it. One option engine per engine, sharing its pool."""
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
store = SharedStore()
cors = CORS()


class Blueprint(flask_smorest.Blueprint):
    # Login takes JSON or an OAuth2 form: one schema for both (docs.py lists
    # the form content type of http.FORM_ENDPOINTS beside JSON in the document).
    DEFAULT_LOCATION_CONTENT_TYPE_MAPPING = {
        **flask_smorest.Blueprint.DEFAULT_LOCATION_CONTENT_TYPE_MAPPING,
        "json_or_form": "application/json",
    }
