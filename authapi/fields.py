"""Field types for the schemas: what each kind of value (text, email,
username, new password, JSON boolean, the audit trail's cursor, event types
and timestamps) accepts, and the constraints each states
of itself in the OpenAPI document (``openapi_properties``), so the document
says exactly what the server enforces."""

import base64
import binascii
import json
import re
from datetime import datetime, timezone

from email_validator import SPECIAL_USE_DOMAIN_NAMES, EmailNotValidError, validate_email
from marshmallow import ValidationError, fields, validate

from .passwords import PASSWORD_MAX_LENGTH
from .services.events import EVENT_TYPES
from .tokens import UUID_PATTERN

EMAIL_MAX_LENGTH = 254  # RFC 5321's limit on a path
USERNAME_MIN_LENGTH, USERNAME_MAX_LENGTH = 3, 32
# ECMA-262 and Python read this alike for a whole value; FullMatch makes
# Python's "$" refuse a trailing newline, as ECMA-262's does.
USERNAME_PATTERN = rf"^[A-Za-z0-9_.-]{{{USERNAME_MIN_LENGTH},{USERNAME_MAX_LENGTH}}}$"
FULL_NAME_MAX_LENGTH = 100
TOKEN_MAX_LENGTH = 512
NO_NUL_PATTERN = "^[^\\u0000]*$"


def _any_case(word: str) -> str:
    # ECMA-262 patterns in a JSON Schema take no flags: spell both cases out.
    return "".join(f"[{c.upper()}{c.lower()}]" if c.isalpha() else re.escape(c) for c in word)


# email_validator refuses the special-use domains (RFC 6761) and their
# subdomains; "format: email" alone would allow them.
EMAIL_DOMAIN_PATTERN = "^(?![^@]*@(?:[^@]*\\.)?(?:{})$)".format(
    "|".join(_any_case(name) for name in SPECIAL_USE_DOMAIN_NAMES)
)


class FullMatch(validate.Regexp):
    """A pattern the whole value must match. marshmallow's Regexp uses
    re.match, under which "^...$" also accepts the value plus a trailing
    newline ("admin\n" beside "admin", or 33 characters in a VARCHAR(32))."""

    def __call__(self, value):
        if self.regex.fullmatch(value) is None:
            raise ValidationError(self._format_error(value))
        return value


class Text(fields.String):
    """A string without NUL characters or lone surrogates, which PostgreSQL
    cannot store, hashing cannot encode, and no legitimate client sends.

    Each field class states in ``openapi_properties`` the constraints it
    enforces beyond its validators (which apispec documents itself), so the
    OpenAPI document is as strict as the server (docs.OperationDocs)."""

    def _deserialize(self, value, attr, data, **kwargs):
        value = super()._deserialize(value, attr, data, **kwargs)
        if "\x00" in value:
            raise ValidationError("Must not contain NUL characters.")
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:  # a lone surrogate ("\ud800"): valid JSON, not text
            raise ValidationError("Must be valid Unicode text.") from None
        return value

    def openapi_properties(self, config) -> dict:
        # Lone surrogates cannot be generated from a document; NUL can.
        return {"pattern": NO_NUL_PATTERN}


class Email(Text):
    def _deserialize(self, value, attr, data, **kwargs):
        value = super()._deserialize(value, attr, data, **kwargs)
        if len(value) > EMAIL_MAX_LENGTH:
            raise ValidationError(f"Must be at most {EMAIL_MAX_LENGTH} characters.")
        try:
            # Syntax only: no DNS look-up, and ASCII local parts so that the
            # database's lower() and Python's agree on case-insensitive uniqueness.
            checked = validate_email(
                value, check_deliverability=False, allow_smtputf8=False, globally_deliverable=False
            )
        except EmailNotValidError:
            raise ValidationError("Not a valid email address.") from None
        return checked.normalized

    def openapi_properties(self, config) -> dict:
        return {"format": "email", "maxLength": EMAIL_MAX_LENGTH, "pattern": EMAIL_DOMAIN_PATTERN}


class Username(Text):
    def __init__(self, **kwargs):
        error = (
            f"Must be {USERNAME_MIN_LENGTH} to {USERNAME_MAX_LENGTH} characters of letters, "
            "digits, '_', '.' or '-'."
        )
        super().__init__(validate=FullMatch(USERNAME_PATTERN, error=error), **kwargs)

    def openapi_properties(self, config) -> dict:
        return {"minLength": USERNAME_MIN_LENGTH, "maxLength": USERNAME_MAX_LENGTH}


