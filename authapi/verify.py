"""The routes other servers call about a token (API.md §11): forward
authentication for a proxy (``/auth/verify``, nginx ``auth_request``, Traefik
``forwardAuth``, Caddy ``forward_auth``) and RFC 7662 introspection
(``/auth/introspect``).

``/auth/verify`` runs once per request of every app behind the proxy, so it
does the least that keeps the rules: the hot paths' token check
(``token_check.access_claims``: the general path's checks of the header, the
signature, the claims ``tokens.check_claims`` requires and the type, decoded
once per token string) and revocation's one round trip
(``revocation.is_revoked``). Unlike
``jwt_required`` it loads no user, so no database is read, save the rebuild
``is_revoked`` makes when Redis lost the user's key; no body is read, no rate
limit counts it (ratelimit.EXEMPT_ENDPOINTS), no Flask automatic OPTIONS or
HEAD answer skips it. tests/test_verify.py holds it to the general path's
refusals.
"""

from functools import wraps

from flask import current_app, make_response, request

from . import errors, token_check
from .docs import bearer, refusals
from .extensions import Blueprint, read_only
from .models import ROLES
from .schemas import IntrospectIn, IntrospectOut
from .services import introspection

bp = Blueprint("verify", __name__, url_prefix="/auth", description="Forward authentication")

# Every method a proxy may forward. Listed, with Flask's automatic OPTIONS
# answer off: that answer (and flask-jwt-extended's JWT_EXEMPT_METHODS, which
# jwt_required honours) would let OPTIONS through unchecked.
VERIFY_METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
ROLE_PARAMETER = {
    "in": "query", "name": "role", "required": False,
    "schema": {"type": "string", "enum": list(ROLES)},
    "description": "Refuse (403) a token of another role.",
}
VERIFY_RESPONSES = {
    "200": {
        "description": "The token is valid: an empty body and who it is.",
        "headers": {
            name: {"schema": {"type": "string"}, "description": description}
            for name, description in (
                ("X-Auth-User-Id", "the user's id (the token's `sub`)"),
                ("X-Auth-Role", "the user's role"),
                ("X-Auth-Session-Id", "the login session (the token's `sid`)"),
            )
        },
    },
}


@bp.route("/verify", methods=VERIFY_METHODS, provide_automatic_options=False, parameters=[ROLE_PARAMETER])
@read_only  # a rebuild of revocation marks (on a miss) reads in autocommit
@bearer("access")
@refusals(403, 422)
@bp.doc(responses=VERIFY_RESPONSES)
def verify():
    """Forward authentication: 200 with X-Auth-User-Id, X-Auth-Role and
    X-Auth-Session-Id for a valid access token, else the refusal of the
    general path (with `WWW-Authenticate: Bearer`). Reads no database."""
    role = request.args.get("role")
    if role is not None and role not in ROLES:
        raise errors.ValidationFailed(details={"role": [f"Must be one of: {', '.join(ROLES)}."]})
    # Headers only (never a cookie or the body), type access, revocation
    # checked; raises what jwt_required raises, answered by the same handlers.
    claims = token_check.access_claims()
    if role is not None and claims["role"] != role:
        raise errors.Forbidden(f"This needs the {role} role.")
    response = make_response("", 200)
    response.headers["X-Auth-User-Id"] = claims["sub"]
    response.headers["X-Auth-Role"] = claims["role"]
    response.headers["X-Auth-Session-Id"] = claims["sid"]
    return response


@bp.after_request
def _challenge(response):
    # RFC 6750 §3: a 401 names the scheme the client should use.
    if response.status_code == 401:
        response.headers["WWW-Authenticate"] = 'Bearer realm="authapi"'
    return response


# ---------------------------------------------------------------- introspection


# Registered only when INTROSPECTION_CLIENTS is set (create_app): unset, the
# route does not exist, a 404 like any unknown URL, and the document omits it.
introspection_bp = Blueprint("introspection", __name__, url_prefix="/auth",
                             description="Token introspection (RFC 7662)")


def introspection_client_required(view):
    """401 (with `WWW-Authenticate: Basic`) unless HTTP Basic names one of
    INTROSPECTION_CLIENTS. Runs before the body is parsed: a stranger learns
    nothing of its rules."""

    @wraps(view)
    def wrapper(*args, **kwargs):
        clients = current_app.config["INTROSPECTION_CLIENTS"]
        if not introspection.client_authenticated(clients, request.authorization):
            raise errors.Unauthorized(
                "Introspection needs a client's id and secret (HTTP Basic).",
                headers={"WWW-Authenticate": 'Basic realm="authapi introspection"'},
            )
        return view(*args, **kwargs)

    return wrapper


@introspection_bp.post("/introspect")
@read_only  # it reads and never writes: the token is not spent
@introspection_client_required
@introspection_bp.doc(security=[{"introspectionClient": []}])
@introspection_bp.arguments(IntrospectIn, location="form")
@introspection_bp.response(200, IntrospectOut)
def introspect(data):
    """RFC 7662: the claims of a token accepted now, else only
    `{"active": false}`. Never spends or revokes what it inspects."""
    return introspection.introspect(data["token"], data.get("token_type_hint"))
