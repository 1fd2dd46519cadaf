"""The /users blueprint: the caller's own account (admin endpoints come later)."""

from flask_jwt_extended import current_user, jwt_required

from .extensions import Blueprint
from .schemas import PasswordConfirmIn, ProfilePatchIn, UserOut
from .services import accounts

bp = Blueprint("users", __name__, url_prefix="/users", description="User accounts")


@bp.get("/me")
@jwt_required()
@bp.response(200, UserOut)
def me():
    return current_user


@bp.patch("/me")
@jwt_required()
@bp.arguments(ProfilePatchIn)
@bp.response(200, UserOut)
def update_me(data):
    return accounts.update_profile(current_user, **data)


@bp.delete("/me")
@jwt_required()
@bp.arguments(PasswordConfirmIn)
@bp.response(204)
def delete_me(data):
    accounts.delete_account(current_user, data["password"])
