"""The HTTP layer around every view: trusted proxies, hosts, CORS, request ids,
body checks, and the security headers of every response (the one list:
gunicorn.conf.py sends these too, tests/test_nginx.py checks nginx's pages).

The client address (``request.remote_addr``) is normalised here, once, for
every reader (sessions, logs, rate limits): a valid IPv4 or IPv6 address in its
compressed form, or None (``client_address``)."""

import ipaddress
import re
import uuid

from flask import current_app, g, request
from flask.sessions import SecureCookieSessionInterface
from werkzeug.exceptions import BadRequest, RequestEntityTooLarge
from werkzeug.middleware.proxy_fix import ProxyFix
from werkzeug.sansio.utils import host_is_trusted

from . import errors
from .extensions import cors

REQUEST_ID_PATTERN = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
# OAuth2 password grant and RFC 7662 introspection (API.md §1, §11).
FORM_ENDPOINTS = {"auth.login", "introspection.introspect"}
# The hosted pages' forms (API.md §12): a form and nothing else. Every other
# body, /auth/* included, stays JSON.
FORM_ONLY_ENDPOINTS = {"pages.verify", "pages.reset"}
# Forward authentication judges the Authorization header alone: whatever
# body a proxy passes on is never read, so not checked (API.md §11).
BODY_IGNORED = {"verify.verify"}
FORM_MIMETYPE = "application/x-www-form-urlencoded"

SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    # Every response may carry a token or account data.
    "Cache-Control": "no-store",
}
HSTS = "max-age=63072000"
_SECURITY_HEADERS = [(name.lower(), name, value) for name, value in SECURITY_HEADERS.items()]

CORS_ALLOW_HEADERS = ["Authorization", "Content-Type", "X-CSRF-TOKEN", "X-Request-ID"]
CORS_EXPOSE_HEADERS = [
    "X-Request-ID",
    "Retry-After",
    "X-RateLimit-Limit",
    "X-RateLimit-Remaining",
    "X-RateLimit-Reset",
    "RateLimit-Limit",
    "RateLimit-Remaining",
    "RateLimit-Reset",
    "RateLimit-Policy",
]


def current_request_id() -> str:
    if g.get("request_id") is None:
        incoming = request.headers.get("X-Request-ID", "")
        # Echo only ids that cannot inject anything into logs or headers.
        g.request_id = incoming if REQUEST_ID_PATTERN.fullmatch(incoming) else uuid.uuid4().hex
    return g.request_id


def client_user_agent() -> str:
    """The request's User-Agent as text fit to store and log: any latin-1 a
    client sent, with control characters (NUL, which PostgreSQL refuses in
    text, and anything that could forge a log line) dropped."""
    return "".join(c for c in request.user_agent.string if c.isprintable())


def client_address(value: str | None) -> str | None:
    """``value`` as the one text form of its address (IPv6 compressed and
    without a zone, an IPv4-mapped IPv6 address as IPv4), or None when it is
    not an address at all. Whatever a proxy's X-Forwarded-For says, the result
    fits the sessions' VARCHAR(45) and means one client to every reader."""
    if not value:
        return None
    try:
        address = ipaddress.ip_address(value.strip().split("%", 1)[0])
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.compressed


class ClientAddress:
    """WSGI middleware just inside ProxyFix: REMOTE_ADDR as ``client_address``
    has it, absent when it is not an address, so that no reader of
    ``request.remote_addr`` (sessions, logs, rate limits) sees anything else."""

    def __init__(self, wsgi_app):
        self.wsgi_app = wsgi_app

    def __call__(self, environ, start_response):
        address = client_address(environ.get("REMOTE_ADDR"))
        if address is None:
            environ.pop("REMOTE_ADDR", None)
        else:
            environ["REMOTE_ADDR"] = address
        return self.wsgi_app(environ, start_response)


def assign_request_id() -> None:
    current_request_id()


