"""Asymmetric signing and /.well-known/jwks.json (API.md §3, §5).

A verifier here is PyJWT given nothing but the JWKS document, as another
service would be. Keys are generated per test run and written as PEM files.
"""

import base64
import hashlib
import hmac
import json
import time
import uuid

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from authapi import create_app, keys
from config import ConfigError

from .conftest import base_env, bearer


@pytest.fixture(scope="module")
def database_url(sqlite_url):
    """One database is enough here: nothing about signing depends on it."""
    return sqlite_url


GENERATORS = {
    "RS256": lambda: rsa.generate_private_key(public_exponent=65537, key_size=2048),
    "ES256": lambda: ec.generate_private_key(ec.SECP256R1()),
    "EdDSA": ed25519.Ed25519PrivateKey.generate,
}


class KeyFiles:
    """Key pairs written as PEM files, made on demand and kept for the module."""

    def __init__(self, directory):
        self.directory = directory
        self.made = {}

    def pair(self, algorithm, name="current"):
        """(private key path, public key path, private key) of a named key."""
        if (algorithm, name) not in self.made:
            key = GENERATORS[algorithm]()
            private = self.directory / f"{algorithm}-{name}.pem"
            public = self.directory / f"{algorithm}-{name}.pub.pem"
            private.write_bytes(key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            ))
            public.write_bytes(key.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo,
            ))
            self.made[(algorithm, name)] = (str(private), str(public), key)
        return self.made[(algorithm, name)]

    def env(self, algorithm, name="current", previous=None):
        private, public, _ = self.pair(algorithm, name)
        env = {"JWT_ALGORITHM": algorithm, "JWT_PRIVATE_KEY_FILE": private, "JWT_PUBLIC_KEY_FILE": public}
        if previous:
            env["JWT_PREVIOUS_PUBLIC_KEY_FILE"] = self.pair(algorithm, previous)[1]
        return env


@pytest.fixture(scope="module")
def key_files(tmp_path_factory):
    return KeyFiles(tmp_path_factory.mktemp("keys"))


def access_token(app):
    client = app.test_client()
    email = f"{uuid.uuid4().hex[:12]}@example.com"
    password = "correct horse battery staple"
    assert client.post("/auth/register", json={
        "email": email, "username": email[:12], "password": password,
    }).status_code == 201
    response = client.post("/auth/login", json={"username": email, "password": password})
    assert response.status_code == 200, response.get_json()
    return response.get_json()


def verify_with_jwks_only(token, jwks, algorithm):
    """What another service does: pick the key by the token's kid, verify."""
    kid = jwt.get_unverified_header(token)["kid"]
    key = jwt.PyJWKSet.from_dict(jwks)[kid]
    return jwt.decode(token, key.key, algorithms=[algorithm])


def rfc7638(jwk):
    required = {"RSA": ("e", "kty", "n"), "EC": ("crv", "kty", "x", "y"), "OKP": ("crv", "kty", "x")}
    members = {k: jwk[k] for k in required[jwk["kty"]]}
    digest = hashlib.sha256(json.dumps(members, sort_keys=True, separators=(",", ":")).encode()).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def test_thumbprint_matches_the_rfc_7638_example():
    # RFC 7638 §3.1.
    jwk = {
        "kty": "RSA", "e": "AQAB", "alg": "RS256", "kid": "2011-04-29",
        "n": "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_"
             "BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_"
             "FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI"
             "4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw",
    }
    assert keys.thumbprint(jwk) == "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"


def test_jwks_is_not_found_with_a_shared_secret(client):
    response = client.get("/.well-known/jwks.json")
    assert response.status_code == 404
    assert response.get_json()["error"]["code"] == "not_found"


@pytest.mark.parametrize("algorithm", ["RS256", "ES256", "EdDSA"])
def test_access_token_verifies_with_the_jwks_alone(make_app, key_files, algorithm):
    app = make_app(**key_files.env(algorithm))
    pair = access_token(app)
    response = app.test_client().get("/.well-known/jwks.json")
    assert response.status_code == 200
    # Public and the same for everyone: verifiers and proxies may cache it briefly.
    assert response.headers["Cache-Control"] == "public, max-age=300"
    jwks = response.get_json()
    assert len(jwks["keys"]) == 1
    (jwk,) = jwks["keys"]
    assert "d" not in jwk  # never the private part
    assert jwk["kid"] == rfc7638(jwk) and jwk["alg"] == algorithm and jwk["use"] == "sig"
    assert jwt.get_unverified_header(pair["access_token"]) == {"alg": algorithm, "kid": jwk["kid"], "typ": "JWT"}

    claims = verify_with_jwks_only(pair["access_token"], jwks, algorithm)
    assert claims["type"] == "access" and claims["sub"].isdigit()
    # The refresh token carries the kid too, and the app accepts its own tokens.
    assert jwt.get_unverified_header(pair["refresh_token"])["kid"] == jwk["kid"]
    assert app.test_client().get("/users/me", headers=bearer(pair["access_token"])).status_code == 200
    assert app.test_client().post("/auth/refresh", headers=bearer(pair["refresh_token"])).status_code == 200


