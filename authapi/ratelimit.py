"""Rate limits per client address, and the headers that describe them.

The one ``Limiter`` lives in ``extensions.py``; endpoints take their limit from
a setting with ``limit_from`` and everything else gets ``RATELIMIT_DEFAULT``
(per endpoint). Counts live in Redis, so every worker and host shares them.
When Redis cannot be reached the limiter counts in process memory until it is
back: limits fail open, token checks and the login lockout fail closed (503).
"""

import math
import time

from flask import current_app, request

from .extensions import limiter


def limit_from(setting: str):
    """A limit read from the app's configuration at request time."""
    return lambda: current_app.config[setting]


@limiter.request_filter
def _is_health_probe() -> bool:
    # A load balancer probes often and from one address; telling it to slow
    # down would take a healthy instance out of service.
    return request.path.startswith("/health/")


def add_rate_limit_headers(response):
    """Describe the tightest limit of this request: X-RateLimit-* (reset as a
    Unix time, as flask-limiter and GitHub do), RateLimit-* (the IETF draft's
    names, reset in seconds) and, on a 429 of the limiter, Retry-After.

    flask-limiter's own headers are off because it puts Retry-After on every
    response, and it would read Redis a second time."""
    current = limiter.current_limit
    if current is None:
        return response
    try:
        reset_time, remaining = current.window
    except Exception:  # the store went away mid-request: no headers, no 500
        current_app.logger.warning("rate limit headers skipped: store unavailable")
        return response
    reset_at = math.ceil(reset_time)
    reset_in = max(math.ceil(reset_time - time.time()), 0)
    amount = current.limit.amount
    window = current.limit.get_expiry()
    response.headers["X-RateLimit-Limit"] = str(amount)
    response.headers["X-RateLimit-Remaining"] = str(remaining)
    response.headers["X-RateLimit-Reset"] = str(reset_at)
    response.headers["RateLimit-Limit"] = str(amount)
    response.headers["RateLimit-Remaining"] = str(remaining)
    response.headers["RateLimit-Reset"] = str(reset_in)
    response.headers["RateLimit-Policy"] = f"{amount};w={window}"
    if response.status_code == 429 and "Retry-After" not in response.headers:
        # The lockout sets its own Retry-After; this is the limiter's.
        response.headers["Retry-After"] = str(max(reset_in, 1))
    return response


def init_app(app) -> None:
    limiter.init_app(app)
    if app.config["RATELIMIT_ENABLED"]:
        app.after_request(add_rate_limit_headers)
