"""The settings table: every environment variable authapi reads (API.md §5),
each declared once with its parser, default per environment, meaning and
check (``config.setting.Setting`` says what each field does).

Adding a setting is adding a row to its section here (and a check above it if
bounds or choices do not say it), then ``python -m config.page >
docs/configuration.md``; the app reads it as ``app.config["<NAME>"]``."""

import os
import re
import secrets

from limits import parse_many
from sqlalchemy.engine import make_url

from . import redis_url
from .setting import REQUIRED, Generated, Setting, boolean, comma_list, integer, optional, text

SYMMETRIC_ALGORITHMS = {"HS256", "HS384", "HS512"}
# Signed with a private key from a file; the public keys are published as a JWKS.
ASYMMETRIC_ALGORITHMS = {"RS256", "ES256", "EdDSA"}
ORIGIN_PATTERN = re.compile(r"^https?://[A-Za-z0-9.-]+(:[0-9]{1,5})?\Z")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
RANDOM_SECRET = Generated("random per process", lambda: secrets.token_urlsafe(32))


# ---------------------------------------------------------------- checks
# Beyond bounds and choices; see setting.Check.


def rate_limit(name, value, settings):
    # Checked here so that a typo stops start-up instead of turning every
    # request of an endpoint into a 500.
    try:
        parse_many(value)
    except ValueError:
        return f"{name} is not a rate limit like '10 per minute': {value!r}"


def exact_origins(name, value, settings):
    # Exact origins only: flask-cors would read "*" or other pattern
    # characters as a regular expression and open the API wider.
    for origin in value:
        if not ORIGIN_PATTERN.match(origin):
            return f"{name} entries must be origins like https://app.example.com, got {origin!r}"


def long_secret(name, value, settings):
    if settings["AUTHAPI_ENV"] == "production" and value and len(value.encode()) < 32:
        return f"{name} must be at least 32 bytes in production"


def signed_with_secret(settings) -> bool:
    return settings["JWT_ALGORITHM"] not in ASYMMETRIC_ALGORITHMS


def signed_with_key_files(settings) -> bool:
    return settings["JWT_ALGORITHM"] in ASYMMETRIC_ALGORITHMS


def signing_algorithm(name, value, settings):
    if value not in SYMMETRIC_ALGORITHMS | ASYMMETRIC_ALGORITHMS:
        return f"{name} {value!r} is not supported"
    # There is no stand-in: a key made up per process would not verify on the
    # other workers or hosts. The keys themselves are checked by authapi.keys.
    for needed in ("JWT_PRIVATE_KEY_FILE", "JWT_PUBLIC_KEY_FILE"):
        if value in ASYMMETRIC_ALGORITHMS and not settings[needed]:
            return f"{name} {value} needs {needed}"


def readable_file(name, value, settings):
    if value and not (os.path.isfile(value) and os.access(value, os.R_OK)):
        return f"{name} {value!r} is not a readable file"


# The URLs are not repeated in the messages: they may hold passwords.
def database(name, value, settings):
    try:
        if value:  # as mapped for SQLAlchemy (config.database_url)
            make_url(settings["SQLALCHEMY_DATABASE_URI"]).get_dialect()
    except Exception:  # ArgumentError, NoSuchModuleError: any of them means unusable
        return f"{name} is not a database URL like postgresql://user@host/db"


def redis(name, value, settings):
    try:
        if value:
            redis_url.parse(value)
    except redis_url.BadRedisURL as error:
        return (f"{name} is not a Redis URL like redis://host:6379/0, "
                f"redis+sentinel://host:26379/mymaster or redis+cluster://host:7000: {error}")


def no_console_in_production(name, value, settings):
    if settings["AUTHAPI_ENV"] == "production" and value == "console":
        return f"{name}=console writes tokens to the log and is refused in production"


