"""Request and response hooks: request ids, body checks, security headers."""

import re
import uuid

from flask import g, request
from werkzeug.exceptions import BadRequest, RequestEntityTooLarge

from . import errors

REQUEST_ID_PATTERN = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
FORM_ENDPOINTS = {"auth.login"}  # OAuth2 password grant (API.md §1)
FORM_MIMETYPE = "application/x-www-form-urlencoded"

SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    # Every response may carry a token or account data.
    "Cache-Control": "no-store",
}


def assign_request_id():
    incoming = request.headers.get("X-Request-ID", "")
    # Echo only ids that cannot inject anything into logs or headers.
    g.request_id = incoming if REQUEST_ID_PATTERN.match(incoming) else uuid.uuid4().hex


def check_body():
    """Refuse bodies of the wrong type (415) or that are not a JSON object (400)
    before any view or extension parses them."""
    if request.routing_exception is not None or not _has_body():
        return
    if request.mimetype == FORM_MIMETYPE and request.endpoint in FORM_ENDPOINTS:
        request.form  # reads the body now, so an oversized one is a 413 here
        return
    if not request.is_json:
        raise errors.UnsupportedMediaType()
    try:
        body = request.get_json()
    except RequestEntityTooLarge:
        raise
    except BadRequest:
        raise errors.BadRequest("The request body is not valid JSON.") from None
    if not isinstance(body, dict):
        raise errors.BadRequest("The request body must be a JSON object.")


def _has_body() -> bool:
    return bool(request.content_length) or "chunked" in request.headers.get(
        "Transfer-Encoding", ""
    ).lower()


def add_response_headers(response):
    response.headers["X-Request-ID"] = g.get("request_id") or uuid.uuid4().hex
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    return response


def register_request_hooks(app):
    app.before_request(assign_request_id)
    app.before_request(check_body)
    app.after_request(add_response_headers)
