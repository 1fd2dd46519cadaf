"""Marshmallow schemas: one In schema per request body, Out schemas for responses.

Unknown fields raise (marshmallow's default), so nobody can give themselves a
role or a verified address by sending one.
"""

from email_validator import EmailNotValidError, validate_email
from marshmallow import Schema, ValidationError, fields, validate, validates_schema

from .models import ROLES
from .passwords import PASSWORD_MAX_LENGTH, password_problems
from .tokens import MAX_ID

USERNAME_PATTERN = r"^[A-Za-z0-9_.-]{3,32}$"


class Text(fields.String):
    """A string without NUL characters or lone surrogates, which PostgreSQL
    cannot store, hashing cannot encode, and no legitimate client sends."""

    def _deserialize(self, value, attr, data, **kwargs):
        value = super()._deserialize(value, attr, data, **kwargs)
        if "\x00" in value:
            raise ValidationError("Must not contain NUL characters.")
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:  # a lone surrogate ("\ud800"): valid JSON, not text
            raise ValidationError("Must be valid Unicode text.") from None
        return value


class Email(Text):
    def _deserialize(self, value, attr, data, **kwargs):
        value = super()._deserialize(value, attr, data, **kwargs)
        if len(value) > 254:
            raise ValidationError("Must be at most 254 characters.")
        try:
            # Syntax only: no DNS look-up, and ASCII local parts so that the
            # database's lower() and Python's agree on case-insensitive uniqueness.
            checked = validate_email(
                value, check_deliverability=False, allow_smtputf8=False, globally_deliverable=False
            )
        except EmailNotValidError:
            raise ValidationError("Not a valid email address.") from None
        return checked.normalized


def username_field(**kwargs):
    return Text(
        validate=validate.Regexp(
            USERNAME_PATTERN,
            error="Must be 3 to 32 characters of letters, digits, '_', '.' or '-'.",
        ),
        **kwargs,
    )


def password_field(**kwargs):
    # The policy itself (length, common passwords, username) is checked where
    # the username and email are known: validates_schema or the service.
    return Text(**kwargs)


def full_name_field(**kwargs):
    return Text(validate=validate.Length(max=100), allow_none=True, **kwargs)


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


class JSONBoolean(fields.Boolean):
    """Only JSON true and false: 0, "off" or "yes" in a body is a mistake, not
    a flag (marshmallow's Boolean would take them, and 0 == False in Python)."""

    def _deserialize(self, value, attr, data, **kwargs):
        if not isinstance(value, bool):
            raise self.make_error("invalid", input=value)
        return value


def json_boolean(**kwargs):
    return JSONBoolean(**kwargs)


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


class UserQueryIn(Schema):
    page = fields.Integer(load_default=1, validate=validate.Range(min=1, max=MAX_ID))
    per_page = fields.Integer(load_default=20, validate=validate.Range(min=1, max=100))
    q = Text(validate=validate.Length(max=254))
    role = Text(validate=validate.OneOf(ROLES))
    is_active = fields.Boolean()


class LoginIn(Schema):
    username = Text(required=True, validate=validate.Length(min=1, max=254))
    password = Text(required=True, validate=validate.Length(min=1, max=PASSWORD_MAX_LENGTH))
    # OAuth2 password grant (RFC 6749 §4.3) form fields.
    grant_type = Text(validate=validate.OneOf(["password"], error="Only 'password' is supported."))
    scope = Text(validate=validate.Length(max=1000))


class RefreshIn(Schema):
    # Read by flask-jwt-extended; declared so the body is validated and documented.
    refresh_token = Text()


class ForgotPasswordIn(Schema):
    email = Email(required=True)


def token_field():
    return Text(required=True, validate=validate.Length(min=1, max=512))


class ResetPasswordIn(Schema):
    token = token_field()
    new_password = password_field(required=True)


class VerifyEmailIn(Schema):
    token = token_field()


class EmptyIn(Schema):
    """For endpoints that take no body: any field sent is unknown."""


class PasswordChangeIn(Schema):
    current_password = Text(required=True, validate=validate.Length(max=PASSWORD_MAX_LENGTH))
    new_password = password_field(required=True)


class ProfilePatchIn(Schema):
    full_name = full_name_field()
    username = username_field()
    email = Email()
    current_password = Text(validate=validate.Length(max=PASSWORD_MAX_LENGTH))


class PasswordConfirmIn(Schema):
    password = Text(required=True, validate=validate.Length(max=PASSWORD_MAX_LENGTH))


# ---------------------------------------------------------------- responses


class UserOut(Schema):
    id = fields.Integer()
    email = fields.String()
    username = fields.String()
    full_name = fields.String(allow_none=True)
    role = fields.String()
    is_active = fields.Boolean()
    is_verified = fields.Boolean()
    created_at = fields.DateTime()
    updated_at = fields.DateTime()
    last_login_at = fields.DateTime(allow_none=True)


class TokenPairOut(Schema):
    access_token = fields.String()
    refresh_token = fields.String()
    token_type = fields.String()
    expires_in = fields.Integer()
    refresh_expires_in = fields.Integer()


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