def no_plain_text_login_in_production(name, value, settings):
    # Anyone on the path would read the SMTP password, then send mail as us.
    encrypted = settings["SMTP_STARTTLS"] or settings["SMTP_SSL"]
    if settings["AUTHAPI_ENV"] == "production" and value and not encrypted:
        return (f"{name} is set but neither SMTP_STARTTLS nor SMTP_SSL is on: production "
                "refuses to send the SMTP password in plain text")


def one_kind_of_tls(name, value, settings):
    if value and settings["SMTP_STARTTLS"]:
        return (f"{name} (TLS from the start) and SMTP_STARTTLS (TLS after a plain greeting) "
                "exclude each other: choose the one the server's port speaks")


def fernet_keys(name, value, settings):
    # A key that cannot decrypt would only show at the first two-factor login.
    from cryptography.fernet import Fernet

    for index, key in enumerate(value, 1):
        try:
            Fernet(key)
        except (ValueError, TypeError):
            return (f"{name} entry {index} is not a Fernet key (32 url-safe base64-encoded bytes, "
                    "as `Fernet.generate_key()` makes)")


def client_pairs(raw: str) -> dict[str, str] | None:
    """``id:secret,id2:secret2`` as {id: secret}; empty: unset. A secret may
    hold ":" (split at the first); no id or secret may be empty or repeated.
    The messages never quote a secret."""
    clients = {}
    for position, entry in enumerate((item.strip() for item in raw.split(",") if item.strip()), 1):
        client_id, colon, secret = entry.partition(":")
        if not (colon and client_id.strip() and secret):
            raise ValueError(f"must be id:secret pairs separated by commas (entry {position} is not)")
        if client_id.strip() in clients:
            raise ValueError(f"names the client {client_id.strip()!r} twice")
        clients[client_id.strip()] = secret
    return clients or None


def long_client_secrets(name, value, settings):
    if settings["AUTHAPI_ENV"] == "production" and value:
        short = sorted(client_id for client_id, secret in value.items() if len(secret.encode()) < 32)
        if short:
            return f"{name}: the secret of {', '.join(short)} must be at least 32 bytes in production"


# ---------------------------------------------------------------- the table

