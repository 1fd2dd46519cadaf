"""The OpenAPI document (/openapi.json) and the page that renders it (/docs).

flask-smorest builds the document from the marshmallow schemas of each view.
Each view declares beside its decorators what its shape does not show: the
bearer token it takes (``bearer``) and the refusals of its own rules
(``refusals``). ``OperationDocs`` adds the errors every operation of a shape
can answer (a body: 400, 413, 415, 422; a path parameter: 404; a bearer: 401;
the API blueprints: 429, 503), all in the one envelope of API.md §1, described
from the error catalogue in errors.py.

Swagger UI's files come from the swagger-ui-bundle package and are served by
the app: the page works offline and loads nothing from a CDN. Only the files
the page uses are served (``ASSETS``).
"""

from apispec import BasePlugin
from apispec.ext.marshmallow import MarshmallowPlugin
from flask import Blueprint, abort, send_from_directory
from marshmallow import Schema, fields
from swagger_ui_bundle import swagger_ui_path

from . import errors, http, ratelimit
from .extensions import Blueprint as APIBlueprint
from .extensions import api

FORM_CONTENT_TYPE = "application/x-www-form-urlencoded"


class ErrorBodyOut(Schema):
    code = fields.String(required=True, metadata={"example": "validation_error"})
    message = fields.String(required=True)
    details = fields.Dict(
        keys=fields.String(),
        values=fields.List(fields.String()),
        metadata={"description": "For validation errors: field name -> messages."},
    )
    mfa_token = fields.String(
        metadata={"description": "`mfa_required` only: the token for POST /auth/login/mfa (API.md §8)."}
    )
    expires_in = fields.Integer(metadata={"description": "`mfa_required` only: seconds the mfa_token lives."})


class ErrorOut(Schema):
    error = fields.Nested(ErrorBodyOut, required=True)


# What a status's answer carries beyond its code and message.
ERROR_NOTES = {
    409: "`details` names the field.",
    413: "The limit is `MAX_CONTENT_LENGTH`.",
    422: "`details` maps each field to its messages.",
    429: "A rate limit or a login lockout; see `Retry-After`.",
}
DOCUMENTED_STATUSES = (400, 401, 403, 404, 409, 413, 415, 422, 429, 503)
DEFAULT_RESPONSE = ("Error", "Any other error, in the same envelope.")


def _error_responses() -> dict[int, tuple[str, str]]:
    """status -> (component name, description naming each error code of that
    status with its message), from the catalogue in errors.py."""
    catalogue = errors.catalogue()
    responses = {}
    for status in DOCUMENTED_STATUSES:
        general_code = errors.HTTP_CODES[status][0]
        name = "".join(word.capitalize() for word in general_code.split("_"))
        codes = "\n".join(f"- `{code}`: {message}" for code, message in catalogue[status].items())
        note = ERROR_NOTES.get(status)
        responses[status] = (name, f"{codes}\n\n{note}" if note else codes)
    return responses


ERROR_RESPONSES = _error_responses()

SECURITY_SCHEMES = {
    "accessToken": {
        "type": "http", "scheme": "bearer", "bearerFormat": "JWT",
        "description": "An access token from /auth/login, /auth/refresh or /auth/password/change.",
    },
    "refreshToken": {
        "type": "http", "scheme": "bearer", "bearerFormat": "JWT",
        "description": "A refresh token (it may be sent as JSON `refresh_token` instead).",
    },
    "introspectionClient": {
        "type": "http", "scheme": "basic",
        "description": "An id and secret of INTROSPECTION_CLIENTS (RFC 7662).",
    },
}
SECURITY = {
    "access": [{"accessToken": []}],
    # {}: the refresh token may come in the body (or the browser cookie) instead.
    "refresh": [{"refreshToken": []}, {}],
}
# Blueprints behind the rate limits whose endpoints reach the database or Redis.
API_BLUEPRINTS = {"auth", "users", "events", "verify", "introspection", "passkeys"}


def bearer(token: str):
    """Document that a view takes a bearer ``token`` ("access" or "refresh")
    and so may answer 401. Stack it beside the decorator that checks the token;
    tests/test_openapi.py holds each declaration to what the endpoint answers."""
    return APIBlueprint.doc(security=SECURITY[token])


def refusals(*statuses: int):
    """Document the refusals of a view's own rules (a 409 conflict, the role
    guard's 403), beside the decorators and services that make them."""
    return APIBlueprint.doc(responses={str(status): ERROR_RESPONSES[status][0] for status in statuses})


class OperationDocs(BasePlugin):
    """An apispec plugin adding the errors each operation's shape implies, and
    the constraints each field states of itself (authapi.fields.Text)."""

    def __init__(self, config):
        self.config = config

    def init_spec(self, spec):
        super().init_spec(spec)
        config = self.config

        def authapi_field_constraints(converter, field, ret, **kwargs):
            # What the field's validators documented already stays as it is.
            stated = field.openapi_properties(config) if hasattr(field, "openapi_properties") else {}
            return {name: value for name, value in stated.items() if name not in ret}

        for plugin in spec.plugins:
            if isinstance(plugin, MarshmallowPlugin):
                plugin.converter.add_attribute_function(authapi_field_constraints)
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
        if rule is None:
            return
        common = {404} if rule.arguments else set()
        if rule.endpoint.split(".")[0] in API_BLUEPRINTS:
            common |= {503} if rule.endpoint in ratelimit.EXEMPT_ENDPOINTS else {429, 503}
        for operation in operations.values():
            statuses = set(common)
            if "security" in operation:
                statuses.add(401)
            body = operation.get("requestBody")
            if body is not None:
                statuses |= {400, 413, 415, 422}
                json_body = body["content"].get("application/json")
                if rule.endpoint in http.FORM_ENDPOINTS and json_body is not None:
                    # JSON or a form (login): the form documented beside it.
                    body["content"][FORM_CONTENT_TYPE] = dict(json_body)
            if any(p.get("in") == "query" for p in operation.get("parameters", [])):
                statuses.add(422)
            _add_error_responses(operation.setdefault("responses", {}), statuses)


def _add_error_responses(responses: dict, statuses: set[int]) -> None:
    # flask-smorest documents a 422 of its own (same schema, but a description
    # that names no error code): ours replaces it.
    responses.pop(422, None)
    for status in sorted(statuses):
        responses[str(status)] = ERROR_RESPONSES[status][0]
    responses["default"] = DEFAULT_RESPONSE[0]


def init_app(app) -> None:
    # Errors are documented in the one envelope of API.md §1, not flask-smorest's.
    api.ERROR_SCHEMA = ErrorOut
    api.init_app(app, spec_kwargs={"extra_plugins": [OperationDocs(app.config)]})
    app.register_blueprint(assets)


# ---------------------------------------------------------------- Swagger UI files

# config.py points flask-smorest's page at this prefix (OPENAPI_SWAGGER_UI_URL).
assets = Blueprint("docs_assets", __name__, url_prefix="/docs/assets")

# The files flask-smorest's /docs page loads, and the source maps they name.
# Nothing else of the package is served: its own index.html is Swagger's demo
# page, which fetches a petstore document from the internet.
ASSETS = frozenset(
    name + suffix
    for name in ("swagger-ui.css", "swagger-ui-bundle.js", "swagger-ui-standalone-preset.js")
    for suffix in ("", ".map")
)


@assets.get("/<path:filename>")
def asset(filename):
    if filename not in ASSETS:
        abort(404)
    response = send_from_directory(swagger_ui_path, filename, max_age=86400)
    response.cache_control.public = True
    return response
