"""The /auth blueprint: registration, login, tokens and sessions."""

from flask import request
from flask_jwt_extended import current_user, get_jwt, jwt_required

from . import cookies, http
from .docs import bearer, refusals
from .extensions import Blueprint, read_only
from .schemas import (
    CodeIn,
    EmptyIn,
    ForgotPasswordIn,
    LoginIn,
    LoginMfaIn,
    MessageOut,
    MfaStatusOut,
    PasswordCodeIn,
    PasswordConfirmIn,
    RecoveryCodesOut,
    TotpSetupOut,
    PasswordChangeIn,
    RefreshIn,
    RegisterIn,
    ResetPasswordIn,
    SessionListOut,
    TokenPairOut,
    UserOut,
    VerifyEmailIn,
)
from .services import accounts, logins, mfa, recovery, sessions

bp = Blueprint("auth", __name__, url_prefix="/auth", description="Accounts, tokens and sessions")


def client_info() -> dict:
    """What a new session records of its client. The address is already one
    normalised address or None (http.client_address)."""
    return {"user_agent": http.client_user_agent(), "ip": request.remote_addr}


@bp.post("/register")
@refusals(403, 409)
@bp.arguments(RegisterIn)
@bp.response(201, UserOut)
def register(data):
    return accounts.register(**data)


@bp.post("/login")
@refusals(401, 403)
@cookies.refuse_foreign_origins
@bp.arguments(LoginIn, location="json_or_form")
@bp.response(200, TokenPairOut)
def login(data):
    device_token = cookies.presented_device_token(data.get("device_token"))
    pair = logins.login(data["username"], data["password"], device_token=device_token, **client_info())
    return cookies.deliver_token_pair(pair)


@bp.post("/refresh")
@refusals(403)
@cookies.refuse_foreign_origins
@cookies.refresh_token_required
@bearer("refresh")
@bp.arguments(RefreshIn, required=False)
@bp.response(200, TokenPairOut)
def refresh(data, refresh_claims):
    return cookies.deliver_token_pair(sessions.rotate_refresh_token(refresh_claims))


@bp.post("/logout")
@jwt_required()
@bearer("access")
@bp.arguments(EmptyIn, required=False)
@bp.response(200, MessageOut)
def logout(data):
    sessions.end_session(current_user, get_jwt()["sid"], reason="logout")
    cookies.clear_refresh_cookies()
    return {"message": "Logged out."}


@bp.post("/logout-all")
@jwt_required()
@bearer("access")
@bp.arguments(EmptyIn, required=False)
@bp.response(200, MessageOut)
def logout_all(data):
    sessions.end_all_sessions(current_user)
    cookies.clear_refresh_cookies()
    return {"message": "Logged out of every session."}


@bp.get("/sessions")
@read_only
@jwt_required()
@bearer("access")
@bp.response(200, SessionListOut)
def list_sessions():
    return {"items": sessions.list_sessions(current_user, get_jwt()["sid"])}


@bp.delete("/sessions/<string:session_id>")
@jwt_required()
@bearer("access")
@bp.arguments(EmptyIn, required=False)
@bp.response(204)
def delete_session(data, session_id):
    sessions.end_session(current_user, session_id)


@bp.post("/password/change")
@jwt_required()
@bearer("access")
@bp.arguments(PasswordChangeIn)
@bp.response(200, TokenPairOut)
def change_password(data):
    return cookies.deliver_token_pair(accounts.change_password(current_user, **data, **client_info()))


@bp.post("/password/forgot")
@bp.arguments(ForgotPasswordIn)
@bp.response(202, MessageOut)
def forgot_password(data):
    recovery.forgot_password(data["email"])
    return {"message": "If an account uses this email, a reset link is on its way."}


@bp.post("/password/reset")
@bp.arguments(ResetPasswordIn)
@bp.response(200, MessageOut)
def reset_password(data):
    recovery.reset_password(data["token"], data["new_password"])
    return {"message": "Your password has been reset; log in with the new one."}


@bp.post("/email/verify/request")
@jwt_required()
@bearer("access")
@bp.arguments(EmptyIn, required=False)
@bp.response(202, MessageOut)
def request_email_verification(data):
    recovery.request_verification(current_user)
    return {"message": "A verification email is on its way."}


@bp.post("/email/verify")
@bp.arguments(VerifyEmailIn)
@bp.response(200, UserOut)
def verify_email(data):
    return recovery.verify_email(data["token"])


# ---------------------------------------------------------------- two-factor (API.md §8)


@bp.post("/login/mfa")
@refusals(401)
@cookies.refuse_foreign_origins
@bp.arguments(LoginMfaIn)
@bp.response(200, TokenPairOut)
def login_mfa(data):
    return cookies.deliver_token_pair(logins.complete_login(data["mfa_token"], data["code"], **client_info()))


@bp.get("/mfa")
@read_only
@jwt_required()
@bearer("access")
@bp.response(200, MfaStatusOut)
def mfa_status():
    return mfa.status(current_user)


@bp.post("/mfa/totp/setup")
@refusals(409)
@jwt_required()
@bearer("access")
@bp.arguments(PasswordConfirmIn)
@bp.response(200, TotpSetupOut)
def totp_setup(data):
    return mfa.start_setup(current_user, data["password"])


@bp.post("/mfa/totp/confirm")
@refusals(409)
@jwt_required()
@bearer("access")
@bp.arguments(CodeIn)
@bp.response(200, RecoveryCodesOut)
def totp_confirm(data):
    return {"recovery_codes": mfa.confirm(current_user, data["code"], get_jwt()["sid"])}


@bp.delete("/mfa/totp")
@refusals(409)
@jwt_required()
@bearer("access")
@bp.arguments(PasswordCodeIn)
@bp.response(204)
def totp_disable(data):
    mfa.disable(current_user, data["password"], data["code"])


@bp.post("/mfa/recovery-codes")
@refusals(409)
@jwt_required()
@bearer("access")
@bp.arguments(PasswordCodeIn)
@bp.response(200, RecoveryCodesOut)
def recovery_codes(data):
    return {"recovery_codes": mfa.regenerate_recovery_codes(current_user, data["password"], data["code"])}
