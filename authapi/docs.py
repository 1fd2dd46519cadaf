"""The OpenAPI document (/openapi.json) and the page that renders it (/docs).

flask-smorest builds the document from the marshmallow schemas of each view.
``OperationDocs`` adds what the views do not declare: the bearer security of
each endpoint and the errors it can answer, all in the one envelope of API.md
§1. It reads them off the view itself (a decorator that checks a token, the
role guard, path and query parameters, the request body), so a new endpoint is
documented without repeating its rules here. Only the refusals that come from
an endpoint's business rules, and which endpoint takes a refresh token, are
listed by name below.

Swagger UI's files come from the swagger-ui-bundle package and are served by
the app: the page works offline and loads nothing from a CDN.
"""

from apispec import BasePlugin
from flask import Blueprint, send_from_directory
from marshmallow import Schema, fields
from swagger_ui_bundle import swagger_ui_path

FORM_CONTENT_TYPE = "application/x-www-form-urlencoded"


class ErrorBodyOut(Schema):
    code = fields.String(required=True, metadata={"example": "validation_error"})
    message = fields.String(required=True)
    details = fields.Dict(
        keys=fields.String(),
        values=fields.List(fields.String()),
        metadata={"description": "For validation errors: field name -> messages."},
    )


class ErrorOut(Schema):
    error = fields.Nested(ErrorBodyOut, required=True)


# status -> (component name, description naming the error codes of API.md §1)
ERROR_RESPONSES = {
    400: ("BadRequest", "`bad_request`: malformed JSON, or a body that is not a JSON object."),
    401: ("Unauthorized", "`unauthorized` (no token), `token_invalid`, `token_expired`, "
          "`token_revoked`, `token_reused` (refresh), or `invalid_credentials` (login)."),
    403: ("Forbidden", "`forbidden` (role, closed registration) or `email_not_verified` (login)."),
    404: ("NotFound", "`not_found`."),
    409: ("Conflict", "`conflict`: the email or username is taken, or the last active admin "
          "would be lost; `details` names the field."),
    413: ("PayloadTooLarge", "`payload_too_large`: the body is over `MAX_CONTENT_LENGTH`."),
    415: ("UnsupportedMediaType", "`unsupported_media_type`: the body is not `application/json`."),
    422: ("ValidationError", "`validation_error`; `details` maps each field to its messages."),
    429: ("RateLimited", "`rate_limited`: a rate limit or a login lockout; see `Retry-After`."),
    503: ("ServiceUnavailable", "`service_unavailable`: the database or Redis is unreachable."),
}
DEFAULT_RESPONSE = ("Error", "Any other error, in the same envelope.")

SECURITY_SCHEMES = {
    "accessToken": {
        "type": "http", "scheme": "bearer", "bearerFormat": "JWT",
        "description": "An access token from /auth/login, /auth/refresh or /auth/password/change.",
    },
    "refreshToken": {
        "type": "http", "scheme": "bearer", "bearerFormat": "JWT",
        "description": "A refresh token (it may be sent as JSON `refresh_token` instead).",
    },
}

# The refusals that come from an endpoint's own rules rather than its shape.
BUSINESS_ERRORS = {
    "auth.register": {403, 409},
    "auth.login": {401, 403},
    "users.update_me": {409},
    "users.delete_me": {409},
    "users.create_user": {409},
    "users.update_user": {409},
    "users.delete_user": {409},
    "keys.jwks": {404},
}
# Blueprints behind the rate limits whose endpoints reach the database or Redis.
API_BLUEPRINTS = {"auth", "users"}

# Endpoints that take a refresh token (as the bearer, or in the JSON body or
# the browser cookie instead) rather than an access token.
REFRESH_TOKEN_ENDPOINTS = {"auth.refresh"}
ROLE_GUARD = "role_required.<locals>.decorator.<locals>.wrapper"


