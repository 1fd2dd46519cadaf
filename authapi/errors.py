"""The one error envelope of API.md §1 and everything that maps onto it.

This is the error catalogue: every code the API answers, with its status and
message (the ``APIError`` classes, ``HTTP_CODES``, and ``SERVER_REFUSALS`` for
what gunicorn refuses before the app). The OpenAPI document (docs.py), gunicorn's
error page (gunicorn.conf.py) and nginx's (deploy/nginx.conf, checked by
tests/test_nginx.py) are built from it or checked against it.
"""

import logging

import redis
from flask import g, jsonify
from flask_jwt_extended.exceptions import CSRFError
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from werkzeug.exceptions import HTTPException

log = logging.getLogger("authapi.errors")


class APIError(Exception):
    """A refusal the API layer turns into its status and error code."""

    status = 400
    code = "bad_request"
    message = "The request could not be processed."

    def __init__(self, message=None, details=None, headers=None, extra=None):
        super().__init__(message or self.message)
        self.message = message or self.message
        self.details = details
        self.headers = headers or {}
        # Fields of the error object beyond code, message and details (only
        # mfa_required's second-step token, API.md §8).
        self.extra = extra or {}


class BadRequest(APIError):
    status, code, message = 400, "bad_request", "The request is malformed."


class Unauthorized(APIError):
    status, code, message = 401, "unauthorized", "Authentication is required."


class InvalidCredentials(APIError):
    status, code, message = 401, "invalid_credentials", "Invalid username or password."


class TokenInvalid(APIError):
    status, code, message = 401, "token_invalid", "The token is invalid."


class TokenExpired(APIError):
    status, code, message = 401, "token_expired", "The token has expired."


class TokenRevoked(APIError):
    status, code, message = 401, "token_revoked", "The token has been revoked."


class TokenReused(APIError):
    status, code, message = (
        401,
        "token_reused",
        "This refresh token was already used; its session has been ended.",
    )


class Forbidden(APIError):
    status, code, message = 403, "forbidden", "You are not allowed to do this."


class EmailNotVerified(APIError):
    status, code, message = 403, "email_not_verified", "Verify your email address before logging in."


class MfaRequired(APIError):
    status, code, message = (
        403,
        "mfa_required",
        "A second factor is required: send a code with this mfa_token to /auth/login/mfa.",
    )

    def __init__(self, mfa_token: str, expires_in: int):
        super().__init__(extra={"mfa_token": mfa_token, "expires_in": expires_in})


class MfaEnrollmentRequired(APIError):
    status, code, message = (
        403,
        "mfa_enrollment_required",
        "Admin endpoints need a login with a second factor: log in again with TOTP on, or with a passkey.",
    )


class NotFound(APIError):
    status, code, message = 404, "not_found", "The resource was not found."


class Conflict(APIError):
    status, code, message = 409, "conflict", "The request conflicts with existing data."


class UnsupportedMediaType(APIError):
    status, code, message = 415, "unsupported_media_type", "Request bodies must be application/json."


class ValidationFailed(APIError):
    status, code, message = 422, "validation_error", "The request data is invalid."


class RateLimited(APIError):
    status, code, message = 429, "rate_limited", "Too many requests; slow down."

    def __init__(self, retry_after: int, message=None):
        """``retry_after``: seconds, from ratelimit.retry_after (the one rule
        for every 429's Retry-After)."""
        super().__init__(message, headers={"Retry-After": str(retry_after)})


class ServiceUnavailable(APIError):
    status, code, message = (
        503,
        "service_unavailable",
        "A backing service is unavailable; try again shortly.",
    )


# Werkzeug's HTTP exceptions, by status, as the contract names them.
HTTP_CODES = {
    400: ("bad_request", "The request is malformed."),
    401: ("unauthorized", "Authentication is required."),
    403: ("forbidden", "You are not allowed to do this."),
    404: ("not_found", "The requested URL was not found."),
    405: ("method_not_allowed", "The method is not allowed for this URL."),
    409: ("conflict", "The request conflicts with existing data."),
    413: ("payload_too_large", "The request body is too large."),
    415: ("unsupported_media_type", "Request bodies must be application/json."),
    422: ("validation_error", "The request data is invalid."),
    429: ("rate_limited", "Too many requests; slow down."),
    500: ("internal_error", "An internal error occurred."),
    503: ("service_unavailable", "A backing service is unavailable; try again shortly."),
}


# What gunicorn refuses itself, before the app sees the request (over its
# limits on the request line and headers, or malformed): gunicorn.conf.py
# answers these in the envelope, never with gunicorn's own message, which can
# quote the request line (a token in a query string included).
SERVER_REFUSALS = {
    400: HTTP_CODES[400],
    403: ("forbidden", "The request is forbidden."),
    414: ("bad_request", "The request line is too long."),
    417: ("bad_request", "The expectation cannot be met."),
    431: ("bad_request", "The request headers are too large."),
    500: HTTP_CODES[500],
}