def test_rotation_keeps_old_tokens_valid_until_the_old_key_is_removed(make_app, key_files):
    before = make_app(**key_files.env("EdDSA", "old"))
    old_token = access_token(before)["access_token"]

    rotated = make_app(**key_files.env("EdDSA", "new", previous="old"))
    jwks = rotated.test_client().get("/.well-known/jwks.json").get_json()
    kids = [k["kid"] for k in jwks["keys"]]
    assert len(kids) == 2
    # New tokens are signed with the new key, the first one listed.
    assert jwt.get_unverified_header(access_token(rotated)["access_token"])["kid"] == kids[0]
    assert jwt.get_unverified_header(old_token)["kid"] == kids[1]
    verify_with_jwks_only(old_token, jwks, "EdDSA")
    assert rotated.test_client().get("/users/me", headers=bearer(old_token)).status_code == 200

    removed = make_app(**key_files.env("EdDSA", "new"))
    jwks = removed.test_client().get("/.well-known/jwks.json").get_json()
    with pytest.raises(KeyError):
        verify_with_jwks_only(old_token, jwks, "EdDSA")
    response = removed.test_client().get("/users/me", headers=bearer(old_token))
    assert response.status_code == 401
    assert response.get_json()["error"]["code"] == "token_invalid"


def forged(app, key, algorithm, kid):
    """A new user's access token with every claim right, signed with ``key``
    and naming ``kid`` (none when None)."""
    claims = jwt.decode(access_token(app)["access_token"], options={"verify_signature": False})
    headers = {} if kid is None else {"kid": kid}
    return jwt.encode(claims, key, algorithm=algorithm, headers=headers)


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def hand_made(app, header, sign):
    """A new user's token whose header and signature are made by hand: PyJWT
    refuses to encode a kid that is not a string or to use a PEM key as an
    HMAC secret; an attacker is not so polite."""
    claims = jwt.decode(access_token(app)["access_token"], options={"verify_signature": False})
    signing_input = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(claims).encode())}"
    return f"{signing_input}.{b64(sign(signing_input.encode()))}"


def test_a_token_signed_by_another_key_is_refused_even_with_the_current_kid(make_app, key_files):
    app = make_app(**key_files.env("RS256"))
    kid = app.test_client().get("/.well-known/jwks.json").get_json()["keys"][0]["kid"]
    stranger = key_files.pair("RS256", "stranger")[2]
    response = app.test_client().get("/users/me", headers=bearer(forged(app, stranger, "RS256", kid)))
    assert (response.status_code, response.get_json()["error"]["code"]) == (401, "token_invalid")


def test_the_public_key_used_as_an_hmac_secret_is_refused(make_app, key_files):
    # The classic algorithm confusion: HS256 "signed" with the published key.
    app = make_app(**key_files.env("RS256"))
    kid = app.test_client().get("/.well-known/jwks.json").get_json()["keys"][0]["kid"]
    with open(key_files.pair("RS256")[1], "rb") as fh:
        public_pem = fh.read()
    header = {"alg": "HS256", "typ": "JWT", "kid": kid}
    token = hand_made(app, header, lambda data: hmac.new(public_pem, data, hashlib.sha256).digest())
    response = app.test_client().get("/users/me", headers=bearer(token))
    assert (response.status_code, response.get_json()["error"]["code"]) == (401, "token_invalid")


@pytest.mark.parametrize("kid", [None, "", "unknown", ["a"], {"k": 1}, 7])
def test_a_missing_unknown_or_malformed_kid_is_refused(make_app, key_files, kid):
    app = make_app(**key_files.env("EdDSA"))
    header = {"alg": "EdDSA", "typ": "JWT"} if kid is None else {"alg": "EdDSA", "typ": "JWT", "kid": kid}
    token = hand_made(app, header, key_files.pair("EdDSA")[2].sign)
    response = app.test_client().get("/users/me", headers=bearer(token))
    assert (response.status_code, response.get_json()["error"]["code"]) == (401, "token_invalid")