def _layers(view):
    """The code objects of each layer of a decorated view, outermost first,
    following functools.wraps' __wrapped__."""
    while view is not None:
        code = getattr(view, "__code__", None)
        if code is not None:
            yield code
        view = getattr(view, "__wrapped__", None)


def _requires_token(view) -> bool:
    # jwt_required() and our own token decorators all end in this call; a test
    # checks the result against what the live endpoints answer without a token.
    return any("verify_jwt_in_request" in code.co_names for code in _layers(view))


def _has_role_guard(view) -> bool:
    return any(code.co_qualname == ROLE_GUARD for code in _layers(view))


def _arguments(view) -> list[dict]:
    """The @bp.arguments of a view, as flask-smorest records them on it."""
    return getattr(view, "_apidoc", {}).get("arguments", {}).get("parameters", [])


def _body_is_optional(view) -> bool:
    """A body whose schema requires no field may be left out (logout, refresh)."""
    for parameter in _arguments(view):
        if parameter.get("in") not in {"json", "json_or_form", "form"}:
            continue
        schema = parameter["schema"]
        schema = schema() if isinstance(schema, type) else schema
        if any(field.required for field in schema.fields.values()):
            return False
    return True


def _accepts_form(view) -> bool:
    return any(parameter.get("in") == "json_or_form" for parameter in _arguments(view))


class OperationDocs(BasePlugin):
    """An apispec plugin completing each operation flask-smorest documents."""

    def __init__(self, app):
        self.app = app

    def init_spec(self, spec):
        super().init_spec(spec)
        for name, scheme in SECURITY_SCHEMES.items():
            spec.components.security_scheme(name, scheme)
        for name, description in [*ERROR_RESPONSES.values(), DEFAULT_RESPONSE]:
            spec.components.response(
                name,
                {"description": description, "content": {"application/json": {"schema": ErrorOut}}},
                lazy=True,
            )

    def operation_helper(self, path=None, operations=None, **kwargs):
        rule = kwargs.get("rule")
        view = self.app.view_functions.get(rule.endpoint) if rule is not None else None
        if view is None:
            return
        common = set(BUSINESS_ERRORS.get(rule.endpoint, ()))
        if rule.arguments:
            common.add(404)
        if rule.endpoint.split(".")[0] in API_BLUEPRINTS:
            common |= {429, 503}
        security = None
        if _requires_token(view):
            if rule.endpoint in REFRESH_TOKEN_ENDPOINTS:
                # {}: the token may come in the body instead of the header.
                security = [{"refreshToken": []}, {}]
            else:
                security = [{"accessToken": []}]
            common.add(401)
        if _has_role_guard(view):
            common.add(403)
        for operation in operations.values():
            statuses = set(common)
            if security is not None:
                operation["security"] = security
            body = operation.get("requestBody")
            if body is not None:
                statuses |= {400, 413, 415, 422}
                if _body_is_optional(view):
                    body["required"] = False
                if _accepts_form(view):
                    body["content"][FORM_CONTENT_TYPE] = dict(body["content"]["application/json"])
            if any(p.get("in") == "query" for p in operation.get("parameters", [])):
                statuses.add(422)
            responses = operation.setdefault("responses", {})
            for status in sorted(statuses):
                # Ours replace flask-smorest's (same schema, but its
                # descriptions do not name the error codes).
                responses.pop(status, None)
                responses[str(status)] = ERROR_RESPONSES[status][0]
            responses["default"] = DEFAULT_RESPONSE[0]


# ---------------------------------------------------------------- Swagger UI files

# config.py points flask-smorest's page at this prefix (OPENAPI_SWAGGER_UI_URL).
assets = Blueprint("docs_assets", __name__, url_prefix="/docs/assets")


@assets.get("/<path:filename>")
def asset(filename):
    # send_from_directory refuses paths that leave the directory.
    response = send_from_directory(swagger_ui_path, filename, max_age=86400)
    response.cache_control.public = True
    return response