def server_refusal(status: int) -> tuple[str, str]:
    """The code and message for a refusal of the server in front of the app."""
    if status in SERVER_REFUSALS:
        return SERVER_REFUSALS[status]
    return (APIError.code, APIError.message) if status < 500 else HTTP_CODES[500]


def catalogue() -> dict[int, dict[str, str]]:
    """status -> {code: message} of every error the API can answer."""
    entries: dict[int, dict[str, str]] = {}
    for status, (code, message) in HTTP_CODES.items():
        entries.setdefault(status, {})[code] = message
    classes = list(APIError.__subclasses__())
    while classes:
        error = classes.pop(0)
        classes.extend(error.__subclasses__())
        entries.setdefault(error.status, {}).setdefault(error.code, error.message)
    return entries


def envelope(code, message, details=None, extra=None) -> dict:
    """The body of every error answer, in the one shape of API.md §1."""
    body = {"code": code, "message": message}
    if details:
        body["details"] = details
    body.update(extra or {})
    return {"error": body}


def error_response(status, code, message, details=None, headers=None, extra=None):
    """Build every error response of the API."""
    response = jsonify(envelope(code, message, details, extra))
    response.status_code = status
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


def _validation_details(messages):
    """webargs nests messages under their location ({"json": {...}}); the
    contract wants field -> list of messages."""
    if isinstance(messages, dict) and len(messages) == 1:
        (location,) = messages
        if location in {"json", "form", "json_or_form", "query", "path", "headers"}:
            messages = messages[location]
    if not isinstance(messages, dict):
        return {"_schema": messages if isinstance(messages, list) else [str(messages)]}
    details = {}
    for field, value in messages.items():
        if isinstance(value, dict):
            # A nested or per-index error: keep it readable but flat.
            value = [f"{key}: {msg}" for key, msgs in value.items() for msg in _as_list(msgs)]
        details[str(field)] = _as_list(value)
    return details


def _as_list(value):
    return [str(v) for v in value] if isinstance(value, list) else [str(value)]


def handle_api_error(error: APIError):
    return error_response(error.status, error.code, error.message, error.details, error.headers, error.extra)


def handle_http_exception(error: HTTPException):
    status = error.code or 500
    code, message = HTTP_CODES.get(status, ("bad_request" if status < 500 else "internal_error", None))
    details = None
    data = getattr(error, "data", None)  # webargs / flask-smorest validation errors
    if status == 422 and data and "messages" in data:
        details = _validation_details(data["messages"])
    headers = {}
    if status == 405 and error.valid_methods:
        headers["Allow"] = ", ".join(error.valid_methods)
    # A 429 here is the limiter's: ratelimit.add_rate_limit_headers adds its
    # Retry-After.
    return error_response(status, code, message or error.description, details, headers)


def handle_unavailable(error):
    log.error(
        "backing service unavailable: %s",
        type(error).__name__,
        extra={"request_id": g.get("request_id")},
    )
    return handle_api_error(ServiceUnavailable())


def handle_database_error(error: DBAPIError):
    # A dropped connection, a database that is down or (SQLite) a lock held too
    # long is the client's 503, not a bug; anything else is a genuine 500.
    if error.connection_invalidated or isinstance(error, (OperationalError, InterfaceError)):
        return handle_unavailable(error)
    return handle_unexpected(error)


def handle_unexpected(error: Exception):
    log.exception("unhandled error", extra={"request_id": g.get("request_id")})
    return error_response(500, "internal_error", "An internal error occurred.")


def register_error_handlers(app):
    """Route every failure through error_response. Registered after the
    extensions so these replace flask-smorest's HTTPException handler."""
    app.register_error_handler(APIError, handle_api_error)
    # A refresh cookie without the matching X-CSRF-TOKEN header (API.md §3):
    # flask-jwt-extended would call it "unauthorized"; the contract says the
    # token is not acceptable as presented.
    app.register_error_handler(CSRFError, lambda error: handle_api_error(TokenInvalid()))
    app.register_error_handler(HTTPException, handle_http_exception)
    # Any Redis failure, not only a lost connection: a Redis out of memory or
    # read-only after a failover cannot record a revocation or a failed login.
    app.register_error_handler(redis.exceptions.RedisError, handle_unavailable)
    # redis-py's cluster errors outside RedisError (no node for a slot while a
    # Cluster fails over); the store turns its own into ConnectionError.
    app.register_error_handler(redis.exceptions.RedisClusterException, handle_unavailable)
    app.register_error_handler(DBAPIError, handle_database_error)
    app.register_error_handler(Exception, handle_unexpected)
