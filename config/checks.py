"""The checks of the settings table (config.table) beyond bounds and choices:
each takes the variable's name, its parsed value and every parsed setting, and
returns a one-line refusal or None (see setting.Check). A refusal never quotes
a secret."""

import base64
import binascii
import os
import re

from limits import parse_many
from sqlalchemy.engine import make_url

from . import redis_url

SYMMETRIC_ALGORITHMS = {"HS256", "HS384", "HS512"}
# Signed with a private key from a file; the public keys are published as a JWKS.
ASYMMETRIC_ALGORITHMS = {"RS256", "ES256", "EdDSA"}
ORIGIN_PATTERN = re.compile(r"^https?://[A-Za-z0-9.-]+(:[0-9]{1,5})?\Z")

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


# ---------------------------------------------------------------- passkeys, webhooks

HOST_NAME = re.compile(r"^(?=.{1,253}\Z)[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?"
                       r"(\.[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?)*\Z")
WEBHOOK_SECRET_PREFIX = "whsec_"
WEBHOOK_SECRET_MIN_BYTES = 24
EVENT_TYPE_PATTERN = re.compile(r"^[a-z_]+(\.[a-z_]+|\.\*)\Z")


def rp_id(name, value, settings):
    # WebAuthn compares the RP ID with the origin's host: a scheme, port or
    # path here would make every ceremony fail, so refuse it at start-up.
    if value and not HOST_NAME.match(value):
        return f"{name} must be a bare host name like example.com (no scheme, port or path)"


def webhook_urls(name, value, settings):
    for url in value:
        if not re.match(r"^https?://[^\s/?#]+", url):
            return f"{name} entries must be http:// or https:// URLs"


def webhook_secret(name, value, settings):
    # Standard Webhooks: "whsec_" + base64 of the HMAC key. A short key would
    # sign every delivery weakly, so a deployment with receivers needs a good one.
    if not settings["WEBHOOK_URLS"]:
        return None
    message = (f"{name} must be 'whsec_' followed by the base64 of at least "
               f"{WEBHOOK_SECRET_MIN_BYTES} random bytes when WEBHOOK_URLS is set")
    if not value or not value.startswith(WEBHOOK_SECRET_PREFIX):
        return message
    try:
        key = base64.b64decode(value[len(WEBHOOK_SECRET_PREFIX):], validate=True)
    except (binascii.Error, ValueError):
        return message
    if len(key) < WEBHOOK_SECRET_MIN_BYTES:
        return message


def event_types(name, value, settings):
    # The form only: whether an entry selects a known type is checked by the
    # app (authapi.webhooks.outbox.init_app), which owns the list of types.
    for entry in value:
        if not EVENT_TYPE_PATTERN.match(entry):
            return f"{name} entries must be event types like login.failed or prefixes like login.*"
