"""Configuration, one class per environment, chosen by ``AUTHAPI_ENV``.

Every value comes from the environment (API.md §5), as the table in
``config.table`` declares it: the variable, its parser, its default in each
environment, its meaning and its check. Nothing is read at import time: a class
reads the environment when ``create_app`` instantiates it, so importing this
package never fails, and the checks run in ``validate()`` where the app factory
can report them.
"""

import os
from datetime import timedelta
from pathlib import Path

from . import redis_url
from .setting import ConfigError
from .checks import ASYMMETRIC_ALGORITHMS, SYMMETRIC_ALGORITHMS
from .table import SETTINGS

__all__ = [
    "ASYMMETRIC_ALGORITHMS", "CONFIGS", "Config", "ConfigError", "DevelopmentConfig",
    "ProductionConfig", "SYMMETRIC_ALGORITHMS", "TestingConfig", "database_url",
    "engine_options", "load_config",
]


def database_url(url: str) -> str:
    """Map Heroku-style and driverless PostgreSQL URLs to psycopg 3, and make a
    relative SQLite path relative to the working directory (not Flask-SQLAlchemy's
    instance folder), creating its directory."""
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix):]
    if url.startswith("sqlite:///") and url != "sqlite:///:memory:":
        path = Path(url[len("sqlite:///"):])
        if not path.is_absolute():
            path = Path.cwd() / path
        path.parent.mkdir(parents=True, exist_ok=True)
        return f"sqlite:///{path}"
    return url


def engine_options(url: str | None) -> dict:
    if url and url.startswith("sqlite"):
        # Several gunicorn workers write to one file: wait for the lock instead
        # of failing with "database is locked".
        return {"connect_args": {"timeout": 30}, "hide_parameters": True}
    # No pre-ping: it is a round trip on every request. A connection the
    # server killed fails its first query instead (a 503), and SQLAlchemy then
    # replaces every pooled connection older than the failure, so a restarted
    # database costs at most one 503 per worker thread in flight. Connections
    # are replaced after 5 minutes, under the idle timeouts of common load
    # balancers and NAT gateways (AWS NLB: 350 s), which would otherwise drop
    # them silently while the pool keeps them. hide_parameters keeps hashes and
    # token digests out of logged SQL errors.
    return {
        "pool_pre_ping": False,
        "pool_recycle": 300,
        "pool_size": 5,
        "max_overflow": 10,
        "hide_parameters": True,
    }


def limiter_storage(url: str | None) -> tuple[str, dict]:
    """flask-limiter's storage URI and options from the one REDIS_URL, read by
    config.redis_url (limits takes a sentinel URL's db as an option). A URL
    that validate() will refuse is passed as it is: derive runs first."""
    if not url:
        return "memory://", {}
    options = {"socket_timeout": 1.0, "socket_connect_timeout": 1.0}
    try:
        parsed = redis_url.parse(url)
    except redis_url.BadRedisURL:
        return url, options
    return parsed.limiter_uri(), {**options, **parsed.limiter_options()}


class Config:
    """The settings of one environment, read from ``environ`` by the table when
    instantiated. ``app.config`` gets every upper-case attribute: the table's
    settings, the extension settings derived from them, and the constants below."""

    environment = "development"

    TESTING = False
    # Flask's own host check, which would cover /health/* too: authapi applies
    # TRUSTED_HOSTS itself (AUTHAPI_TRUSTED_HOSTS, see its row in config.table).
    TRUSTED_HOSTS = None
    JWT_TOKEN_LOCATION = ("headers",)
    JWT_REFRESH_JSON_KEY = "refresh_token"
    JWT_DECODE_LEEWAY = 0
    # Browser clients (API.md §3): the refresh cookie goes only to /auth; the
    # CSRF cookie is for the page's script to read, so it is on every path.
    JWT_REFRESH_COOKIE_PATH = "/auth"
    JWT_REFRESH_CSRF_COOKIE_PATH = "/"
    JWT_COOKIE_SAMESITE = "Strict"
    JWT_COOKIE_SECURE = False
    # Response headers are written by authapi.ratelimit, not the extension.
    RATELIMIT_HEADERS_ENABLED = False
    RATELIMIT_KEY_PREFIX = "authapi"
    RATELIMIT_STRATEGY = "fixed-window"
    # flask-smorest publishes the document at /openapi.json and Swagger UI at
    # /docs, with the UI's files served by the app (authapi.docs).
    API_TITLE = "authapi"
    API_VERSION = "1.0.0"
    OPENAPI_VERSION = "3.0.3"
    OPENAPI_URL_PREFIX = "/"
    OPENAPI_JSON_PATH = "openapi.json"
    OPENAPI_SWAGGER_UI_PATH = "docs"
    OPENAPI_SWAGGER_UI_URL = "/docs/assets/"

    def __init__(self, environ=None):
        env = os.environ if environ is None else environ
        self.AUTHAPI_ENV = self.environment
        for setting in SETTINGS:
            setattr(self, setting.key, setting.read(env, self.environment))
        self.derive()

    def derive(self):
        """Translate our settings into the names the extensions read."""
        uri = database_url(self.DATABASE_URL) if self.DATABASE_URL else None
        self.SQLALCHEMY_DATABASE_URI = uri
        self.SQLALCHEMY_ENGINE_OPTIONS = engine_options(uri)
        self.JWT_ACCESS_TOKEN_EXPIRES = timedelta(seconds=self.ACCESS_TOKEN_TTL)
        self.JWT_REFRESH_TOKEN_EXPIRES = timedelta(seconds=self.REFRESH_TOKEN_TTL)
        # The double-submit claim only matters when the refresh token is a cookie.
        self.JWT_COOKIE_CSRF_PROTECT = self.REFRESH_TOKEN_COOKIE
        self.JWT_ENCODE_ISSUER = self.JWT_DECODE_ISSUER = self.JWT_ISSUER
        self.JWT_ENCODE_AUDIENCE = self.JWT_DECODE_AUDIENCE = self.JWT_AUDIENCE
        # flask-limiter: Redis shares the counts between workers and hosts; only
        # the development fallback (no REDIS_URL) counts in process memory.
        self.RATELIMIT_STORAGE_URI, self.RATELIMIT_STORAGE_OPTIONS = limiter_storage(self.REDIS_URL)

    def validate(self):
        """Raise ConfigError for a configuration this environment must refuse."""
        for setting in SETTINGS:
            refusal = setting.refusal(getattr(self, setting.key), self.environment, vars(self))
            if refusal:
                raise ConfigError(refusal)


class DevelopmentConfig(Config):
    environment = "development"


class TestingConfig(Config):
    environment = "testing"
    TESTING = True


class ProductionConfig(Config):
    environment = "production"
    JWT_COOKIE_SECURE = True


CONFIGS = {
    "development": DevelopmentConfig,
    "testing": TestingConfig,
    "production": ProductionConfig,
}


def load_config(name: str | None = None, environ=None):
    env = os.environ if environ is None else environ
    name = name or env.get("AUTHAPI_ENV") or "development"
    try:
        config_class = CONFIGS[name]
    except KeyError:
        raise ConfigError(
            f"AUTHAPI_ENV must be one of {', '.join(CONFIGS)}, got {name!r}"
        ) from None
    config = config_class(env)
    config.validate()
    return config
