"""How authapi names a value it must not keep: the hex SHA-256 of its text.

Stored one-time tokens, device tokens and recovery codes, and the store keys
made from what a client types (logins, addresses, second-step tokens), are
digests, so a database dump or a key listing holds none of them, and no typed
value can reach another key's namespace. These values are long random strings
or not secret at all, so a fast hash is the right one (passwords are argon2's).
"""

import hashlib


def digest(text: str) -> str:
    # surrogatepass: a JSON string or a cookie may carry a lone surrogate,
    # which must hash like any other value rather than fail.
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()
