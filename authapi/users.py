"""The /users blueprint: the caller's own account, and user administration."""

from flask import current_app
from flask_jwt_extended import current_user, jwt_required

from . import token_check
from .docs import bearer, refusals
from .extensions import Blueprint, read_only
from .permissions import admin_required
from .schemas import (
    AccountDeleteIn,
    AdminUserIn,
    EmptyIn,
    AdminUserPatchIn,
    ProfilePatchIn,
    UserOut,
    UserPageOut,
    UserQueryIn,
    dump_user,
)
from .services import accounts, admin, profile

bp = Blueprint("users", __name__, url_prefix="/users", description="User accounts")


@bp.get("/me")
@read_only
@bearer("access")
@bp.response(200, UserOut)
def me():
    # The hot path (docs/performance.md): jwt_required's rules at less cost,
    # one statement, and UserOut's dump compiled (a Response passes
    # bp.response through undumped).
    user = profile.own_account(token_check.access_claims())
    return current_app.json.response(dump_user(user))


@bp.patch("/me")
@refusals(409)
@jwt_required()
@bearer("access")
@bp.arguments(ProfilePatchIn, required=False)
@bp.response(200, UserOut)
def update_me(data):
    return accounts.update_profile(current_user, **data)


@bp.delete("/me")
@refusals(409)
@jwt_required()
@bearer("access")
@bp.arguments(AccountDeleteIn)
@bp.response(204)
def delete_me(data):
    accounts.delete_own_account(current_user, data["password"], data.get("code"))


# ---------------------------------------------------------------- admin

USER_ID = "<int(max=2147483647):user_id>"  # larger ids cannot exist: a plain 404


@bp.get("")
@read_only
@jwt_required()
@bearer("access")
@admin_required
@refusals(403)
@bp.arguments(UserQueryIn, location="query")
@bp.response(200, UserPageOut)
def list_users(query):
    return admin.list_users(**query)


@bp.post("")
@jwt_required()
@bearer("access")
@admin_required
@refusals(403, 409)
@bp.arguments(AdminUserIn)
@bp.response(201, UserOut)
def create_user(data):
    return admin.create_user(current_user, **data)


@bp.get(f"/{USER_ID}")
@read_only
@jwt_required()
@bearer("access")
@admin_required
@refusals(403)
@bp.response(200, UserOut)
def get_user(user_id):
    return admin.get_user(user_id)


@bp.patch(f"/{USER_ID}")
@jwt_required()
@bearer("access")
@admin_required
@refusals(403, 409)
@bp.arguments(AdminUserPatchIn, required=False)
@bp.response(200, UserOut)
def update_user(data, user_id):
    return admin.update_user(current_user, admin.get_user(user_id), **data)


@bp.delete(f"/{USER_ID}")
@jwt_required()
@bearer("access")
@admin_required
@refusals(403, 409)
@bp.arguments(EmptyIn, required=False)
@bp.response(204)
def delete_user(data, user_id):
    admin.delete_user(current_user, admin.get_user(user_id))


@bp.delete(f"/{USER_ID}/mfa")
@jwt_required()
@bearer("access")
@admin_required
@refusals(403)
@bp.arguments(EmptyIn, required=False)
@bp.response(204)
def reset_user_mfa(data, user_id):
    admin.reset_mfa(current_user, admin.get_user(user_id))