def check_host():
    """TRUSTED_HOSTS (API.md §5): refuse a Host header naming another host,
    so nothing can be tricked into trusting a forged one."""
    allowed = current_app.config["AUTHAPI_TRUSTED_HOSTS"]
    # Load balancers probe /health/* by address.
    if not allowed or request.path.startswith("/health/"):
        return
    # Host names are case-insensitive (RFC 9110); werkzeug compares as given.
    if not host_is_trusted(request.host.lower(), [host.lower() for host in allowed]):
        raise errors.BadRequest("The Host header names a host this API does not serve.")


def check_body():
    """Refuse bodies of the wrong type (415) or that are not a JSON object (400)
    before any view or extension parses them."""
    if request.routing_exception is not None or request.endpoint in BODY_IGNORED or not _has_body():
        return
    if request.mimetype == FORM_MIMETYPE and request.endpoint in FORM_ENDPOINTS | FORM_ONLY_ENDPOINTS:
        request.form  # reads the body now, so an oversized one is a 413 here
        return
    if request.endpoint in FORM_ONLY_ENDPOINTS:
        raise errors.UnsupportedMediaType(f"This form takes {FORM_MIMETYPE} bodies.")
    if not request.is_json:
        raise errors.UnsupportedMediaType()
    try:
        body = request.get_json()
    except RequestEntityTooLarge:
        raise
    except (BadRequest, RecursionError):  # RecursionError: nesting too deep to parse
        raise errors.BadRequest("The request body is not valid JSON.") from None
    if not isinstance(body, dict):
        raise errors.BadRequest("The request body must be a JSON object.")


def _has_body() -> bool:
    return bool(request.content_length) or "chunked" in request.headers.get(
        "Transfer-Encoding", ""
    ).lower()


def add_response_headers(response):
    headers = response.headers
    # Also for responses made before assign_request_id ran: an extension's
    # before_request hook (the limiter's) may answer first.
    headers["X-Request-ID"] = current_request_id()
    # A view's own value stands (setdefault's rule, in one pass over the headers).
    present = {name.lower() for name in headers.keys()}
    for lower, name, value in _SECURITY_HEADERS:
        if lower not in present:
            headers.add(name, value)
    # RFC 6797 forbids HSTS over plain HTTP; is_secure is the scheme as the
    # trusted proxies (PROXY_FIX_X_FOR) report it.
    if current_app.config["AUTHAPI_ENV"] == "production" and request.is_secure:
        response.headers.setdefault("Strict-Transport-Security", HSTS)
    return response


def init_app(app) -> None:
    """Wire the HTTP layer: trusted proxies, CORS, the request hooks. Call it
    after ratelimit.init_app: the limiter's check runs before the body is read."""
    # CORS first: after_request hooks run in reverse, so the security headers
    # are set before CORS's.
    _init_cors(app)
    # Runs after ProxyFix (wrapped inside it): it normalises what ProxyFix took
    # from X-Forwarded-For, which a client or a broken proxy may fill with anything.
    app.wsgi_app = ClientAddress(app.wsgi_app)
    hops = app.config["PROXY_FIX_X_FOR"]
    if hops:
        # Trust exactly that many proxies for the client address and scheme;
        # with 0, X-Forwarded-For and X-Forwarded-Proto are not read at all.
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops)
    app.before_request(assign_request_id)
    app.before_request(check_host)
    app.before_request(check_body)
    app.after_request(add_response_headers)
    app.session_interface = NoCookieSession()


class NoCookieSession(SecureCookieSessionInterface):
    """No Flask cookie session: authapi keeps no state in one (tokens travel
    as bearer tokens or the refresh cookies of authapi.cookies), and opening
    one costs every request a signing serializer. ``flask.session`` is
    Flask's null session, which refuses to be written."""

    def open_session(self, app, request):
        return None


def _init_cors(app) -> None:
    """Cross-origin access for CORS_ORIGINS only; an empty list allows none.
    Credentials (the refresh cookie) go only to those origins."""
    if not app.config["CORS_ORIGINS"]:
        # No origin is allowed: no CORS headers to add, so no hook on every
        # response (and a preflight gets none, which a browser refuses).
        return
    cors.init_app(
        app,
        origins=app.config["CORS_ORIGINS"],
        supports_credentials=True,
        allow_headers=CORS_ALLOW_HEADERS,
        expose_headers=CORS_EXPOSE_HEADERS,
        max_age=600,
    )
