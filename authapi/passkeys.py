"""The /auth/passkeys routes (API.md §9): registered only when WEBAUTHN_RP_ID
is set, so that without it every one is a 404 and the OpenAPI document does
not list them. The ceremonies are in services/passkeys.py."""

from flask_jwt_extended import current_user, jwt_required

from . import cookies, relying_party
from .auth import client_info
from .docs import bearer, refusals
from .extensions import Blueprint, read_only
from .passkey_schemas import (
    CreationOptionsOut,
    PasskeyListOut,
    PasskeyLoginIn,
    PasskeyOut,
    PasskeyRegisterIn,
    RequestOptionsOut,
)
from .schemas import EmptyIn, TokenPairOut
from .services import passkeys

bp = Blueprint("passkeys", __name__, url_prefix="/auth", description="Passkeys (WebAuthn)")


@bp.post("/passkeys/register/options")
@jwt_required()
@bearer("access")
@bp.arguments(EmptyIn, required=False)
@bp.response(200, CreationOptionsOut)
def register_options(data):
    """Options for `navigator.credentials.create()`: read them with
    `PublicKeyCredential.parseCreationOptionsFromJSON`."""
    return passkeys.registration_options(current_user)


@bp.post("/passkeys/register")
@jwt_required()
@bearer("access")
@bp.arguments(PasskeyRegisterIn)
@bp.response(201, PasskeyOut)
def register(data):
    """Store a new passkey: any refusal is a 422 naming `credential`."""
    return passkeys.register_passkey(current_user, data["credential"], data.get("name"))


@bp.get("/passkeys")
@read_only
@jwt_required()
@bearer("access")
@bp.response(200, PasskeyListOut)
def list_passkeys():
    return {"items": passkeys.list_passkeys(current_user)}


@bp.delete(f"/passkeys/<string(minlength={relying_party.ID_MIN_LENGTH}):passkey_id>")
@jwt_required()
@bearer("access")
@bp.arguments(EmptyIn, required=False)
@bp.response(204)
def delete_passkey(data, passkey_id):
    """Remove a passkey; the sessions it started go on."""
    passkeys.delete_passkey(current_user, passkey_id)


@bp.post("/passkeys/login/options")
@bp.arguments(EmptyIn, required=False)
@bp.response(200, RequestOptionsOut)
def login_options(data):
    """Options for `navigator.credentials.get()` with no username: read them
    with `PublicKeyCredential.parseRequestOptionsFromJSON`."""
    return passkeys.login_options()


@bp.post("/passkeys/login")
@refusals(401, 403)
@cookies.refuse_foreign_origins
@bp.arguments(PasskeyLoginIn)
@bp.response(200, TokenPairOut)
def login(data):
    """Sign in with a passkey: the token pair, `amr` `["hwk", "user", "mfa"]`,
    with no TOTP step. Shares the login rate limit."""
    return cookies.deliver_token_pair(passkeys.login_with_passkey(data["credential"], **client_info()))
