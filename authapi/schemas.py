"""Marshmallow schemas: one In schema per request body, Out schemas for responses.

Unknown fields raise (marshmallow's default), so nobody can give themselves a
role or a verified address by sending one.
"""

from marshmallow import Schema, ValidationError, fields, pre_load, validate, validates_schema

from .fields import (
    EMAIL_MAX_LENGTH,
    TOKEN_MAX_LENGTH,
    Email,
    Text,
    full_name_field,
    json_boolean,
    password_field,
    username_field,
)
from .models import ROLES
from .passwords import PASSWORD_MAX_LENGTH, password_problems
from .tokens import MAX_ID

# ---------------------------------------------------------------- requests


class RegisterIn(Schema):
    email = Email(required=True)
    username = username_field(required=True)
    password = password_field(required=True)
    full_name = full_name_field()

    @validates_schema(skip_on_field_errors=False)
    def check_password(self, data, **kwargs):
        # The service enforces the policy (passwords.ensure_password_allowed);
        # listing its problems here too puts them in the same 422 as the other
        # fields' problems.
        if "password" in data:
            problems = password_problems(
                data["password"], username=data.get("username"), email=data.get("email")
            )
            if problems:
                raise ValidationError(problems, "password")


class AdminUserIn(RegisterIn):
    role = Text(validate=validate.OneOf(ROLES), load_default="user")
    is_verified = json_boolean(load_default=False)


class AdminUserPatchIn(Schema):
    full_name = full_name_field()
    username = username_field()
    email = Email()
    role = Text(validate=validate.OneOf(ROLES))
    is_active = json_boolean()
    is_verified = json_boolean()


class ParametersIn(Schema):
    """A query string or a form body, each parameter given at most once: of
    ``?page=1&page=2`` we would read one and a cache or proxy in front perhaps
    the other, so a repeated parameter is a 422 naming it, never a silent choice."""

    @pre_load
    def refuse_repeated_parameters(self, data, **kwargs):
        getlist = getattr(data, "getlist", None)  # webargs passes the MultiDict
        if getlist is not None:
            repeated = {key: ["Give this parameter once."] for key in data if len(getlist(key)) > 1}
            if repeated:
                raise ValidationError(repeated)
        return data


class UserQueryIn(ParametersIn):
    page = fields.Integer(load_default=1, validate=validate.Range(min=1, max=MAX_ID))
    per_page = fields.Integer(load_default=20, validate=validate.Range(min=1, max=100))
    q = Text(validate=validate.Length(max=EMAIL_MAX_LENGTH))
    role = Text(validate=validate.OneOf(ROLES))
    is_active = fields.Boolean()


class LoginIn(Schema):
    username = Text(required=True, validate=validate.Length(min=1, max=EMAIL_MAX_LENGTH))
    password = Text(required=True, validate=validate.Length(min=1, max=PASSWORD_MAX_LENGTH))
    # OAuth2 password grant (RFC 6749 §4.3) form fields.
    grant_type = Text(validate=validate.OneOf(["password"], error="Only 'password' is supported."))
    scope = Text(validate=validate.Length(max=1000))
    # API.md §7. Any value is accepted and judged by the service alone, so an
    # unknown, void or foreign device token is never an error of its own.
    device_token = Text(validate=validate.Length(max=TOKEN_MAX_LENGTH))


class RefreshIn(Schema):
    # Read by flask-jwt-extended; declared so the body is validated and documented.
    refresh_token = Text()


class ForgotPasswordIn(Schema):
    email = Email(required=True)


def token_field():
    return Text(required=True, validate=validate.Length(min=1, max=TOKEN_MAX_LENGTH))


class ResetPasswordIn(Schema):
    token = token_field()
    new_password = password_field(required=True)


class VerifyEmailIn(Schema):
    token = token_field()


# The hosted pages (API.md §12): the API's bodies above, as a link's query and as forms.


class LinkIn(ParametersIn):
    """The query of an email link. Any other parameter (a mail client's
    tracking one) is ignored, as in every query."""

    token = token_field()


class VerifyFormIn(ParametersIn, VerifyEmailIn):
    """POST /verify: the body of POST /auth/email/verify, as a form."""


class ResetFormIn(ParametersIn, ResetPasswordIn):
    """POST /reset: the body of POST /auth/password/reset, as a form, and the
    password typed twice."""

    new_password_confirm = Text(required=True, validate=validate.Length(max=PASSWORD_MAX_LENGTH))

    @validates_schema
    def check_confirmation(self, data, **kwargs):
        if data["new_password"] != data["new_password_confirm"]:
            raise ValidationError("Does not match the new password.", "new_password_confirm")


class EmptyIn(Schema):
    """For endpoints that take no body: any field sent is unknown."""


