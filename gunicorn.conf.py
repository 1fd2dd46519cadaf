"""gunicorn settings, all from the environment (API.md §5: PORT, WEB_CONCURRENCY;
and BIND_ADDRESS, docs/operations.md)."""

import ipaddress
import json
import os
import re
import shutil
import socket
import struct
import sys
import tempfile
import uuid
from datetime import datetime, timezone
from pathlib import Path

from gunicorn import util as gunicorn_util
from gunicorn.glogging import Logger

HOST_NAME = re.compile(r"[A-Za-z0-9]([A-Za-z0-9.-]{0,251}[A-Za-z0-9])?")


def listen_on(address: str, port: str) -> str:
    """gunicorn's bind for BIND_ADDRESS and PORT: an IPv6 address in brackets."""
    address = address.strip()
    if address.startswith("[") and address.endswith("]"):
        address = address[1:-1]
    try:
        parsed = ipaddress.ip_address(address)
    except ValueError:
        if not HOST_NAME.fullmatch(address):
            sys.exit(f"authapi: BIND_ADDRESS must be an IP address or a host name, got {address!r}")
        return f"{address}:{port}"
    return f"[{parsed}]:{port}" if parsed.version == 6 else f"{parsed}:{port}"


# Every interface by default: a container or a PaaS router reaches the app from
# outside (and sets PORT). Behind nginx on the same host: BIND_ADDRESS=127.0.0.1.
bind = listen_on(os.environ.get("BIND_ADDRESS") or "0.0.0.0", os.environ.get("PORT") or "8000")
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
# On SIGTERM workers finish their requests for up to this long. Heroku and
# Kubernetes kill 30 s after SIGTERM: stop before that (docker stop waits only
# 10 s unless given --time / stop_grace_period, see the README).
graceful_timeout = 25
keepalive = 5

# Request size limits (gunicorn's defaults, stated because they are a defence):
# a longer request line is answered 414, more or longer header fields 431, by
# gunicorn itself before the app sees the request.
limit_request_line = 4094
limit_request_fields = 100
limit_request_field_size = 8190

# What gunicorn refuses itself (over the limits above, or malformed) never
# reaches the app. Answer it in the API's one error envelope (API.md §1), not
# gunicorn's HTML page, with the code and message of authapi.errors'
# SERVER_REFUSALS and the security headers of authapi.http.
def write_json_error(sock, status_int, reason, mesg):
    # Imported here, not at the top: importing authapi imports prometheus_client,
    # which must come after PROMETHEUS_MULTIPROC_DIR is set (below). A worker
    # has the app loaded (preload_app) long before it refuses a request.
    from authapi import errors, http

    body = json.dumps(errors.envelope(*errors.server_refusal(status_int))).encode()
    # The request id is a fresh one: the request was not read far enough to
    # trust its own.
    headers = {
        "Connection": "close", "Content-Type": "application/json", **http.SECURITY_HEADERS,
        "X-Request-ID": uuid.uuid4().hex, "Content-Length": str(len(body)),
    }
    head = f"HTTP/1.1 {status_int} {reason}\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    gunicorn_util.write_nonblock(sock, (head + "\r\n").encode("latin-1") + body)


# gunicorn has no setting for this page; its workers call util.write_error.
gunicorn_util.write_error = write_json_error

# gunicorn sets no deadline for reading a request: a client that sends part of
# its headers and then nothing would hold a sync worker, or a gthread thread,
# for as long as it keeps the connection open. A receive/send timeout on the
# listening socket, which Linux copies to every accepted connection, drops such
# a client after this many seconds of silence. (A buffering proxy in front
# remains the full answer to slow clients.)
client_io_timeout = 5


def when_ready(server):
    timeout = struct.pack("ll", client_io_timeout, 0)
    for listener in server.LISTENERS:
        for option in (socket.SO_RCVTIMEO, socket.SO_SNDTIMEO):
            listener.sock.setsockopt(socket.SOL_SOCKET, option, timeout)

