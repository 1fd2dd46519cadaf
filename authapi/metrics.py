"""Prometheus metrics and the /metrics endpoint.

Under gunicorn every worker is a process with its own counters; with
``PROMETHEUS_MULTIPROC_DIR`` set (gunicorn.conf.py sets it before the app is
imported) prometheus-client keeps them in files there and /metrics adds up all
workers, so a scrape answered by any worker gives the same totals. Without it
(tests, ``flask run``) the counters of the one process are served.
"""

import logging
import os
import time
from functools import lru_cache, wraps

from flask import Response, request
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from sqlalchemy import func, select
from sqlalchemy.exc import SQLAlchemyError

from . import errors
from .extensions import Blueprint, db, read_only
from .models import AuthSession, utcnow
from .webhooks import deliveries

log = logging.getLogger("authapi.metrics")

REQUESTS = Counter(
    "authapi_http_requests_total",
    "HTTP requests answered, by Flask endpoint, method and status code.",
    ["endpoint", "method", "status"],
)
LATENCY = Histogram(
    "authapi_http_request_duration_seconds",
    "Time to answer an HTTP request, by Flask endpoint, method and status code.",
    ["endpoint", "method", "status"],
)
LOGINS = Counter(
    "authapi_logins_total",
    "Login attempts by outcome: success or the error code of the refusal.",
    ["outcome"],
)
REFRESH_REUSE = Counter(
    "authapi_refresh_token_reuse_total",
    "Spent refresh tokens presented again; each detection ends its session.",
)

# Requests no route matched get one label value, not their path, and methods
# outside HTTP's own one value too: a scanner must not be able to create a time
# series per URL or method name it tries.
UNMATCHED = "unmatched"
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "CONNECT"})
OTHER_METHOD = "other"
START_KEY = "authapi.metrics.start"


def count_login(login):
    """Decorate the login service: count each attempt by its outcome."""

    @wraps(login)
    def wrapper(*args, **kwargs):
        try:
            result = login(*args, **kwargs)
        except errors.APIError as exc:
            LOGINS.labels(outcome=exc.code).inc()
            raise
        except Exception:
            LOGINS.labels(outcome="error").inc()
            raise
        LOGINS.labels(outcome="success").inc()
        return result

    return wrapper


class _StartTimer:
    """WSGI middleware noting when a request arrived, before any Flask hook
    (a before_request hook that refuses the request still gets it timed)."""

    def __init__(self, wsgi_app):
        self.wsgi_app = wsgi_app

    def __call__(self, environ, start_response):
        environ[START_KEY] = time.perf_counter()
        return self.wsgi_app(environ, start_response)


def request_started() -> float | None:
    """When the current request reached the app (``time.perf_counter``)."""
    return request.environ.get(START_KEY)


@lru_cache(maxsize=None)
def _series(endpoint: str, method: str, status: int):
    # Looked up once per label set (endpoints, methods and codes are few: see
    # UNMATCHED), not on every request.
    labels = {"endpoint": endpoint, "method": method, "status": str(status)}
    return REQUESTS.labels(**labels), LATENCY.labels(**labels)


def _record(response):
    method = request.method if request.method in METHODS else OTHER_METHOD
    requests, latency = _series(request.endpoint or UNMATCHED, method, response.status_code)
    requests.inc()
    started = request_started()
    if started is not None:
        latency.observe(time.perf_counter() - started)
    return response


def init_app(app) -> None:
    app.wsgi_app = _StartTimer(app.wsgi_app)
    app.after_request(_record)


def _active_sessions():
    """A gauge family read from the database at scrape time: correct whichever
    worker answers, and nothing to keep in step on login, logout or expiry."""
    count = db.session.scalar(
        select(func.count())
        .select_from(AuthSession)
        .where(AuthSession.revoked_at.is_(None), AuthSession.expires_at > utcnow())
    )
    gauge = GaugeMetricFamily("authapi_active_sessions", "Sessions neither ended nor expired.")
    gauge.add_metric([], count)
    return [gauge]


def _webhook_deliveries():
    """Read at scrape time from the database, where every delivery process
    (any host) writes its outcomes: the web process cannot count them."""
    totals, backlog = deliveries.scrape_counts()
    counter = CounterMetricFamily(
        "authapi_webhook_deliveries",
        "Webhook delivery attempts by outcome (delivered, retry, failed), by every delivery process.",
        labels=["outcome"],
    )
    for outcome, total in totals.items():
        counter.add_metric([outcome], total)
    gauge = GaugeMetricFamily("authapi_webhook_backlog", "Webhook deliveries waiting (pending).")
    gauge.add_metric([], backlog)
    return [counter, gauge]


def _database_families() -> list:
    try:
        return _active_sessions() + _webhook_deliveries()
    except SQLAlchemyError as exc:
        db.session.rollback()
        # The rest of the metrics stay scrapeable while the database is down.
        log.warning("database metrics not counted: %s", type(exc).__name__)
        return []


class _Families:
    def __init__(self, families):
        self.families = families

    def collect(self):
        return self.families


def exposition() -> bytes:
    """Every metric in the Prometheus text format."""
    # prometheus-client chose file-backed values from this variable when it was
    # imported; read it the same way (it is not an app setting).
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
    else:
        registry = REGISTRY
    output = generate_latest(registry)
    families = _database_families()
    if families:
        extra = CollectorRegistry()
        extra.register(_Families(families))
        output += generate_latest(extra)
    return output


bp = Blueprint("metrics", __name__, description="Prometheus metrics")


@bp.get("/metrics")
@read_only
@bp.doc(responses={"200": {
    "description": "Prometheus text exposition format",
    "content": {"text/plain": {"schema": {"type": "string"}}},
}})
def metrics():
    """Request counts and latencies, logins by outcome, refresh-token reuse
    (the sum over all gunicorn workers); active sessions, webhook deliveries
    by outcome and their backlog (read from the database)."""
    return Response(exposition(), content_type=CONTENT_TYPE_LATEST)
