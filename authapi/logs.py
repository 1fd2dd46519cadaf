"""Logging: one line per record, as text or JSON (``LOG_FORMAT``), and one line
per request (logger ``authapi.request``).

Records logged while a request is served carry its ``request_id`` and
``client_ip``; a text line escapes every control character a value carries
(``escape_controls``), so a client cannot start a forged line; JSON encodes them; security events carry an ``event`` field (and ``user_id`` when
known). What is never logged: request bodies, query strings, headers (so no
``Authorization``), tokens and passwords. The console mail backend is the one
exception, in development only (API.md §4).
"""

import logging
import re
import sys
import time

import click
from flask import Flask, current_app, g, has_request_context, request
from flask.logging import default_handler
from pythonjsonlogger.json import JsonFormatter as _JsonFormatter

from .metrics import request_started
from .tokens import signed_in_user_id

HANDLER_NAME = "authapi"
request_log = logging.getLogger("authapi.request")

# Extra fields a text line shows after its message, in this order.
TEXT_FIELDS = ("event", "user_id", "request_id", "client_ip")


# What could end a line or rewrite one on a terminal or in a log viewer: C0
# (CR, LF, ESC...), DEL, C1 (NEL...), the Unicode line and paragraph
# separators and the bidirectional overrides (which reorder what is shown). The
# backslash too, so that an escape in the log always means one was made.
CONTROLS = re.compile(r"[\\\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")
NAMED_ESCAPES = {"\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t"}


def escape_controls(value: str) -> str:
    """``value`` on one line: each control character as a Python-style escape."""
    return CONTROLS.sub(lambda m: NAMED_ESCAPES.get(m[0]) or f"\\u{ord(m[0]):04x}", value)


class RequestContext(logging.Filter):
    """Stamps records logged during a request with its id and client address."""

    def filter(self, record: logging.LogRecord) -> bool:
        if has_request_context():
            if getattr(record, "request_id", None) is None:
                record.request_id = g.get("request_id")
            if getattr(record, "client_ip", None) is None:
                record.client_ip = request.remote_addr
            user_id = getattr(record, "user_id", None)
            if user_id is not None:
                # So that the request's own line names the user its events named
                # (a login has no token yet, but its "login" event has the id).
                g.log_user_id = user_id
        return True


class JsonFormatter(_JsonFormatter):
    """One JSON object a line: time (ISO 8601, UTC), level, logger, message
    and every extra field of the record."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("fmt", "{levelname}{name}{message}")
        kwargs.setdefault("style", "{")
        kwargs.setdefault("rename_fields", {"levelname": "level", "name": "logger"})
        kwargs.setdefault("timestamp", "time")
        super().__init__(*args, **kwargs)


class TextFormatter(logging.Formatter):
    """``time level logger: message [field=value ...]`` on one line, every
    value escaped (``escape_controls``). A traceback follows on lines of its
    own, each indented, so a line that does not start with a space always
    starts a record. gunicorn.conf.py gives gunicorn's lines the same escaping
    with gunicorn's own format (``fmt``, ``datefmt``)."""

    def __init__(self, fmt="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt=None):
        super().__init__(fmt, datefmt)

    def format(self, record: logging.LogRecord) -> str:
        # logging.Formatter.format, with the record's own text escaped.
        record.message = record.getMessage()
        if self.usesTime():
            record.asctime = self.formatTime(record, self.datefmt)
        extras = [
            f"{name}={getattr(record, name)}"
            for name in TEXT_FIELDS
            if getattr(record, name, None) is not None
        ]
        line = escape_controls(self.formatMessage(record))
        if extras:
            line += f" [{escape_controls(' '.join(extras))}]"
        below = []
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        for text in (record.exc_text, record.stack_info and self.formatStack(record.stack_info)):
            if text:
                below.extend(f"    {escape_controls(part)}" for part in text.split("\n"))
        return "\n".join([line, *below])


def configure_logging(app: Flask) -> None:
    """Send every logger's records through one root handler in the configured
    format, and log each request once it is answered."""
    root = logging.getLogger()
    handler = next((h for h in root.handlers if h.get_name() == HANDLER_NAME), None)
    if handler is None:
        # Serving, stdout: the twelve-factor place, collected as the app's log.
        # Under the flask CLI (the app is built inside a click context), stderr:
        # a command's stdout is its one result line.
        in_cli = click.get_current_context(silent=True) is not None
        handler = logging.StreamHandler(sys.stderr if in_cli else sys.stdout)
        handler.set_name(HANDLER_NAME)
        handler.addFilter(RequestContext())
        root.addHandler(handler)
    handler.setFormatter(JsonFormatter() if app.config["LOG_FORMAT"] == "json" else TextFormatter())
    level = app.config["LOG_LEVEL"]
    root.setLevel(level)
    # Flask's own handler would print the app's records a second time, as text.
    app.logger.removeHandler(default_handler)
    app.logger.setLevel(level)
    # The request line is written after every other hook has shaped the
    # response (after_request hooks run in reverse order of registration).
    app.after_request(log_request)


def _user_id():
    return signed_in_user_id() or g.get("log_user_id")


def log_request(response):
    if not request_log.isEnabledFor(logging.INFO):
        return response
    current = request._get_current_object()
    # Timed from the moment the WSGI app was called (authapi.metrics).
    started = request_started()
    duration_ms = round((time.perf_counter() - started) * 1000, 2) if started else None
    fields = {
        "method": current.method,
        # The path only: a query string may carry anything a client put there.
        "path": current.path,
        "status": response.status_code,
        "duration_ms": duration_ms,
        "user_id": _user_id(),
        # What RequestContext would add, at hand here.
        "request_id": g.get("request_id"),
        "client_ip": current.remote_addr,
    }
    if current_app.config["LOG_FORMAT"] == "json":
        message = "request"
    else:
        message = f"{current.method} {current.path} {response.status_code} {duration_ms}ms"
    # Made here rather than by request_log.info, which walks the stack for the
    # caller's file and line (a third of the line's cost): no format shows them.
    request_log.handle(request_log.makeRecord(request_log.name, logging.INFO, __file__, _LINE, message, (), None,
                                              extra=fields))
    return response


_LINE = log_request.__code__.co_firstlineno
