"""Browser clients (API.md §3, ``REFRESH_TOKEN_COOKIE=true``).

The refresh token travels in an ``HttpOnly`` cookie that no script can read
(``Path=/auth``, ``SameSite=Strict``, ``Secure`` in production), so an XSS on
the client's page cannot steal it. A cookie is sent by the browser on its own,
so a refresh by cookie also needs flask-jwt-extended's double-submit proof: an
``X-CSRF-TOKEN`` header equal to the readable ``csrf_refresh_token`` cookie,
which only a page allowed to read it can copy. Without it the answer is 401
``token_invalid`` (errors.py). Bearer and JSON refresh keep working beside it.

The device token of a login (API.md §7) is a cookie too in this mode,
``device_token``, with the refresh cookie's attributes: ``HttpOnly`` so a
script cannot steal it, and sent only to ``/auth``, where the next login reads
it. It needs no CSRF proof: it only ever spares its own user a lockout.
"""

from functools import wraps

from flask import after_this_request, current_app, request
from flask_jwt_extended import set_refresh_cookies, unset_refresh_cookies, verify_jwt_in_request


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


def refresh_token_required(view):
    """``jwt_required(refresh=True)`` that also reads the refresh cookie, but
    only in browser mode: otherwise a cookie (say, left from before the mode
    was turned off) would be accepted without any CSRF check."""

    @wraps(view)
    def wrapper(*args, **kwargs):
        # An explicit Authorization header wins over what a browser sends along.
        locations = ["headers", "cookies", "json"] if _browser_mode() else ["headers", "json"]
        verify_jwt_in_request(refresh=True, locations=locations)
        return current_app.ensure_sync(view)(*args, **kwargs)

    return wrapper


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