CODE_MAX_LENGTH = 64  # a TOTP code or a recovery code, with room for spaces and dashes


def code_field(**kwargs):
    """A TOTP code or a recovery code (API.md §8); needed for step-up while TOTP is on."""
    return Text(validate=validate.Length(max=CODE_MAX_LENGTH), **kwargs)


class PasswordChangeIn(Schema):
    current_password = Text(required=True, validate=validate.Length(max=PASSWORD_MAX_LENGTH))
    new_password = password_field(required=True)
    code = code_field()


class ProfilePatchIn(Schema):
    full_name = full_name_field()
    username = username_field()
    email = Email()
    current_password = Text(validate=validate.Length(max=PASSWORD_MAX_LENGTH))
    code = code_field()


class PasswordConfirmIn(Schema):
    password = Text(required=True, validate=validate.Length(max=PASSWORD_MAX_LENGTH))


class AccountDeleteIn(PasswordConfirmIn):
    code = code_field()


class CodeIn(Schema):
    code = code_field(required=True)


class PasswordCodeIn(PasswordConfirmIn):
    code = code_field(required=True)


class LoginMfaIn(Schema):
    mfa_token = token_field()
    code = code_field(required=True)


# ---------------------------------------------------------------- responses


class UserOut(Schema):
    id = fields.Integer()
    email = fields.String()
    username = fields.String()
    full_name = fields.String(allow_none=True)
    role = fields.String()
    is_active = fields.Boolean()
    is_verified = fields.Boolean()
    mfa_enabled = fields.Boolean()
    created_at = fields.DateTime()
    updated_at = fields.DateTime()
    last_login_at = fields.DateTime(allow_none=True)


def compiled_dump(schema: Schema):
    """``schema.dump`` for a schema of plain fields (no nesting, no hooks),
    compiled once: each field's own conversion (``Field._serialize``, the
    method a field type implements) without the per-call work of
    ``Schema.dump``. GET /users/me's hot path (tests/test_users.py pins its
    output equal to ``UserOut().dump``)."""
    fields_ = [(field.data_key or name, field.attribute or name, field._serialize)
               for name, field in schema.dump_fields.items()]

    def dump(obj) -> dict:
        return {key: serialize(getattr(obj, attribute), attribute, obj) for key, attribute, serialize in fields_}

    return dump


dump_user = compiled_dump(UserOut())


class TokenPairOut(Schema):
    access_token = fields.String()
    refresh_token = fields.String()
    token_type = fields.String()
    expires_in = fields.Integer()
    refresh_expires_in = fields.Integer()
    # Login only, and not in cookie mode (then it is the device_token cookie).
    device_token = fields.String()


class SessionOut(Schema):
    id = fields.String()
    created_at = fields.DateTime()
    last_used_at = fields.DateTime()
    expires_at = fields.DateTime()
    user_agent = fields.String(allow_none=True)
    ip = fields.String(allow_none=True)
    current = fields.Boolean()


class UserPageOut(Schema):
    items = fields.List(fields.Nested(UserOut))
    page = fields.Integer()
    per_page = fields.Integer()
    total = fields.Integer()
    pages = fields.Integer()


class SessionListOut(Schema):
    items = fields.List(fields.Nested(SessionOut))


class MessageOut(Schema):
    message = fields.String()


class MfaStatusOut(Schema):
    totp = fields.Boolean()
    recovery_codes_left = fields.Integer()
    passkeys = fields.Integer()


class TotpSetupOut(Schema):
    secret = fields.String(metadata={"description": "Base32, no padding: for typing into an app."})
    otpauth_uri = fields.String()
    qr_svg = fields.String(metadata={"description": "The otpauth URI as a QR code, an SVG document."})


class RecoveryCodesOut(Schema):
    recovery_codes = fields.List(fields.String(), metadata={"description": "Shown once; each works once."})


class IntrospectIn(Schema):
    """RFC 7662 §2.1, a form body. Any text is a token to judge: a malformed,
    empty or oversized one is inactive, not an error (API.md §11)."""

    token = fields.String(required=True)
    # The token says its type; the hint is allowed and ignored (RFC 7662 §2.1).
    token_type_hint = fields.String()


class IntrospectOut(Schema):
    """RFC 7662 §2.2: ``active`` alone for any token not accepted now."""

    active = fields.Boolean(required=True)
    token_type = fields.String(metadata={"enum": ["access_token", "refresh_token"]})
    sub = fields.String()
    exp = fields.Integer()
    iat = fields.Integer()
    jti = fields.String()
    sid = fields.String()
    role = fields.String(metadata={"description": "Access tokens only."})
    iss = fields.String(metadata={"description": "When JWT_ISSUER is set."})
    aud = fields.String(metadata={"description": "When JWT_AUDIENCE is set."})
