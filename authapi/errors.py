"""The one error envelope of API.md §1 and everything that maps onto it."""

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

    def __init__(self, message=None, details=None, headers=None):
        super().__init__(message or self.message)
        self.message = message or self.message
        self.details = details
        self.headers = headers or {}


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
        super().__init__(message, headers={"Retry-After": str(max(int(retry_after), 1))})


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


def error_response(status, code, message, details=None, headers=None):
    """Build every error response of the API, in the one shape of API.md §1."""
    body = {"code": code, "message": message}
    if details:
        body["details"] = details
    response = jsonify({"error": body})
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
    return error_response(error.status, error.code, error.message, error.details, error.headers)


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
    if status == 429:
        retry_after = getattr(error, "retry_after", None)
        if retry_after is not None:
            headers["Retry-After"] = str(retry_after)
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
    app.register_error_handler(DBAPIError, handle_database_error)
    app.register_error_handler(Exception, handle_unexpected)
