"""The settings table: every environment variable authapi reads (API.md §5),
each declared once with its parser, default per environment, meaning and
check (``config.setting.Setting`` says what each field does).

Adding a setting is adding a row to its section here (and a check in
config.checks if bounds or choices do not say it), then ``python -m config.page >
docs/configuration.md``; the app reads it as ``app.config["<NAME>"]``."""

import secrets

from .checks import (
    client_pairs, database, event_types,
    exact_origins, fernet_keys, long_client_secrets, long_secret, no_console_in_production,
    no_plain_text_login_in_production, one_kind_of_tls, rate_limit, readable_file, redis, rp_id,
    signed_with_key_files, signed_with_secret, signing_algorithm, webhook_secret, webhook_urls,
)
from .setting import REQUIRED, Generated, Setting, boolean, comma_list, integer, optional, text

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
RANDOM_SECRET = Generated("random per process", lambda: secrets.token_urlsafe(32))


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
    ("Passkeys", (
        S("WEBAUTHN_RP_ID", optional, None, "the relying party ID, a bare host name (the site's "
          "domain or a parent of it); set: passkeys are on; unset: their endpoints are 404",
          rp_id),
        S("WEBAUTHN_RP_NAME", text, "authapi", "the name authenticators show for the site"),
        S("WEBAUTHN_ORIGINS", comma_list, "", "comma-separated origins a passkey ceremony may "
          "come from; empty: `https://` + WEBAUTHN_RP_ID", exact_origins),
    )),
    ("Audit trail and webhooks", (
        S("EVENT_RETENTION_DAYS", integer, "365", "days `flask events purge` keeps security "
          "events", bounds=POSITIVE),
        S("WEBHOOK_URLS", comma_list, "", "comma-separated URLs every matching security event is "
          "POSTed to (Standard Webhooks); empty: no webhooks", webhook_urls),
        S("WEBHOOK_SECRET", optional, None, "`whsec_` + base64 of at least 24 random bytes: the "
          "key that signs every delivery; needed with WEBHOOK_URLS", webhook_secret),
        S("WEBHOOK_EVENTS", comma_list, "", "comma-separated event types or prefixes like "
          "`login.*` to deliver; empty: all; an entry matching no type stops start-up", event_types),
        S("WEBHOOK_TIMEOUT", integer, "5", "seconds a receiver has to answer 2xx",
          bounds=POSITIVE),
        S("WEBHOOK_MAX_ATTEMPTS", integer, "8", "attempts before a delivery is marked failed",
          bounds=POSITIVE),
        S("WEBHOOK_BACKOFF_SECONDS", integer, "5", "seconds before the first retry, doubling "
          "after each", bounds=POSITIVE),
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
        S("HOSTED_PAGES", boolean, "true", "serve the pages the email links open (`/verify`, "
          "`/reset`); `false`: they are 404, for an app with pages of its own"),
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