class NewPassword(Text):
    """A password being set. The policy itself (length, common passwords,
    username) is checked where the username and email are known:
    validates_schema or the service; the document states its length bounds."""

    def openapi_properties(self, config) -> dict:
        return {
            **super().openapi_properties(config),
            "minLength": config["PASSWORD_MIN_LENGTH"],
            "maxLength": PASSWORD_MAX_LENGTH,
        }


def username_field(**kwargs):
    return Username(**kwargs)


def password_field(**kwargs):
    return NewPassword(**kwargs)


def full_name_field(**kwargs):
    return Text(validate=validate.Length(max=FULL_NAME_MAX_LENGTH), allow_none=True, **kwargs)


class JSONBoolean(fields.Boolean):
    """Only JSON true and false: 0, "off" or "yes" in a body is a mistake, not
    a flag (marshmallow's Boolean would take them, and 0 == False in Python)."""

    def _deserialize(self, value, attr, data, **kwargs):
        if not isinstance(value, bool):
            raise self.make_error("invalid", input=value)
        return value


def json_boolean(**kwargs):
    return JSONBoolean(**kwargs)


# ---------------------------------------------------------------- the audit trail's queries

# An opaque position in a listing of security events: the base64url (no
# padding) of the JSON ``[occurred_at, id]`` of the last event of a page.
CURSOR_PATTERN = "^[A-Za-z0-9_-]+$"
CURSOR_MAX_LENGTH = 128


class Cursor(Text):
    """A page's position, loaded as the ``(occurred_at, id)`` key the listing
    continues below. Only a cursor exactly as the API writes it is accepted
    (a 422 for anything else): a client cannot hand us a position of its own
    making in another form, nor anything the database would choke on."""

    def _serialize(self, value, attr, obj, **kwargs):
        if value is None:
            return None
        occurred_at, event_id = value
        text = json.dumps([occurred_at.astimezone(timezone.utc).isoformat(timespec="microseconds"), event_id],
                          separators=(",", ":"))
        return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")

    def _deserialize(self, value, attr, data, **kwargs):
        value = super()._deserialize(value, attr, data, **kwargs)
        try:
            if len(value) > CURSOR_MAX_LENGTH or not re.fullmatch(CURSOR_PATTERN, value):
                raise ValueError
            moment, event_id = json.loads(base64.urlsafe_b64decode(value + "=" * (-len(value) % 4)))
            key = (datetime.fromisoformat(moment), event_id)
            if not UUID_PATTERN.match(event_id) or self._serialize(key, attr, None) != value:
                raise ValueError
        except (ValueError, TypeError, OverflowError, binascii.Error):
            raise ValidationError("Not a cursor this API gave.") from None
        return key

    def openapi_properties(self, config) -> dict:
        return {"pattern": CURSOR_PATTERN, "maxLength": CURSOR_MAX_LENGTH}


class EventTypes(Text):
    """Comma-separated security event types (API.md §10), loaded as a list."""

    def _deserialize(self, value, attr, data, **kwargs):
        value = super()._deserialize(value, attr, data, **kwargs)
        types = value.split(",")
        if not all(name in EVENT_TYPES for name in types):
            raise ValidationError("Each must be a known event type, like login.failed or user.updated.")
        return types

    def openapi_properties(self, config) -> dict:
        one = "(?:{})".format("|".join(re.escape(name) for name in EVENT_TYPES))
        return {"pattern": f"^{one}(?:,{one})*$"}


class UTCDateTime(fields.AwareDateTime):
    """An ISO 8601 timestamp with its offset (API.md §1), loaded in UTC."""

    def _deserialize(self, value, attr, data, **kwargs):
        if isinstance(value, str):
            value = value.upper()  # RFC 3339 allows "t" and "z"; fromisoformat does not
        moment = super()._deserialize(value, attr, data, **kwargs)
        try:
            return moment.astimezone(timezone.utc)
        except OverflowError:  # 0001-01-01T00:00:00+01:00 is before year 1 in UTC
            raise ValidationError("Out of range.") from None