def test_an_expired_token_of_the_rotated_out_key_is_expired(make_app, key_files):
    app = make_app(**key_files.env("ES256", "new", previous="old"))
    old_key = key_files.pair("ES256", "old")[2]
    claims = jwt.decode(access_token(app)["access_token"], options={"verify_signature": False})
    old_kid = keys.public_jwk(old_key.public_key(), "ES256")["kid"]
    expired = jwt.encode({**claims, "exp": int(time.time()) - 5}, old_key,
                         algorithm="ES256", headers={"kid": old_kid})
    response = app.test_client().get("/users/me", headers=bearer(expired))
    assert (response.status_code, response.get_json()["error"]["code"]) == (401, "token_expired")


# ---------------------------------------------------------------- start-up refusals


def production_env(**extra):
    env = base_env("postgresql://db/authapi", "redis://127.0.0.1:6379/0", AUTHAPI_ENV="production",
                   MAIL_BACKEND="smtp")
    env.pop("JWT_SECRET_KEY")
    env.update(extra)
    return env


def test_production_starts_with_key_files_and_no_jwt_secret(key_files):
    app = create_app("production", environ=production_env(**key_files.env("RS256")))
    assert app.extensions["authapi_keys"].kid is not None


@pytest.mark.parametrize("case, message", [
    ("no private key", "JWT_ALGORITHM EdDSA needs JWT_PRIVATE_KEY_FILE"),
    ("no public key", "JWT_ALGORITHM EdDSA needs JWT_PUBLIC_KEY_FILE"),
    ("missing file", "JWT_PRIVATE_KEY_FILE '/nonexistent/key.pem' is not a readable file"),
    ("directory", "is not a readable file"),
    ("not a key", "is not a PEM private key"),
    ("public key as private", "is not a PEM private key"),
    ("wrong key type", "JWT_PRIVATE_KEY_FILE must hold an Ed25519 or Ed448 key for JWT_ALGORITHM EdDSA"),
    ("mismatched pair", "JWT_PUBLIC_KEY_FILE is not the public key of JWT_PRIVATE_KEY_FILE"),
    ("previous of another type", "JWT_PREVIOUS_PUBLIC_KEY_FILE must hold an Ed25519 or Ed448 key"),
    ("encrypted", "is encrypted"),
])
def test_production_refuses_bad_key_files_in_one_line(key_files, tmp_path, case, message):
    env = key_files.env("EdDSA")
    if case == "no private key":
        env.pop("JWT_PRIVATE_KEY_FILE")
    elif case == "no public key":
        env.pop("JWT_PUBLIC_KEY_FILE")
    elif case == "missing file":
        env["JWT_PRIVATE_KEY_FILE"] = "/nonexistent/key.pem"
    elif case == "directory":
        env["JWT_PRIVATE_KEY_FILE"] = str(tmp_path)
    elif case == "not a key":
        (tmp_path / "junk.pem").write_text("-----BEGIN PRIVATE KEY-----\nnope\n-----END PRIVATE KEY-----\n")
        env["JWT_PRIVATE_KEY_FILE"] = str(tmp_path / "junk.pem")
    elif case == "public key as private":
        env["JWT_PRIVATE_KEY_FILE"] = env["JWT_PUBLIC_KEY_FILE"]
    elif case == "wrong key type":
        env["JWT_PRIVATE_KEY_FILE"] = key_files.pair("ES256")[0]
    elif case == "mismatched pair":
        env["JWT_PUBLIC_KEY_FILE"] = key_files.pair("EdDSA", "other")[1]
    elif case == "previous of another type":
        env["JWT_PREVIOUS_PUBLIC_KEY_FILE"] = key_files.pair("RS256")[1]
    elif case == "encrypted":
        key = key_files.pair("EdDSA")[2]
        (tmp_path / "enc.pem").write_bytes(key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"passphrase"),
        ))
        env["JWT_PRIVATE_KEY_FILE"] = str(tmp_path / "enc.pem")
    with pytest.raises(ConfigError) as refused:
        create_app("production", environ=production_env(**env))
    assert message in str(refused.value)
    assert "\n" not in str(refused.value)


def test_short_rsa_keys_are_refused(tmp_path):
    weak = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    (tmp_path / "weak.pem").write_bytes(weak.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    (tmp_path / "weak.pub.pem").write_bytes(weak.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    with pytest.raises(ConfigError, match="at least 2048 bits"):
        create_app("production", environ=production_env(
            JWT_ALGORITHM="RS256", JWT_PRIVATE_KEY_FILE=str(tmp_path / "weak.pem"),
            JWT_PUBLIC_KEY_FILE=str(tmp_path / "weak.pub.pem")))
