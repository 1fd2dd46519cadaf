"""Token signing keys: the HS secret or an asymmetric key pair read from PEM
files, the JWKS that publishes the public keys, and the kid tokens carry.

With an asymmetric ``JWT_ALGORITHM`` another service verifies access tokens
from ``/.well-known/jwks.json`` alone. A rotation keeps the rotated-out public
key listed (``JWT_PREVIOUS_PUBLIC_KEY_FILE``) so the tokens it signed verify
until they expire; a key that is no longer listed verifies nothing.
"""

import base64
import hashlib
import json
from dataclasses import dataclass, field

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
from flask import current_app
from flask_jwt_extended.exceptions import JWTDecodeError
from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm
from marshmallow import Schema, fields

from config import ASYMMETRIC_ALGORITHMS, ConfigError

from . import errors
from .docs import refusals
from .extensions import Blueprint, read_only

MIN_RSA_BITS = 2048

# What each algorithm may sign with: the key classes, and (EC) the one curve
# RFC 7518 §3.4 pairs with it.
KEY_TYPES = {
    "RS256": ((rsa.RSAPrivateKey, rsa.RSAPublicKey), "an RSA key"),
    "ES256": ((ec.EllipticCurvePrivateKey, ec.EllipticCurvePublicKey), "an EC P-256 key"),
    "EdDSA": (
        (ed25519.Ed25519PrivateKey, ed25519.Ed25519PublicKey,
         ed448.Ed448PrivateKey, ed448.Ed448PublicKey),
        "an Ed25519 or Ed448 key",
    ),
}

# RFC 7638 §3.2: the thumbprint hashes only the required members of each key type.
THUMBPRINT_MEMBERS = {"RSA": ("e", "kty", "n"), "EC": ("crv", "kty", "x", "y"), "OKP": ("crv", "kty", "x")}


@dataclass
class KeySet:
    """The keys of one app: ``private`` signs, ``public`` maps kid -> key."""

    algorithm: str
    private: object = None
    kid: str | None = None
    public: dict = field(default_factory=dict)
    jwks: list = field(default_factory=list)


def thumbprint(jwk: dict) -> str:
    """The RFC 7638 JWK thumbprint (SHA-256, base64url without padding)."""
    members = {name: jwk[name] for name in THUMBPRINT_MEMBERS[jwk["kty"]]}
    canonical = json.dumps(members, separators=(",", ":"), sort_keys=True).encode("ascii")
    digest = hashlib.sha256(canonical).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def public_jwk(public_key, algorithm: str) -> dict:
    """The public JWK (RFC 7517) of ``public_key`` with its thumbprint as kid."""
    if isinstance(public_key, rsa.RSAPublicKey):
        jwk = RSAAlgorithm.to_jwk(public_key, as_dict=True)
    elif isinstance(public_key, ec.EllipticCurvePublicKey):
        jwk = ECAlgorithm.to_jwk(public_key, as_dict=True)
    else:
        jwk = OKPAlgorithm.to_jwk(public_key, as_dict=True)
    return {**jwk, "kid": thumbprint(jwk), "use": "sig", "alg": algorithm}


def _read_pem(setting: str, path: str, private: bool):
    try:
        with open(path, "rb") as fh:
            data = fh.read()
    except OSError as exc:
        raise ConfigError(f"{setting} {path!r} cannot be read: {exc.strerror}") from None
    try:
        if private:
            return serialization.load_pem_private_key(data, password=None)
        return serialization.load_pem_public_key(data)
    except TypeError:
        raise ConfigError(f"{setting} {path!r} is encrypted; give an unencrypted PEM key") from None
    except (ValueError, UnsupportedAlgorithm):
        kind = "private" if private else "public"
        raise ConfigError(f"{setting} {path!r} is not a PEM {kind} key") from None


def _check_type(setting: str, key, algorithm: str) -> None:
    classes, description = KEY_TYPES[algorithm]
    if not isinstance(key, classes):
        raise ConfigError(f"{setting} must hold {description} for JWT_ALGORITHM {algorithm}")
    if isinstance(key, (ec.EllipticCurvePrivateKey, ec.EllipticCurvePublicKey)) and not isinstance(
        key.curve, ec.SECP256R1
    ):
        raise ConfigError(f"{setting} must hold {description} for JWT_ALGORITHM {algorithm}")
    if isinstance(key, (rsa.RSAPrivateKey, rsa.RSAPublicKey)) and key.key_size < MIN_RSA_BITS:
        raise ConfigError(f"{setting} must be an RSA key of at least {MIN_RSA_BITS} bits")


