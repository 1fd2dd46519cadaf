"""Browser clients (API.md §3, ``REFRESH_TOKEN_COOKIE=true``).

The refresh token travels in an ``HttpOnly`` cookie that no script can read
(``Path=/auth``, ``SameSite=Strict``, ``Secure`` in production), so an XSS on
the client's page cannot steal it. A cookie is sent by the browser on its own,
so a refresh by cookie also needs flask-jwt-extended's double-submit proof: an
``X-CSRF-TOKEN`` header equal to the readable ``csrf_refresh_token`` cookie,
which only a page allowed to read it can copy. Without it the answer is 401
``token_invalid`` (errors.py). Bearer and JSON refresh keep working beside it,
each judged by its own token alone.

The device token of a login (API.md §7) is a cookie too in this mode,
``device_token``, with the refresh cookie's attributes: ``HttpOnly`` so a
script cannot steal it, and sent only to ``/auth``, where the next login reads
it. It needs no CSRF proof: it only ever spares its own user a lockout.

Login CSRF: a foreign page could make a browser log in as the attacker (then
refresh into the attacker's account). ``refuse_foreign_origins`` refuses, in
this mode, a login or refresh sent from any origin but the API's own and
``CORS_ORIGINS``.
"""

from functools import wraps
from urllib.parse import urlsplit

from flask import after_this_request, current_app, request
from flask_jwt_extended import set_refresh_cookies, unset_refresh_cookies

from . import errors, token_check
from .http import FORM_MIMETYPE

REFRESH_JSON_KEY = "refresh_token"
DEFAULT_PORTS = {"http": 80, "https": 443}
# Sec-Fetch-Site values of a request that a page of another origin started.
FOREIGN_FETCH_SITES = {"cross-site", "same-site"}
DEVICE_COOKIE = "device_token"


def _browser_mode() -> bool:
    return current_app.config["REFRESH_TOKEN_COOKIE"]


def presented_device_token(field_value: str | None) -> str | None:
    """The device token a login presents: its body's field, else, in browser
    mode, the cookie (read in no other mode, like the refresh cookie)."""
    if field_value:
        return field_value
    if _browser_mode():
        return request.cookies.get(DEVICE_COOKIE) or None
    return None


# ---------------------------------------------------------------- where the refresh token is


def refresh_token_required(view):
    """``jwt_required(refresh=True)``'s checks of the token at the one place
    the request puts it (``refresh_token_location``), on the hot path
    (``token_check.refresh_claims``: no user load, the rotation checks the
    account); the view gets the claims as ``refresh_claims``."""

    @wraps(view)
    def wrapper(*args, **kwargs):
        claims = token_check.refresh_claims(refresh_token_location())
        return current_app.ensure_sync(view)(*args, refresh_claims=claims, **kwargs)

    return wrapper


def refresh_token_location() -> str:
    """Where this refresh request carries its token: the Authorization
    header, else the JSON body's ``refresh_token``, else (browser mode only)
    the cookie. A token sent explicitly is judged alone, so a stale cookie
    riding along cannot spoil a Bearer or JSON refresh; and outside browser
    mode a cookie (say, left from before the mode was turned off) is never
    read, since it would be accepted without any CSRF check.

    Raises ValidationFailed for a JSON ``refresh_token`` that is not a string,
    TokenInvalid for one that cannot be a token (a lone surrogate would make
    the JWT library fail on encoding it: a 500).
    """
    if request.headers.get("Authorization", "").strip():
        return "headers"
    # http.check_body has made sure a body is a JSON object (or refused it).
    body = request.get_json(silent=True) if request.is_json else None
    if isinstance(body, dict) and REFRESH_JSON_KEY in body:
        token = body[REFRESH_JSON_KEY]
        if not isinstance(token, str):
            raise errors.ValidationFailed(details={REFRESH_JSON_KEY: ["Not a valid string."]})
        # A JWT is ASCII (base64url and dots); anything else is malformed.
        if not token or not token.isascii():
            raise errors.TokenInvalid()
        return "json"
    # With no token anywhere, "headers" answers 401 unauthorized.
    return "cookies" if _browser_mode() else "headers"


# ---------------------------------------------------------------- login CSRF


def refuse_foreign_origins(view):
    """In browser mode, refuse (403 ``forbidden``, before anything is read or
    written) a request that a page of a foreign origin sent: an ``Origin``
    that is neither the API's own nor in ``CORS_ORIGINS``; without ``Origin``,
    a ``Sec-Fetch-Site`` naming another site, or an OAuth2 form body (the one
    body a foreign page can send without a CORS preflight, and older browsers
    send it without ``Origin``)."""

    @wraps(view)
    def wrapper(*args, **kwargs):
        if _browser_mode() and _sent_by_a_foreign_page():
            raise errors.Forbidden("Requests from this origin are not allowed.")
        return current_app.ensure_sync(view)(*args, **kwargs)

    return wrapper


def _sent_by_a_foreign_page() -> bool:
    origin = request.headers.get("Origin")
    if origin is None:
        site = request.headers.get("Sec-Fetch-Site", "").strip().lower()
        return site in FOREIGN_FETCH_SITES or request.mimetype == FORM_MIMETYPE
    allowed = {_origin_key(f"{request.scheme}://{request.host}")}
    allowed.update(_origin_key(entry) for entry in current_app.config["CORS_ORIGINS"])
    key = _origin_key(origin)
    return key is None or key not in allowed


def _origin_key(origin: str) -> tuple[str, str, int] | None:
    """(scheme, host, port) of an origin or URL, case and default port
    normalised; None for anything that is not one ("null" included)."""
    try:
        parts = urlsplit(origin.strip())
        port = parts.port
    except ValueError:  # a port out of range, a bad IPv6 literal
        return None
    scheme = parts.scheme.lower()
    # An origin is scheme, host and port only (RFC 6454); a path or a user is not one.
    if scheme not in DEFAULT_PORTS or not parts.hostname or parts.username is not None:
        return None
    if parts.path or parts.query or parts.fragment:
        return None
    return scheme, parts.hostname.lower(), port or DEFAULT_PORTS[scheme]


# ---------------------------------------------------------------- setting and clearing


def deliver_token_pair(pair: dict) -> dict:
    """In browser mode, move the refresh token (and a login's device token)
    out of the JSON body into the cookies of the response; otherwise return
    the pair as it is."""
    if not _browser_mode():
        return pair
    refresh_token = pair.pop("refresh_token")
    device_token = pair.pop("device_token", None)

    @after_this_request
    def set_cookies(response):
        set_refresh_cookies(response, refresh_token, max_age=current_app.config["REFRESH_TOKEN_TTL"])
        if device_token is not None:
            _set_device_cookie(response, device_token)
        return response

    return pair


def _set_device_cookie(response, device_token: str) -> None:
    config = current_app.config
    response.set_cookie(
        DEVICE_COOKIE,
        device_token,
        max_age=config["DEVICE_TOKEN_TTL"],
        path=config["JWT_REFRESH_COOKIE_PATH"],
        secure=config["JWT_COOKIE_SECURE"],
        httponly=True,
        samesite=config["JWT_COOKIE_SAMESITE"],
    )


def clear_refresh_cookies() -> None:
    """In browser mode, have the response delete both cookies."""
    if not _browser_mode():
        return

    @after_this_request
    def unset_cookies(response):
        unset_refresh_cookies(response)
        return response
