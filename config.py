"""Configuration classes, one per environment, chosen by ``AUTHAPI_ENV``.

Every value comes from the environment (API.md §5). Nothing is read at import
time: a class reads the environment when it is instantiated by ``create_app``,
so importing this module never fails, and production checks run in
``validate()`` where the app factory can report them.
"""

import os
import re
import secrets
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlparse

from limits import parse_many
from sqlalchemy.engine import make_url


class ConfigError(RuntimeError):
    """A setting is missing or invalid; the message is one line for operators."""


SYMMETRIC_ALGORITHMS = {"HS256", "HS384", "HS512"}
# Signed with a private key from a file; the public keys are published as a JWKS.
ASYMMETRIC_ALGORITHMS = {"RS256", "ES256", "EdDSA"}


ORIGIN_PATTERN = re.compile(r"^https?://[A-Za-z0-9.-]+(:[0-9]{1,5})?\Z")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


def _bool(value: str) -> bool:
    if value.strip().lower() in {"1", "true", "yes", "on"}:
        return True
    if value.strip().lower() in {"0", "false", "no", "off", ""}:
        return False
    raise ConfigError(f"not a boolean: {value!r}")


def _list(value: str) -> list[str]:
    return [item.strip() for item in value.split(",") if item.strip()]


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


class Config:
    ENV_NAME = "development"
    LOG_FORMAT_DEFAULT = "text"
    MAIL_BACKEND_DEFAULT = "console"
    ARGON2_DEFAULTS = {}  # argon2-cffi's own defaults

    def __init__(self, environ=None):
        env = os.environ if environ is None else environ
        get = env.get

        def integer(name, default):
            raw = get(name)
            if raw is None or raw == "":
                return default
            try:
                return int(raw)
            except ValueError:
                raise ConfigError(f"{name} must be an integer, got {raw!r}") from None

        def boolean(name, default):
            raw = get(name)
            if raw is None:
                return default
            try:
                return _bool(raw)
            except ConfigError:
                raise ConfigError(f"{name} must be true or false, got {raw!r}") from None

        self.AUTHAPI_ENV = self.ENV_NAME
        self.SECRET_KEY = get("SECRET_KEY") or None
        self.JWT_SECRET_KEY = get("JWT_SECRET_KEY") or None
        self.JWT_ALGORITHM = get("JWT_ALGORITHM", "HS256")
        self.JWT_PRIVATE_KEY_FILE = get("JWT_PRIVATE_KEY_FILE") or None
        self.JWT_PUBLIC_KEY_FILE = get("JWT_PUBLIC_KEY_FILE") or None
        self.JWT_PREVIOUS_PUBLIC_KEY_FILE = get("JWT_PREVIOUS_PUBLIC_KEY_FILE") or None
        self.JWT_ISSUER = get("JWT_ISSUER") or None
        self.JWT_AUDIENCE = get("JWT_AUDIENCE") or None

        self.DATABASE_URL = get("DATABASE_URL") or None
        self.REDIS_URL = get("REDIS_URL") or None

        self.ACCESS_TOKEN_TTL = integer("ACCESS_TOKEN_TTL", 900)
        self.REFRESH_TOKEN_TTL = integer("REFRESH_TOKEN_TTL", 1209600)
        self.PASSWORD_MIN_LENGTH = integer("PASSWORD_MIN_LENGTH", 12)
        self.ARGON2_TIME_COST = integer("ARGON2_TIME_COST", self.ARGON2_DEFAULTS.get("time_cost"))
        self.ARGON2_MEMORY_COST = integer(
            "ARGON2_MEMORY_COST", self.ARGON2_DEFAULTS.get("memory_cost")
        )
        self.ARGON2_PARALLELISM = integer(
            "ARGON2_PARALLELISM", self.ARGON2_DEFAULTS.get("parallelism")
        )

        self.RATELIMIT_ENABLED = boolean("RATELIMIT_ENABLED", True)
        self.RATELIMIT_LOGIN = get("RATELIMIT_LOGIN", "10 per minute")
        self.RATELIMIT_REGISTER = get("RATELIMIT_REGISTER", "5 per minute")
        self.RATELIMIT_FORGOT = get("RATELIMIT_FORGOT", "5 per hour")
        self.RATELIMIT_DEFAULT = get("RATELIMIT_DEFAULT", "300 per minute")
        self.LOCKOUT_THRESHOLD = integer("LOCKOUT_THRESHOLD", 10)
        self.LOCKOUT_SECONDS = integer("LOCKOUT_SECONDS", 900)

        self.PROXY_FIX_X_FOR = integer("PROXY_FIX_X_FOR", 0)
        self.CORS_ORIGINS = _list(get("CORS_ORIGINS", ""))
        self.TRUSTED_HOSTS = _list(get("TRUSTED_HOSTS", ""))
        self.REFRESH_TOKEN_COOKIE = boolean("REFRESH_TOKEN_COOKIE", False)
        self.MAX_CONTENT_LENGTH = integer("MAX_CONTENT_LENGTH", 65536)
        self.REGISTRATION_OPEN = boolean("REGISTRATION_OPEN", True)
        self.REQUIRE_VERIFIED_EMAIL = boolean("REQUIRE_VERIFIED_EMAIL", False)

        self.PASSWORD_RESET_URL = get(
            "PASSWORD_RESET_URL", "http://localhost:8000/reset?token={token}"
        )
        self.EMAIL_VERIFY_URL = get("EMAIL_VERIFY_URL", "http://localhost:8000/verify?token={token}")
        self.PASSWORD_RESET_TTL = integer("PASSWORD_RESET_TTL", 3600)
        self.EMAIL_VERIFY_TTL = integer("EMAIL_VERIFY_TTL", 86400)

        self.MAIL_BACKEND = get("MAIL_BACKEND", self.MAIL_BACKEND_DEFAULT)
        self.MAIL_FROM = get("MAIL_FROM", "no-reply@localhost")
        self.SMTP_HOST = get("SMTP_HOST", "localhost")
        self.SMTP_PORT = integer("SMTP_PORT", 25)
        self.SMTP_USERNAME = get("SMTP_USERNAME") or None
        self.SMTP_PASSWORD = get("SMTP_PASSWORD") or None
        self.SMTP_STARTTLS = boolean("SMTP_STARTTLS", False)
        self.SMTP_TIMEOUT = integer("SMTP_TIMEOUT", 10)

        self.LOG_LEVEL = get("LOG_LEVEL", "INFO").upper()
        self.LOG_FORMAT = get("LOG_FORMAT", self.LOG_FORMAT_DEFAULT)

        self.apply_defaults()
        self.derive()

    def apply_defaults(self):
        """Development stand-ins for settings production requires."""
        if not self.SECRET_KEY:
            self.SECRET_KEY = secrets.token_urlsafe(32)
        if not self.JWT_SECRET_KEY:
            self.JWT_SECRET_KEY = secrets.token_urlsafe(32)
        if not self.DATABASE_URL:
            self.DATABASE_URL = "sqlite:///instance/authapi.db"

    def derive(self):
        """Translate our settings into the names the extensions read."""
        self.SQLALCHEMY_DATABASE_URI = database_url(self.DATABASE_URL) if self.DATABASE_URL else None
        self.SQLALCHEMY_ENGINE_OPTIONS = engine_options(self.SQLALCHEMY_DATABASE_URI)
        self.JWT_ACCESS_TOKEN_EXPIRES = timedelta(seconds=self.ACCESS_TOKEN_TTL)
        self.JWT_REFRESH_TOKEN_EXPIRES = timedelta(seconds=self.REFRESH_TOKEN_TTL)
        self.JWT_TOKEN_LOCATION = ["headers"]
        self.JWT_REFRESH_JSON_KEY = "refresh_token"
        # The double-submit claim only matters when the refresh token is a cookie.
        self.JWT_COOKIE_CSRF_PROTECT = self.REFRESH_TOKEN_COOKIE
        # Browser clients (API.md §3): the refresh cookie goes only to /auth; the
        # CSRF cookie is for the page's script to read, so it is on every path.
        self.JWT_REFRESH_COOKIE_PATH = "/auth"
        self.JWT_REFRESH_CSRF_COOKIE_PATH = "/"
        self.JWT_COOKIE_SAMESITE = "Strict"
        self.JWT_COOKIE_SECURE = self.ENV_NAME == "production"
        # flask-limiter: Redis shares the counts between workers and hosts; only
        # the development fallback (no REDIS_URL) counts in process memory.
        # Response headers are written by authapi.ratelimit, not the extension.
        self.RATELIMIT_STORAGE_URI = self.REDIS_URL or "memory://"
        self.RATELIMIT_STORAGE_OPTIONS = (
            {"socket_timeout": 1.0, "socket_connect_timeout": 1.0} if self.REDIS_URL else {}
        )
        self.RATELIMIT_KEY_PREFIX = "authapi"
        self.RATELIMIT_STRATEGY = "fixed-window"
        self.RATELIMIT_HEADERS_ENABLED = False
        # Flask 3.1 would apply TRUSTED_HOSTS to every path itself; the contract
        # exempts /health/* (load balancers probe by address), so authapi.http
        # applies the list instead.
        self.ALLOWED_HOSTS = self.TRUSTED_HOSTS
        self.TRUSTED_HOSTS = None
        self.JWT_ENCODE_ISSUER = self.JWT_DECODE_ISSUER = self.JWT_ISSUER
        self.JWT_ENCODE_AUDIENCE = self.JWT_DECODE_AUDIENCE = self.JWT_AUDIENCE
        self.JWT_DECODE_LEEWAY = 0
        # flask-smorest publishes the document at /openapi.json and Swagger UI
        # at /docs, with the UI's files served by the app (authapi.docs).
        self.API_TITLE = "authapi"
        self.API_VERSION = "1.0.0"
        self.OPENAPI_VERSION = "3.0.3"
        self.OPENAPI_URL_PREFIX = "/"
        self.OPENAPI_JSON_PATH = "openapi.json"
        self.OPENAPI_SWAGGER_UI_PATH = "docs"
        self.OPENAPI_SWAGGER_UI_URL = "/docs/assets/"
        self.JSON_SORT_KEYS = False

    def validate(self):
        """Raise ConfigError for a configuration this environment must refuse."""
        if self.JWT_ALGORITHM not in SYMMETRIC_ALGORITHMS | ASYMMETRIC_ALGORITHMS:
            raise ConfigError(f"JWT_ALGORITHM {self.JWT_ALGORITHM!r} is not supported")
        if self.JWT_ALGORITHM in ASYMMETRIC_ALGORITHMS:
            # There is no stand-in: a key made up per process would not verify
            # on the other workers or hosts. The keys themselves are checked by
            # authapi.keys when the app is built.
            for name in ("JWT_PRIVATE_KEY_FILE", "JWT_PUBLIC_KEY_FILE"):
                if not getattr(self, name):
                    raise ConfigError(f"JWT_ALGORITHM {self.JWT_ALGORITHM} needs {name}")
            for name in ("JWT_PRIVATE_KEY_FILE", "JWT_PUBLIC_KEY_FILE", "JWT_PREVIOUS_PUBLIC_KEY_FILE"):
                path = getattr(self, name)
                if path and not (os.path.isfile(path) and os.access(path, os.R_OK)):
                    raise ConfigError(f"{name} {path!r} is not a readable file")
        if self.PASSWORD_MIN_LENGTH < 1 or self.PASSWORD_MIN_LENGTH > 256:
            raise ConfigError("PASSWORD_MIN_LENGTH must be between 1 and 256")
        for name in ("ACCESS_TOKEN_TTL", "REFRESH_TOKEN_TTL", "MAX_CONTENT_LENGTH"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"{name} must be positive")
        self.validate_services()
        self.validate_abuse_protection()

    def validate_services(self):
        # The URLs are not repeated in the messages: they may hold passwords.
        if self.SQLALCHEMY_DATABASE_URI:
            try:
                make_url(self.SQLALCHEMY_DATABASE_URI).get_dialect()
            except Exception:  # ArgumentError, NoSuchModuleError: any of them means unusable
                raise ConfigError(
                    "DATABASE_URL is not a database URL like postgresql://user@host/db"
                ) from None
        if self.REDIS_URL and urlparse(self.REDIS_URL).scheme not in {"redis", "rediss", "unix"}:
            raise ConfigError("REDIS_URL is not a Redis URL like redis://host:6379/0")
        if self.MAIL_BACKEND not in {"smtp", "console"}:
            raise ConfigError(f"MAIL_BACKEND must be smtp or console, got {self.MAIL_BACKEND!r}")

    def validate_abuse_protection(self):
        # Checked here so that a typo stops start-up instead of turning every
        # request of an endpoint into a 500.
        for name in ("RATELIMIT_LOGIN", "RATELIMIT_REGISTER", "RATELIMIT_FORGOT", "RATELIMIT_DEFAULT"):
            value = getattr(self, name)
            try:
                parse_many(value)
            except ValueError:
                raise ConfigError(f"{name} is not a rate limit like '10 per minute': {value!r}") from None
        for name in ("LOCKOUT_THRESHOLD", "LOCKOUT_SECONDS"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"{name} must be positive")
        if self.PROXY_FIX_X_FOR < 0:
            raise ConfigError("PROXY_FIX_X_FOR must be 0 or more")
        for origin in self.CORS_ORIGINS:
            # Exact origins only: flask-cors would read "*" or other pattern
            # characters as a regular expression and open the API wider.
            if not ORIGIN_PATTERN.match(origin):
                raise ConfigError(
                    f"CORS_ORIGINS entries must be origins like https://app.example.com, got {origin!r}"
                )
        if self.LOG_LEVEL not in LOG_LEVELS:
            raise ConfigError(f"LOG_LEVEL must be one of {', '.join(LOG_LEVELS)}, got {self.LOG_LEVEL!r}")
        if self.LOG_FORMAT not in ("text", "json"):
            raise ConfigError(f"LOG_FORMAT must be text or json, got {self.LOG_FORMAT!r}")


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


