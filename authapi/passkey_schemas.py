"""The passkey endpoints' bodies (API.md §9), and the WebAuthn Level 3 JSON
forms of their options as py_webauthn's ``options_to_json_dict`` writes them
(binary values in base64url), which a browser's
``PublicKeyCredential.parseCreationOptionsFromJSON`` and
``parseRequestOptionsFromJSON`` read.

The credentials a browser sends back are taken as JSON objects and handed
whole to py_webauthn's parsers: their members are WebAuthn's to define (a
browser's ``toJSON()`` adds new ones), so only the body around them refuses
unknown fields.
"""

from marshmallow import Schema, fields, validate
from .fields import Text
from .relying_party import credential_id_text

PASSKEY_NAME_MAX_LENGTH = 100


def credential_field(form: str, ceremony: str):
    return fields.Dict(required=True, metadata={"description": (
        f"The {form} (WebAuthn Level 3) of `navigator.credentials.{ceremony}()`: "
        "what `credential.toJSON()` returns, binary members in base64url.")})


class PasskeyRegisterIn(Schema):
    credential = credential_field("RegistrationResponseJSON", "create")
    name = Text(validate=validate.Length(min=1, max=PASSKEY_NAME_MAX_LENGTH),
                metadata={"description": 'A name for the user to tell passkeys apart; default "Passkey".'})


class PasskeyLoginIn(Schema):
    credential = credential_field("AuthenticationResponseJSON", "get")


class PasskeyOut(Schema):
    id = fields.Function(lambda passkey: credential_id_text(passkey.credential_id), metadata={
        "type": "string",
        "description": "The credential id in base64url, as the browser's `PublicKeyCredential.id`.",
    })
    name = fields.String()
    created_at = fields.DateTime()
    last_used_at = fields.DateTime(allow_none=True)


class PasskeyListOut(Schema):
    items = fields.List(fields.Nested(PasskeyOut))


# ---------------------------------------------------------------- WebAuthn options


def base64url(description: str):
    return fields.String(metadata={"description": f"{description}, in base64url."})


class RelyingPartyOut(Schema):
    id = fields.String(metadata={"description": "WEBAUTHN_RP_ID."})
    name = fields.String(metadata={"description": "WEBAUTHN_RP_NAME."})


class UserEntityOut(Schema):
    id = base64url("The user handle: random bytes, the same for every passkey of the user")
    name = fields.String()
    displayName = fields.String()


class CredentialParametersOut(Schema):
    type = fields.String()
    alg = fields.Integer(metadata={"description": "A COSE algorithm: -7 ES256, -8 EdDSA, -257 RS256."})


class CredentialDescriptorOut(Schema):
    id = base64url("A credential id")
    type = fields.String()
    transports = fields.List(fields.String())


class AuthenticatorSelectionOut(Schema):
    authenticatorAttachment = fields.String()
    residentKey = fields.String()
    requireResidentKey = fields.Boolean()
    userVerification = fields.String()


class CreationOptionsOut(Schema):
    """PublicKeyCredentialCreationOptionsJSON."""

    rp = fields.Nested(RelyingPartyOut)
    user = fields.Nested(UserEntityOut)
    challenge = base64url("Random bytes, valid for one registration within 300 seconds")
    pubKeyCredParams = fields.List(fields.Nested(CredentialParametersOut))
    timeout = fields.Integer(metadata={"description": "Milliseconds."})
    excludeCredentials = fields.List(fields.Nested(CredentialDescriptorOut),
                                     metadata={"description": "The user's passkeys."})
    authenticatorSelection = fields.Nested(AuthenticatorSelectionOut)
    attestation = fields.String()
    hints = fields.List(fields.String())


class RequestOptionsOut(Schema):
    """PublicKeyCredentialRequestOptionsJSON: no allowCredentials, so any
    passkey of this site may answer (a discoverable credential)."""

    challenge = base64url("Random bytes, valid for one login within 300 seconds")
    timeout = fields.Integer(metadata={"description": "Milliseconds."})
    rpId = fields.String(metadata={"description": "WEBAUTHN_RP_ID."})
    allowCredentials = fields.List(fields.Nested(CredentialDescriptorOut))
    userVerification = fields.String()
