"""The /health blueprint: liveness and readiness probes for load balancers and
orchestrators. No authentication: a probe carries no credentials, and no rate
limit: readiness is cheap instead. Its answer is shared (``SharedReadiness``):
at most one check at a time per process, its result reused for READY_TTL."""

import logging
import threading
import time

from flask import current_app, g
from marshmallow import Schema, fields, validate
from sqlalchemy import text

from .extensions import Blueprint, db, read_only, store

log = logging.getLogger("authapi.health")

# A probe must answer before the load balancer gives up on it (often 5 s), even
# when a backend hangs instead of refusing: a dropped packet can hold a TCP
# connect for minutes. Both checks run at once, so this bounds the whole answer.
CHECK_TIMEOUT = 2.0
# How long one readiness answer serves every probe of this process: a failure
# (or a recovery) is reported at most this long after the check that saw it.
READY_TTL = 1.0

bp = Blueprint("health", __name__, url_prefix="/health", description="Health probes")

def status_field(*values):
    return fields.String(required=True, validate=validate.OneOf(values))


class LiveOut(Schema):
    status = status_field("ok")


class ChecksOut(Schema):
    database = status_field("ok", "error")
    redis = status_field("ok", "error")


class ReadyOut(Schema):
    status = status_field("ok", "error")
    checks = fields.Nested(ChecksOut, required=True)


@bp.get("/live")
@read_only
@bp.response(200, LiveOut)
def live():
    """The process serves requests; it checks nothing else."""
    return {"status": "ok"}


@bp.get("/ready")
@read_only
@bp.response(200, ReadyOut)
@bp.alt_response(503, schema=ReadyOut, description="A backing service failed its check")
def ready():
    """The database answers SELECT 1 and Redis answers PING (without
    ``REDIS_URL`` in development the in-process store, which is always ok).
    Probes within READY_TTL of a check share its answer."""
    readiness = current_app.extensions[EXTENSION]
    checks = readiness.result(lambda: {"database": _database_check(), "redis": store.backend.ping})
    ok = all(result == "ok" for result in checks.values())
    return {"status": "ok" if ok else "error", "checks": checks}, 200 if ok else 503


EXTENSION = "authapi_readiness"


@bp.record_once
def _init_readiness(state):
    state.app.extensions[EXTENSION] = SharedReadiness()


class SharedReadiness:
    """One readiness check for every probe of a process: a probe within
    READY_TTL of the last check's start gets its result; one arriving while a
    check runs waits for that check (the lock) and gets its result. So however
    many probes come, a process runs one check at a time and at most one per
    READY_TTL: two threads and one pooled connection, not per request."""

    def __init__(self):
        self.lock = threading.Lock()
        self.started = None  # monotonic time the cached check started
        self.checks = None
        self.running = {}  # check name -> its thread, still running after a timeout

    def result(self, make_checks) -> dict:
        """The cached result, or a new one from ``make_checks()``'s checks."""
        with self.lock:
            if self.started is not None and time.monotonic() - self.started < READY_TTL:
                return self.checks
            started = time.monotonic()
            self.checks = run_checks(make_checks(), self.running)
            self.started = started
            return self.checks


def _database_check():
    engine = db.engine  # resolved here: the check thread has no app context

    def check():
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))

    return check


def run_checks(checks: dict, running: dict) -> dict:
    """Run each check in its own thread; "ok" for those that return within
    CHECK_TIMEOUT without raising, "error" for the rest. ``running`` holds the
    threads of earlier checks that hung past their timeout: while one still
    hangs its check is "error" without a new thread, so a backend that hangs
    holds one thread however long it hangs, not one more per check."""
    results = {name: "error" for name in checks}
    request_id = g.get("request_id")
    for name, thread in list(running.items()):
        if thread.is_alive():
            log.warning("readiness check %s still hangs", name, extra={"request_id": request_id})
            checks = {other: check for other, check in checks.items() if other != name}
        else:
            del running[name]

    def run(name, check):
        try:
            check()
        except Exception as exc:  # any failure of a backend is a failed check
            # The type only: a driver's message may carry a host or user name.
            log.warning("readiness check %s failed: %s", name, type(exc).__name__,
                        extra={"request_id": request_id})
        else:
            results[name] = "ok"

    threads = {name: threading.Thread(target=run, args=(name, check), daemon=True)
               for name, check in checks.items()}
    deadline = time.monotonic() + CHECK_TIMEOUT
    for thread in threads.values():
        thread.start()
    for thread in threads.values():
        thread.join(max(0.0, deadline - time.monotonic()))
    # A hung check is left to finish on its own; it can only write to `results`.
    answer = dict(results)
    for name, thread in threads.items():
        if thread.is_alive():
            running[name] = thread
            log.warning("readiness check %s timed out", name, extra={"request_id": request_id})
    return answer