S = Setting
POSITIVE = (1, None)
SECTIONS = (
    ("Secrets and services", (
        S("SECRET_KEY", optional, RANDOM_SECRET, "Flask's secret; in production at least 32 bytes",
          long_secret, production=REQUIRED),
        # Signs nothing when the tokens are signed with a key file.
        S("JWT_SECRET_KEY", optional, RANDOM_SECRET, "signs the tokens with an HS algorithm; in "
          "production at least 32 bytes", long_secret, only_if=signed_with_secret,
          production=REQUIRED),
        S("DATABASE_URL", optional, "sqlite:///instance/authapi.db", "any SQLAlchemy URL; "
          "`postgres://` is accepted; a relative SQLite path starts at the working directory",
          database, production=REQUIRED),
        S("REDIS_URL", optional, None, "revocation marks, rate limits and lockout; one server "
          "`redis://` or `rediss://`, Sentinel `redis+sentinel://[:password@]host:port[,...]/"
          "<service>[/db]`, Cluster `redis+cluster://host:port[,...]`; unset: an "
          "in-process store stands in, for one process only", redis, production=REQUIRED),
    )),
    ("Tokens", (
        S("JWT_ALGORITHM", text, "HS256", "`HS256`, `HS384`, `HS512` (signed with JWT_SECRET_KEY), "
          "or `RS256`, `ES256`, `EdDSA` (signed with the key files below)", signing_algorithm),
        S("JWT_PRIVATE_KEY_FILE", optional, None, "PEM private key signing the tokens; needed by "
          "the key-file algorithms", readable_file, only_if=signed_with_key_files),
        S("JWT_PUBLIC_KEY_FILE", optional, None, "its public key, published at "
          "`/.well-known/jwks.json`; needed by the key-file algorithms", readable_file,
          only_if=signed_with_key_files),
        S("JWT_PREVIOUS_PUBLIC_KEY_FILE", optional, None, "a rotated-out public key, accepted and "
          "published until its tokens expire", readable_file, only_if=signed_with_key_files),
        S("JWT_ISSUER", optional, None, "when set, put in tokens (`iss`) and required on decode"),
        S("JWT_AUDIENCE", optional, None, "when set, put in tokens (`aud`) and required on decode"),
        S("ACCESS_TOKEN_TTL", integer, "900", "seconds an access token is valid", bounds=POSITIVE),
        S("REFRESH_TOKEN_TTL", integer, "1209600", "seconds a session lasts after its last refresh",
          bounds=POSITIVE),
        S("REFRESH_TOKEN_COOKIE", boolean, "false", "browser clients: the refresh token in an "
          "HttpOnly cookie, with a CSRF check"),
        S("INTROSPECTION_CLIENTS", client_pairs, None, "`id:secret,id2:secret2`: the clients "
          "allowed `POST /auth/introspect` (HTTP Basic); unset: that endpoint is 404; in "
          "production each secret at least 32 bytes", long_client_secrets),
    )),
    ("Accounts and passwords", (
        S("PASSWORD_MIN_LENGTH", integer, "12", "characters", bounds=(1, 256)),
        # The suite would be slow at production cost; a test can still raise them.
        S("ARGON2_TIME_COST", integer, None, "argon2 passes; unset: argon2-cffi's default; hashes "
          "made with other parameters are re-hashed at the next login", testing="1"),
        S("ARGON2_MEMORY_COST", integer, None, "argon2 memory in KiB; unset: argon2-cffi's default",
          testing="1024"),
        S("ARGON2_PARALLELISM", integer, None, "argon2 lanes; unset: argon2-cffi's default",
          testing="1"),
        S("REGISTRATION_OPEN", boolean, "true", "`false` makes registration 403 `forbidden`"),
        S("REQUIRE_VERIFIED_EMAIL", boolean, "false", "refuse logins of unverified addresses"),
    )),
    ("Rate limits and lockout", (
        S("RATELIMIT_ENABLED", boolean, "true", "`false` turns every rate limit off"),
        S("RATELIMIT_LOGIN", text, "10 per minute", "logins per client address", rate_limit),
        S("RATELIMIT_REGISTER", text, "5 per minute", "registrations per client address",
          rate_limit),
        S("RATELIMIT_FORGOT", text, "5 per hour", "reset emails asked for per client address",
          rate_limit),
        S("RATELIMIT_DEFAULT", text, "300 per minute", "any other request per client address",
          rate_limit),
        S("LOCKOUT_THRESHOLD", integer, "10", "failed logins in a row that lock a username",
          bounds=POSITIVE),
        S("LOCKOUT_SECONDS", integer, "900", "how long a username stays locked", bounds=POSITIVE),
        S("DEVICE_TOKEN_TTL", integer, "31536000", "seconds a device token (a login that skips "
          "the username's lockout) stays valid", bounds=POSITIVE),
    )),
    ("Two-factor authentication", (
        S("MFA_ISSUER", text, "authapi", "the issuer name in TOTP `otpauth://` URIs, shown by "
          "authenticator apps"),
        S("MFA_ENCRYPTION_KEYS", comma_list, "", "comma-separated Fernet keys encrypting TOTP "
          "secrets at rest: the first encrypts, any decrypts (rotation: docs/two-factor.md); "
          "empty: one key derived from SECRET_KEY", fernet_keys),
        S("REQUIRE_MFA_FOR_ADMINS", boolean, "false", "admin endpoints refuse (403 "
          "`mfa_enrollment_required`) tokens of a login without a second factor"),
    )),
    ("HTTP", (
        S("PROXY_FIX_X_FOR", integer, "0", "trusted proxies setting X-Forwarded-For and -Proto; "
          "0 reads neither", bounds=(0, None)),
        S("CORS_ORIGINS", comma_list, "", "comma-separated exact origins allowed cross-origin, "
          "with credentials", exact_origins),
        # Flask 3.1 applies its own TRUSTED_HOSTS key to every path, but the
        # contract exempts /health/* (load balancers probe by address): the list
        # goes under another key, for authapi.http.check_host, and Flask's key
        # stays None (Config.TRUSTED_HOSTS).
        S("TRUSTED_HOSTS", comma_list, "", "comma-separated host names, a leading dot allowing "
          "subdomains; any other `Host` gets 400, `/health/*` excepted",
          stored_as="AUTHAPI_TRUSTED_HOSTS"),
        S("MAX_CONTENT_LENGTH", integer, "65536", "bytes; a larger body gets 413", bounds=POSITIVE),
    )),
    ("Email", (
        S("PASSWORD_RESET_URL", text, "http://localhost:8000/reset?token={token}",
          "the link a reset email carries"),
        S("EMAIL_VERIFY_URL", text, "http://localhost:8000/verify?token={token}",
          "the link a verification email carries"),
        S("PASSWORD_RESET_TTL", integer, "3600", "seconds a reset link works"),
        S("EMAIL_VERIFY_TTL", integer, "86400", "seconds a verification link works"),
        # console writes the links, tokens included, to the log.
        S("MAIL_BACKEND", text, "console", "`console` writes emails to the log",
          no_console_in_production, choices=("smtp", "console"), production="smtp"),
        S("MAIL_FROM", text, "no-reply@localhost", "the sender of every email"),
        S("SMTP_HOST", text, "localhost", "the SMTP server"),
        S("SMTP_PORT", integer, "25", "its port"),
        S("SMTP_USERNAME", optional, None, "login name, when the server wants one; production "
          "refuses it without SMTP_STARTTLS or SMTP_SSL", no_plain_text_login_in_production),
        S("SMTP_PASSWORD", optional, None, "its password"),
        S("SMTP_STARTTLS", boolean, "false", "upgrade the connection with STARTTLS (port 587)"),
        S("SMTP_SSL", boolean, "false", "implicit TLS from the first byte (port 465)",
          one_kind_of_tls),
        S("SMTP_CA_FILE", optional, None, "PEM file of the CAs that verify the server's "
          "certificate; unset: the system's CAs", readable_file),
        S("SMTP_TIMEOUT", integer, "10", "seconds"),
        S("EMAIL_RESEND_SECONDS", integer, "60", "one email of a purpose (verification, reset) "
          "per address per this many seconds; 0: no limit", bounds=(0, None)),
    )),
    ("Logging", (
        S("LOG_LEVEL", str.upper, "INFO", "the lowest level logged", choices=LOG_LEVELS),
        S("LOG_FORMAT", text, "text", "`json`: one object a line", choices=("text", "json"),
          production="json"),
    )),
)
SETTINGS = tuple(setting for _, settings in SECTIONS for setting in settings)

# Read by gunicorn.conf.py, not by the app: listed here so that the page has
# one source; tests/test_config.py checks these defaults against that file.
GUNICORN_SETTINGS = (
    S("PORT", integer, "8000", "the port gunicorn binds"),
    S("BIND_ADDRESS", text, "0.0.0.0", "the address gunicorn binds (an IPv6 one without "
      "brackets is fine): `0.0.0.0` in a container or on a PaaS, `127.0.0.1` behind nginx on "
      "the same host"),
    S("WEB_CONCURRENCY", integer, "2", "worker processes; 1 when REDIS_URL is unset outside "
      "production"),
    S("GUNICORN_THREADS", integer, "4", "threads per worker (`gthread`)"),
    S("PROMETHEUS_MULTIPROC_DIR", optional, None, "where workers keep their metrics, emptied when "
      "gunicorn starts; unset: a new temporary directory"),
)
