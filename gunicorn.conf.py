"""gunicorn settings, all from the environment (API.md §5: PORT, WEB_CONCURRENCY)."""

import os
import sys

bind = f"0.0.0.0:{os.environ.get('PORT', '8000')}"
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))

if not os.environ.get("REDIS_URL") and os.environ.get("AUTHAPI_ENV", "development") != "production":
    # The development fallback store lives in one process: with more workers a
    # logout served by one would not be seen by the others.
    if workers != 1:
        print("authapi: REDIS_URL is not set: serving with 1 worker", file=sys.stderr)
    workers = 1

worker_class = "gthread"
threads = int(os.environ.get("GUNICORN_THREADS", "4"))
# Import the app once in the master: a configuration error stops start-up with
# one line instead of every worker failing in turn.
preload_app = True
timeout = 30
graceful_timeout = 30
keepalive = 5

# Client IPs and the scheme come from ProxyFix (PROXY_FIX_X_FOR) in the app only;
# gunicorn itself trusts no forwarding headers.
forwarded_allow_ips = ""
secure_scheme_headers = {}

accesslog = "-"
errorlog = "-"

# gunicorn 24+ opens a control socket at one fixed path per user; several
# instances on one host (tests, blue/green) would fight over it, and we do not use it.
control_socket_disable = True
