"""A passkey authenticator in software, for the protocol tests: it answers
the API's options with the WebAuthn Level 3 JSON a browser's ``toJSON()``
sends (``none`` attestation), signing with a P-256 (ES256) or Ed25519 (EdDSA)
key from ``cryptography``. Every part of its answer can be spoiled on purpose
(origin, type, RP ID, flags, counter, user handle, signature), which no real
browser would let a test do.

It encodes the authenticator data and attestation object itself (cbor2 for
the CBOR): it is the client under test's stand-in, not the app's check,
which is py_webauthn's alone.
"""

import base64
import hashlib
import json
import os
import struct

import cbor2
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

# Authenticator data flags (WebAuthn Level 3, §6.1).
UP, UV, BE, BS, AT = 0x01, 0x04, 0x08, 0x10, 0x40


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def from_b64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class SoftwareAuthenticator:
    """One discoverable credential for ``rp_id``, used from ``origin``.
    ``counting``: its signature counter goes up with each assertion (else it
    stays 0, as synced passkeys' do)."""

    def __init__(self, algorithm: str = "ES256", rp_id: str = "example.com",
                 origin: str = "https://example.com", counting: bool = False):
        self.algorithm = algorithm
        self.rp_id = rp_id
        self.origin = origin
        self.counting = counting
        self.sign_count = 0
        self.credential_id = os.urandom(32)
        self.user_handle = None
        if algorithm == "ES256":
            self.key = ec.generate_private_key(ec.SECP256R1())
        elif algorithm == "EdDSA":
            self.key = ed25519.Ed25519PrivateKey.generate()
        else:
            raise ValueError(algorithm)

    @property
    def id(self) -> str:
        return b64url(self.credential_id)

    def cose_public_key(self) -> bytes:
        public = self.key.public_key()
        if self.algorithm == "ES256":
            numbers = public.public_numbers()
            return cbor2.dumps({1: 2, 3: -7, -1: 1, -2: numbers.x.to_bytes(32, "big"),
                                -3: numbers.y.to_bytes(32, "big")})
        raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        return cbor2.dumps({1: 1, 3: -8, -1: 6, -2: raw})

    def _client_data(self, options: dict, ceremony: str, origin: str | None, type_: str | None) -> bytes:
        return json.dumps({
            "type": type_ or f"webauthn.{ceremony}",
            "challenge": options["challenge"],
            "origin": origin or self.origin,
            "crossOrigin": False,
        }).encode()

    def _authenticator_data(self, rp_id: str | None, flags: int, extra: bytes = b"") -> bytes:
        rp_id_hash = hashlib.sha256((rp_id or self.rp_id).encode()).digest()
        return rp_id_hash + bytes([flags]) + struct.pack(">I", self.sign_count) + extra

    def create(self, options: dict, *, origin=None, type_=None, rp_id=None, flags=UP | UV) -> dict:
        """The RegistrationResponseJSON of ``navigator.credentials.create(options)``."""
        self.user_handle = from_b64url(options["user"]["id"])
        client_data = self._client_data(options, "create", origin, type_)
        attested = (bytes(16) + struct.pack(">H", len(self.credential_id)) + self.credential_id
                    + self.cose_public_key())
        auth_data = self._authenticator_data(rp_id, flags | AT, attested)
        attestation = cbor2.dumps({"fmt": "none", "attStmt": {}, "authData": auth_data})
        return {
            "id": self.id, "rawId": self.id, "type": "public-key",
            "response": {"clientDataJSON": b64url(client_data), "attestationObject": b64url(attestation),
                         "transports": ["internal", "hybrid"]},
            "authenticatorAttachment": "platform", "clientExtensionResults": {},
        }

    def get(self, options: dict, *, origin=None, type_=None, rp_id=None, flags=UP | UV,
            user_handle: bytes | None | str = "own", bad_signature=False) -> dict:
        """The AuthenticationResponseJSON of ``navigator.credentials.get(options)``;
        ``user_handle`` None leaves it out."""
        if self.counting:
            self.sign_count += 1
        client_data = self._client_data(options, "get", origin, type_)
        auth_data = self._authenticator_data(rp_id, flags)
        signed = auth_data + hashlib.sha256(client_data).digest()
        if self.algorithm == "ES256":
            signature = self.key.sign(signed, ec.ECDSA(hashes.SHA256()))
        else:
            signature = self.key.sign(signed)
        if bad_signature:
            signature = self.key.sign(b"something else", *(
                [ec.ECDSA(hashes.SHA256())] if self.algorithm == "ES256" else []))
        response = {"clientDataJSON": b64url(client_data), "authenticatorData": b64url(auth_data),
                    "signature": b64url(signature)}
        handle = self.user_handle if user_handle == "own" else user_handle
        if handle is not None:
            response["userHandle"] = b64url(handle)
        return {"id": self.id, "rawId": self.id, "type": "public-key", "response": response,
                "authenticatorAttachment": "platform", "clientExtensionResults": {}}