def load_keys(config) -> KeySet:
    """Read and check the key files named by ``config``.

    Raises ConfigError (one line naming the setting) for an unreadable or
    malformed file, a key of the wrong type for the algorithm, or a public key
    that does not belong to the private key.
    """
    algorithm = config["JWT_ALGORITHM"]
    if algorithm not in ASYMMETRIC_ALGORITHMS:
        return KeySet(algorithm)
    private = _read_pem("JWT_PRIVATE_KEY_FILE", config["JWT_PRIVATE_KEY_FILE"], private=True)
    _check_type("JWT_PRIVATE_KEY_FILE", private, algorithm)
    public = _read_pem("JWT_PUBLIC_KEY_FILE", config["JWT_PUBLIC_KEY_FILE"], private=False)
    _check_type("JWT_PUBLIC_KEY_FILE", public, algorithm)
    current = public_jwk(public, algorithm)
    if public_jwk(private.public_key(), algorithm)["kid"] != current["kid"]:
        raise ConfigError("JWT_PUBLIC_KEY_FILE is not the public key of JWT_PRIVATE_KEY_FILE")
    keys = KeySet(algorithm, private=private, kid=current["kid"])
    keys.public[current["kid"]] = public
    keys.jwks.append(current)
    if config.get("JWT_PREVIOUS_PUBLIC_KEY_FILE"):
        previous = _read_pem(
            "JWT_PREVIOUS_PUBLIC_KEY_FILE", config["JWT_PREVIOUS_PUBLIC_KEY_FILE"], private=False
        )
        # Only the configured algorithm is ever accepted (API.md §2), so the old
        # key must be of the same kind.
        _check_type("JWT_PREVIOUS_PUBLIC_KEY_FILE", previous, algorithm)
        jwk = public_jwk(previous, algorithm)
        if jwk["kid"] not in keys.public:
            keys.public[jwk["kid"]] = previous
            keys.jwks.append(jwk)
    return keys


def init_app(app) -> None:
    app.extensions["authapi_keys"] = load_keys(app.config)


def _keys() -> KeySet:
    return current_app.extensions["authapi_keys"]


def signing_key():
    """The key new tokens are signed with."""
    keys = _keys()
    return keys.private if keys.private is not None else current_app.config["JWT_SECRET_KEY"]


def token_headers() -> dict:
    """Extra JOSE header members of new tokens: the kid of the signing key."""
    kid = _keys().kid
    return {"kid": kid} if kid else {}


def asymmetric() -> bool:
    """Whether tokens are signed with a key pair (the kid then names the
    public key), not the HS secret."""
    return _keys().private is not None


def verification_key(header: dict):
    """The key that must have signed a token with this (unverified) header.

    Raises JWTDecodeError (401 token_invalid) when an asymmetric setup does not
    list the token's kid: a key removed from the JWKS verifies nothing.
    """
    keys = _keys()
    if keys.private is None:
        return current_app.config["JWT_SECRET_KEY"]
    kid = header.get("kid")
    # The header is attacker-controlled JSON: a list or object kid must not reach a dict lookup.
    if not isinstance(kid, str) or kid not in keys.public:
        raise JWTDecodeError("Unknown signing key")
    return keys.public[kid]


# ---------------------------------------------------------------- /.well-known/jwks.json

bp = Blueprint("keys", __name__, url_prefix="/.well-known", description="Token verification keys")


class JWKOut(Schema):
    kty = fields.String(required=True)
    kid = fields.String(required=True)
    use = fields.String()
    alg = fields.String()
    n = fields.String()
    e = fields.String()
    crv = fields.String()
    x = fields.String()
    y = fields.String()


class JWKSOut(Schema):
    keys = fields.List(fields.Nested(JWKOut), required=True)


@bp.get("/jwks.json")
@read_only
@refusals(404)
@bp.response(200, JWKSOut)
def jwks():
    """The public keys that verify access tokens (RFC 7517); 404 with an HS algorithm."""
    keys = _keys()
    if not keys.jwks:
        raise errors.NotFound("No public keys: tokens are signed with a shared secret.")
    # Verifiers may cache it for a while: a client such as PyJWT's PyJWKClient
    # fetches it again when a token names a kid it has not seen (a rotation).
    return {"keys": keys.jwks}, {"Cache-Control": "public, max-age=300"}