# Client IPs and the scheme come from ProxyFix (PROXY_FIX_X_FOR) in the app only;
# gunicorn itself trusts no forwarding headers.
forwarded_allow_ips = ""
secure_scheme_headers = {}

# The app writes the access log itself: one line per request on stdout
# (logger authapi.request, JSON with LOG_FORMAT=json), with the user id and the
# client address as ProxyFix sees it, which gunicorn cannot know. gunicorn's own
# access log would be a second, poorer line for every request; pass
# --access-logfile=- (e.g. in GUNICORN_CMD_ARGS) to have it anyway.
accesslog = None
errorlog = "-"

# prometheus-client's multi-process mode (authapi.metrics): every worker keeps
# its counters in files in this directory and /metrics adds them up. It must be
# set before the app, and so prometheus_client, is imported (preload_app imports
# it right after this file), and it must start empty: files of an earlier run
# would be added to this one's counts.
_own_metrics_dir = not os.environ.get("PROMETHEUS_MULTIPROC_DIR")
if _own_metrics_dir:
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="authapi-metrics-")
else:
    Path(os.environ["PROMETHEUS_MULTIPROC_DIR"]).mkdir(parents=True, exist_ok=True)
    for stale in Path(os.environ["PROMETHEUS_MULTIPROC_DIR"]).glob("*.db"):
        stale.unlink()


def child_exit(server, worker):
    # A dead worker's counters stay in the totals; only its live gauges go.
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


def on_exit(server):
    if _own_metrics_dir:
        shutil.rmtree(os.environ["PROMETHEUS_MULTIPROC_DIR"], ignore_errors=True)


class JsonLineFormatter:
    """The app's JSON log line (authapi.logs): time, level, logger, message,
    then the record's fields."""

    def format(self, record):
        line = {
            "time": datetime.fromtimestamp(record.created, timezone.utc).isoformat(),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            **getattr(record, "fields", {}),
        }
        return json.dumps(line, default=str)


class JsonLogger(Logger):
    """gunicorn's own lines and its access log as one JSON object a line."""

    def setup(self, cfg):
        super().setup(cfg)
        for log in (self.error_log, self.access_log):
            for handler in log.handlers:
                handler.setFormatter(JsonLineFormatter())

    def access(self, resp, req, environ, request_time):
        if not self.access_log_enabled:
            return
        headers = {name.lower(): value for name, value in resp.headers}
        status = resp.status.split(None, 1)[0] if isinstance(resp.status, str) else resp.status
        fields = {
            "method": environ.get("REQUEST_METHOD"),
            # The path only: a query string may carry anything a client put there.
            "path": environ.get("PATH_INFO"),
            "status": int(status),
            "duration_ms": round(request_time.total_seconds() * 1000, 2),
            "request_id": headers.get("x-request-id"),
            "remote_addr": environ.get("REMOTE_ADDR"),
            "response_bytes": getattr(resp, "sent", None),
        }
        self.access_log.info("request", extra={"fields": fields})


class TextLogger(Logger):
    """gunicorn's own text lines (and its access log, when on) in gunicorn's
    format, with every control character escaped as in the app's text lines:
    a request line or header a client sent cannot start a line."""

    def setup(self, cfg):
        super().setup(cfg)
        # Imported here: see write_json_error. The arbiter builds its logger
        # after this file has run, so after PROMETHEUS_MULTIPROC_DIR is set.
        from authapi.logs import TextFormatter

        for log in (self.error_log, self.access_log):
            for handler in log.handlers:
                handler.setFormatter(TextFormatter(handler.formatter._fmt, handler.formatter.datefmt))


# The same format as the app's logs (LOG_FORMAT, json by default in production).
_log_format = os.environ.get("LOG_FORMAT") or (
    "json" if os.environ.get("AUTHAPI_ENV") == "production" else "text"
)
logger_class = JsonLogger if _log_format == "json" else TextLogger

# gunicorn 24+ opens a control socket at one fixed path per user; several
# instances on one host (tests, blue/green) would fight over it, and we do not use it.
control_socket_disable = True