class DevelopmentConfig(Config):
    ENV_NAME = "development"


class TestingConfig(Config):
    ENV_NAME = "testing"
    # Hashing at production cost would make the suite slow; the parameters are
    # still read from the environment, so a test can raise them.
    ARGON2_DEFAULTS = {"time_cost": 1, "memory_cost": 1024, "parallelism": 1}

    def apply_defaults(self):
        super().apply_defaults()
        self.TESTING = True


class ProductionConfig(Config):
    ENV_NAME = "production"
    LOG_FORMAT_DEFAULT = "json"
    # console would write tokens to the log; an explicit console is refused below.
    MAIL_BACKEND_DEFAULT = "smtp"

    def apply_defaults(self):
        # Production has no stand-ins: validate() names what is missing.
        pass

    def validate(self):
        # JWT_SECRET_KEY signs nothing when the tokens are signed with a key file.
        secrets_needed = ["SECRET_KEY"]
        if self.JWT_ALGORITHM not in ASYMMETRIC_ALGORITHMS:
            secrets_needed.append("JWT_SECRET_KEY")
        for name in secrets_needed:
            value = getattr(self, name)
            if not value:
                raise ConfigError(f"{name} is required in production")
            if len(value.encode()) < 32:
                raise ConfigError(f"{name} must be at least 32 bytes in production")
        for name in ("DATABASE_URL", "REDIS_URL"):
            if not getattr(self, name):
                raise ConfigError(f"{name} is required in production")
        if self.MAIL_BACKEND == "console":
            raise ConfigError(
                "MAIL_BACKEND=console writes tokens to the log and is refused in production"
            )
        super().validate()


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
