"""authapi: an authentication API. ``create_app`` wires the parts together."""

import logging
from pathlib import Path

from flask import Flask
from sqlalchemy import event
from sqlalchemy.exc import DBAPIError

from config import load_config

from . import (
    audit, auth, docs, health, http, keys, metrics, pages, passkeys, ratelimit, token_check, tokens, users, verify, webhooks,
)
from .cli import register_commands
from .errors import register_error_handlers
from .extensions import api, db, migrate, store
from .logs import configure_logging


def create_app(config_name: str | None = None, environ=None) -> Flask:
    """Build the app for ``config_name`` (default: ``AUTHAPI_ENV``), reading
    settings from ``environ`` (default: the process environment).

    Raises config.ConfigError for a configuration the environment refuses.
    """
    app = Flask(__name__)
    app.config.from_object(load_config(config_name, environ))
    configure_logging(app)
    register_extensions(app)
    register_blueprints(app)
    register_error_handlers(app)
    register_commands(app)
    return app


def register_extensions(app: Flask) -> None:
    register_database(app)
    tokens.init_app(app)
    keys.init_app(app)
    token_check.init_app(app)
    docs.init_app(app)
    metrics.init_app(app)
    store.init_app(app)
    webhooks.init_app(app)
    ratelimit.init_app(app)
    # After the limiter: its check runs before the request hooks read the body.
    http.init_app(app)


def register_database(app: Flask) -> None:
    db.init_app(app)
    # Teardowns run in reverse order: this one before Flask-SQLAlchemy's.
    app.teardown_appcontext(_end_db_session)
    migrate.init_app(app, db, directory=_migrations_directory())
    if app.config["SQLALCHEMY_DATABASE_URI"].startswith("sqlite"):
        with app.app_context():
            event.listen(db.engine, "connect", _sqlite_pragmas)


def register_blueprints(app: Flask) -> None:
    api.register_blueprint(auth.bp)
    api.register_blueprint(users.bp)
    api.register_blueprint(audit.bp)
    api.register_blueprint(health.bp)
    api.register_blueprint(metrics.bp)
    api.register_blueprint(keys.bp)
    api.register_blueprint(verify.bp)
    if app.config["INTROSPECTION_CLIENTS"]:
        api.register_blueprint(verify.introspection_bp)
    if app.config["WEBAUTHN_RP_ID"]:
        api.register_blueprint(passkeys.bp)
    # HTML for people, not API: outside the OpenAPI document. Off, the routes
    # do not exist (404 like any unknown URL).
    if app.config["HOSTED_PAGES"]:
        app.register_blueprint(pages.bp)


def _end_db_session(exc) -> None:
    """End the request's database session. A connection that died after the
    answer was made (a killed backend, a restarted database) fails the closing
    ROLLBACK; SQLAlchemy has already discarded it, and a finished request must
    not become a 500 for it."""
    try:
        db.session.remove()
    except DBAPIError as error:
        logging.getLogger("authapi.db").warning(
            "database connection lost while closing a session: %s", type(error).__name__
        )
        db.session.registry.clear()


def _sqlite_pragmas(dbapi_connection, connection_record):
    cursor = dbapi_connection.cursor()
    # Enforce ON DELETE CASCADE, and let readers and one writer work at once.
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def _migrations_directory() -> str:
    return str(Path(__file__).resolve().parent.parent / "migrations")
