"""Rate limits per client address: which limit each endpoint has, where it is
counted, the headers that describe it, and the one ``Retry-After`` of every 429.

Every endpoint is limited per endpoint: those named in ``ENDPOINT_LIMITS``
by their own setting, everything else by ``RATELIMIT_DEFAULT``; those in
``COUNTED_AS`` as another endpoint; the health probes and ``EXEMPT_ENDPOINTS``
are exempt. Counts live in Redis, so every worker and host shares them.
When Redis cannot be reached the limiter counts in process memory until it is
back: limits fail open, token checks and the login lockout fail closed (503).
"""

import ipaddress
import math
import time

from flask import current_app, request
from flask_limiter import Limiter

from . import ratelimit_storage  # noqa: F401 (registers its scheme with limits)

# endpoint -> the setting holding its limit; any other endpoint: DEFAULT_LIMIT.
ENDPOINT_LIMITS = {
    "auth.register": "RATELIMIT_REGISTER",
    "auth.login": "RATELIMIT_LOGIN",
    # The second login step (API.md §8): the login's limit, counted apart.
    "auth.login_mfa": "RATELIMIT_LOGIN",
    # A passkey login (API.md §9): the login's limit too, counted apart.
    "passkeys.login": "RATELIMIT_LOGIN",
    "auth.forgot_password": "RATELIMIT_FORGOT",
}
DEFAULT_LIMIT = "RATELIMIT_DEFAULT"
# endpoint -> the endpoint it is counted as: the hosted pages' forms (API.md
# §12) do what these API endpoints do, under their limit and on their counter,
# so a page is no way around the API's limit.
COUNTED_AS = {"pages.verify": "auth.verify_email", "pages.reset": "auth.reset_password"}
# Not limited at all: forward authentication (API.md §11) answers for every
# request of the apps behind a proxy, all from the proxy's one address.
EXEMPT_ENDPOINTS = {"verify.verify"}


def limit_setting(endpoint: str | None) -> str:
    """The name of the setting that limits ``endpoint``."""
    return ENDPOINT_LIMITS.get(endpoint or "", DEFAULT_LIMIT)


def counted_endpoint() -> str:
    """What the current request is counted as (flask-limiter's request
    identifier: a default limit is counted per identifier)."""
    endpoint = request.endpoint or ""
    return COUNTED_AS.get(endpoint, endpoint)


def _current_limit() -> str:
    # Read per request, so each app (tests build many) uses its own settings.
    return current_app.config[limit_setting(counted_endpoint())]


def client_key() -> str:
    """What a client's limits are counted under: its address as ProxyFix
    leaves it (with PROXY_FIX_X_FOR=0 the peer, so a client's own
    X-Forwarded-For changes nothing), an IPv6 address by its /64.

    One subscriber gets a whole /64 (often more) and picks any address in it
    at will, so counting per IPv6 address would not limit anyone. An
    IPv4-mapped IPv6 address (``::ffff:192.0.2.1``, from a dual-stack socket)
    is that IPv4 address."""
    address = request.remote_addr or ""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address  # not an IP address (a Unix socket): counted as it is
    if ip.version == 4:
        return str(ip)
    if ip.ipv4_mapped is not None:
        return str(ip.ipv4_mapped)
    return str(ipaddress.IPv6Network((int(ip) >> 64 << 64, 64)))


limiter = Limiter(
    key_func=client_key,
    request_identifier=counted_endpoint,
    # A default limit is counted per endpoint (flask-limiter's scope), so one
    # callable serves the whole table.
    default_limits=[_current_limit],
    # Redis unreachable: count in this process until it is back (fail open).
    # Limits are a brake on abuse; token checks are what fail closed (503).
    in_memory_fallback_enabled=True,
    swallow_errors=True,
)


@limiter.request_filter
def _is_exempt() -> bool:
    # A load balancer probes often and from one address; telling it to slow
    # down would take a healthy instance out of service.
    return request.path.startswith("/health/") or request.endpoint in EXEMPT_ENDPOINTS


def retry_after(until: float) -> int:
    """Seconds a refused client should wait before trying again, for a refusal
    that lasts until the Unix time ``until``: whole seconds, rounded up, and at
    least 1 (0 would invite an immediate retry). Every 429 uses this."""
    return max(math.ceil(until - time.time()), 1)


def add_rate_limit_headers(response):
    """Describe the tightest limit of this request: X-RateLimit-* (reset as a
    Unix time, as flask-limiter and GitHub do), RateLimit-* (the IETF draft's
    names, reset in seconds) and, on a 429 of the limiter, Retry-After.

    flask-limiter's own headers are off (RATELIMIT_HEADERS_ENABLED) because it
    puts Retry-After on every response, and it would read Redis a second time."""
    current = limiter.current_limit
    if current is None:
        return response
    try:
        reset_time, remaining = current.window
    except Exception:  # the store went away mid-request: no headers, no 500
        current_app.logger.warning("rate limit headers skipped: store unavailable")
        return response
    amount = current.limit.amount
    headers = response.headers
    headers["X-RateLimit-Limit"] = headers["RateLimit-Limit"] = str(amount)
    headers["X-RateLimit-Remaining"] = headers["RateLimit-Remaining"] = str(remaining)
    headers["X-RateLimit-Reset"] = str(math.ceil(reset_time))
    headers["RateLimit-Reset"] = str(max(math.ceil(reset_time - time.time()), 0))
    headers["RateLimit-Policy"] = f"{amount};w={current.limit.get_expiry()}"
    if response.status_code == 429 and "Retry-After" not in headers:
        # The lockout sets its own Retry-After; this is the limiter's.
        headers["Retry-After"] = str(retry_after(reset_time))
    return response


def init_app(app) -> None:
    limiter.init_app(app)
    if app.config["RATELIMIT_ENABLED"]:
        app.after_request(add_rate_limit_headers)
