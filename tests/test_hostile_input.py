"""Hostile input (finding 1 of issue 13, and what probing for more found):
every endpoint of the app (its url_map) x every place a request is read (each
body field, form field, query and path parameter, each header and cookie the
app or its extensions read, the raw body) x hostile values (lone surrogates,
NUL, huge strings, huge, negative and float numbers, booleans, null, arrays,
objects, deep nesting, newlines, non-UTF-8 bytes, wrong content types).

Never a 5xx; every error in the envelope of API.md §1 with a code of its
status; an X-Request-ID that is safe to log; and a hostile value where a
field, parameter or body is expected is refused (4xx). A hostile header may
be ignored (2xx). On PostgreSQL, which refuses NUL in text and checks lengths,
in cookie mode behind one trusted proxy with rate limits on, so that every
reader of a header runs.
"""

import json
import re
from urllib.parse import unquote

import pytest
import redis
import sqlalchemy as sa
from flask_jwt_extended import decode_token
from marshmallow import fields

from authapi import create_app, errors, mail
from authapi.extensions import api as smorest_api
from authapi.extensions import db
from authapi.http import REQUEST_ID_PATTERN
from authapi.passwords import hash_password

from .conftest import PASSWORD, base_env, reset_database

ALLOWED_ORIGIN = "https://app.example.com"
SETTINGS = {
    "REFRESH_TOKEN_COOKIE": "true",
    "CORS_ORIGINS": ALLOWED_ORIGIN,
    "PROXY_FIX_X_FOR": "1",
    "RATELIMIT_ENABLED": "true",
    **{name: "100000 per minute" for name in (
        "RATELIMIT_LOGIN", "RATELIMIT_REGISTER", "RATELIMIT_FORGOT", "RATELIMIT_DEFAULT")},
    "LOCKOUT_THRESHOLD": "1000000",
    "WEBAUTHN_RP_ID": "example.com",  # the passkey endpoints exist only with it
}
CATALOGUE = errors.catalogue()

# ---------------------------------------------------------------- the values


def deep(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


# JSON texts put where one field's value goes.
HOSTILE_JSON = [
    *(json.dumps(v).encode() for v in [
        "\ud800", "\udfff", "a\ud800b", "\x00", "a\x00b", "\n", "admin\n", "\r\n", "\t",
        "\u202e", "\ufeff", "\u2028", "😀" * 300, "", " ", "x" * 10_000, "x" * 60_000,
        "../../etc/passwd", "' OR 1=1 --", "%00", "${jndi:x}",
        10**100, -(10**100), -1, 0, 2**31, 2**63, -(2**63) - 1, 1.5, -0.0, 1e308,
        True, False, None, [], ["a"], [None], {}, {"a": "b"}, {"$ne": None},
    ]),
    b'"\\ud800\\udc00\\ud800"',  # a pair, then a lone one
    b"NaN", b"Infinity", b"-Infinity", b"1e999", b"123456789012345678901234567890e-5",
    deep(50), deep(100_000), b'"\xff\xfe"', b'"\xed\xa0\x80"', b'"\xc0\x80"',
]
# Raw text for a query or path parameter or a form field (percent-encoded).
HOSTILE_TEXT = [
    "%ff", "%00", "%ED%A0%80", "%C0%80", "%0a", "%0d%0a", "\xff\xfe", "\x00", "\x7f", "\x1b[31m",
    "", " ", "9" * 100, "-1", "0", "1.5", "1e999", "NaN", "true", "null", "[]", "{}",
    "x" * 5000, "a%26page=2", "%2e%2e%2f%2e%2e%2f", "<script>", "'; DROP TABLE users; --",
]
# Header values are latin-1 text on the wire (WSGI).
HEADER_TEXT = ["\xff\xfe", "\x00", "\x1b[31m", "", "9" * 100, "x" * 8000]
HEADER_VALUES = {
    "Authorization": ["Bearer", "Bearer ", "Bearer a.b.c", "Bearer " + "x" * 10_000, "Bearer \xff",
                      "Bearer a b", "Basic YTpi", "Bearer ,Bearer", "bearer a.b.c", "Bearer eyJhbGciOiJub25lIn0.e30."],
    "Origin": ["null", ALLOWED_ORIGIN + "/", "http://[::1", "http://a:99999", "file://", "http://\xff"],
    "X-Forwarded-For": ["1" * 60, "not-an-ip", "1.2.3.4, " + "f" * 100, "::ffff:1.2.3.4", "fe80::1%" + "x" * 50],
    "X-Forwarded-Proto": ["https, http", "gopher", "\xff"],
    "Content-Type": ["application/json; charset=\xff", "application/json; charset=utf-16",
                     "application/json; charset=latin-1", "application/merge-patch+json", "text/plain",
                     "multipart/form-data; boundary=x", "application/x-www-form-urlencoded", "*/*", ";;;"],
    "Host": ["\xff", "a" * 300, "[::1", "localhost:99999", "evil.example"],
    "Sec-Fetch-Site": ["cross-site", "same-site", "\xff"],
    "X-CSRF-TOKEN": [],
    "X-Request-ID": ["../../", "a" * 129],
    "User-Agent": [],
    "Cookie": ["refresh_token_cookie=\xff", 'refresh_token_cookie="\\377\\000"', "refresh_token_cookie=" + "x" * 5000,
               "csrf_refresh_token=\x00; refresh_token_cookie=a.b.c", "device_token=\xff", "=;=;;"],
}
RAW_BODIES = [
    (b"\xff\xfe\x00", "application/json"),
    (b'{"a": "\xff"}', "application/json"),
    (b"{", "application/json"),
    (b"[]", "application/json"),
    (b'"text"', "application/json"),
    (b"null", "application/json"),
    (b"1", "application/json"),
    (b"\x00", "application/json"),
    (deep(100_000), "application/json"),
    (b'{"a": 1, "a": 2}', "application/json"),
    ('{"a": 1}'.encode("utf-16"), "application/json"),
    (b'{"a": 1}', "application/json; charset=latin-1"),
    (b'{"a": 1}', "text/plain"),
    (b"--x\r\nContent-Disposition: form-data; name=a\r\n\r\n1\r\n--x--", "multipart/form-data; boundary=x"),
    (b"username=%ff&password=%00&grant_type=password", "application/x-www-form-urlencoded"),
    (b"username=\xff&password=\xfe", "application/x-www-form-urlencoded"),
    (b"x" * 70_000, "application/json"),
]

# A valid value of every field of every request body and query: one field at
# a time is made hostile. A new field fails test_every_field_has_a_valid_value.
VALID = {
    "email": "new@example.com", "username": "newname", "password": PASSWORD, "full_name": "Ada",
    "role": "user", "is_verified": False, "is_active": True, "current_password": PASSWORD,
    "new_password": "a different good password", "token": "x" * 43, "grant_type": "password",
    "scope": "", "page": 1, "per_page": 20, "q": "a", "refresh_token": None, "device_token": None,
    "code": "123456", "mfa_token": "x" * 43, "new_password_confirm": "a different good password",
    "credential": {}, "name": "Laptop",
    # The audit trail's query (a cursor is only ever one the API wrote: none here).
    "limit": 50, "cursor": None, "user_id": 1, "type": "login.failed",
    "since": "2026-01-01T00:00:00Z", "until": "2026-01-02T00:00:00Z",
}
# The hosted pages (API.md §12) are not in the document: the places they read.
# Their refusals are pages naming the envelope's code (pages.as_page).
PAGE_FIELDS = {
    ("GET", "/verify"): ["query:token"],
    ("GET", "/reset"): ["query:token"],
    ("POST", "/verify"): ["form:token"],
    ("POST", "/reset"): ["form:token", "form:new_password", "form:new_password_confirm"],
}

# ---------------------------------------------------------------- the endpoints


def _document_app():
    return create_app("testing", environ=base_env("sqlite://", None, WEBAUTHN_RP_ID="example.com"))


def _endpoints():
    """(method, rule, operation) for every route of the app; operation is the
    OpenAPI operation (None for the routes the document does not list)."""
    app = _document_app()
    with app.test_request_context():
        paths = smorest_api.spec.to_dict()["paths"]
    found = []
    for rule in app.url_map.iter_rules():
        path = re.sub(r"<(?:[^:>]+:)?([^>]+)>", r"{\1}", rule.rule)
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            found.append((method, rule.rule, paths.get(path, {}).get(method.lower())))
    return found


ENDPOINTS = _endpoints()


def _schema(operation, components, content_type="application/json"):
    body = (operation or {}).get("requestBody", {}).get("content", {}).get(content_type)
    if not body:
        return {}
    ref = body["schema"]["$ref"].rsplit("/", 1)[1]
    return components[ref]


def _places():
    """(endpoint id, method, rule, where) for every place a request is read."""
    app = _document_app()
    with app.test_request_context():
        components = smorest_api.spec.to_dict()["components"]["schemas"]
    places = []
    for method, rule, operation in ENDPOINTS:
        where = [f"header:{name}" for name in HEADER_VALUES] + ["raw-body"]
        where += [f"body:{f}" for f in _schema(operation, components).get("properties", {})]
        where += [f"form:{f}" for f in _schema(operation, components, "application/x-www-form-urlencoded").get("properties", {})]
        where += [f"query:{p['name']}" for p in (operation or {}).get("parameters", []) if p["in"] == "query"]
        where += [f"path:{name}" for name in re.findall(r"<(?:[^:>]+:)?([^>]+)>", rule)]
        where += PAGE_FIELDS.get((method, rule), [])
        places += [pytest.param(method, rule, operation, w, id=f"{method} {rule} {w}") for w in where]
    return places, components


PLACES, COMPONENTS = _places()


def test_every_field_has_a_valid_value():
    fields = {p.values[3].split(":", 1)[1] for p in PLACES if p.values[3].split(":")[0] in {"body", "form", "query"}}
    assert fields <= set(VALID), fields - set(VALID)


def test_every_route_is_probed():
    probed = {(p.values[0], p.values[1]) for p in PLACES}
    assert probed == {(method, rule) for method, rule, _ in ENDPOINTS}
    assert len(probed) >= 25


# ---------------------------------------------------------------- what may be accepted

# Fields of free text: a printable string within the length limits is a value
# like any other (a 2xx, or a 4xx of the field's own rules).
# An unknown or malformed device token counts as none (API.md §7): the login goes on.
FREE_TEXT = {"full_name": 100, "password": 256, "new_password": 256, "current_password": 256,
             "scope": 1000, "q": 254, "device_token": 512,
             # A code is ignored while TOTP is off (the world's users have it off).
             "code": 64,
             # A passkey's name.
             "name": 100}
BOOLEANS = {"is_active", "is_verified"}
QUERY_BOOLEANS = fields.Boolean.truthy | fields.Boolean.falsy


def printable(value) -> bool:
    if not isinstance(value, str) or "\x00" in value:
        return False
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def may_accept(kind: str, name: str, value) -> bool:
    """Whether a hostile-looking value is a legitimate value of this place."""
    if kind == "header":
        return True  # ignored, replaced or judged: any answer but a 5xx
    if kind == "body":
        try:
            decoded = json.loads(value)
        except (ValueError, RecursionError):
            return False
        if name in BOOLEANS:
            return isinstance(decoded, bool)
        if name == "full_name" and decoded is None:
            return True
        return name in FREE_TEXT and printable(decoded) and len(decoded) <= FREE_TEXT[name]
    if kind in {"query", "form"}:
        text = unquote(value)
        if name == "is_active":
            return text in QUERY_BOOLEANS
        if kind == "query" and name == "token":
            # A link's token (the hosted pages): shown in a form, judged when posted.
            return printable(text) and 0 < len(text) <= 512
        return name in FREE_TEXT and printable(text) and len(text) <= FREE_TEXT[name]
    return False  # path parameters, raw bodies


# ---------------------------------------------------------------- the world

# Endpoints whose success leaves the world's accounts and tokens as they were.
CHANGE_NO_CREDENTIALS = {
    (method, rule) for method, rule, _ in ENDPOINTS if method == "GET"
} | {
    ("POST", "/auth/login"), ("POST", "/auth/register"), ("POST", "/users"),
    ("POST", "/auth/password/forgot"), ("POST", "/auth/email/verify/request"),
}


@pytest.fixture(scope="session")
def database_url(postgres_url):
    return postgres_url


class World:
    """An admin, a user ("self") and the admin's victim, and fresh credentials
    for them whenever a request may have spent some (any 2xx but a GET's)."""

    def __init__(self, app):
        self.app = app
        self.client = app.test_client()
        self.fresh = False
        with app.app_context():
            self.password_hash = hash_password(PASSWORD)

    def ensure(self):
        with self.app.app_context():
            return self._ensure()

    def _ensure(self):
        if self.fresh:
            return self
        with self.app.app_context():
            present = set(db.session.scalars(sa.text("SELECT username FROM users")))
        for name in {"admin", "self", "victim"} - present:
            self.client.post("/auth/register", json={
                "email": f"{name}@example.com", "username": name, "password": PASSWORD})
        with self.app.app_context():
            # Undo whatever a request changed: a password, a role, an activation.
            db.session.execute(sa.text(
                "UPDATE users SET password_hash = :h, is_active = true, totp_enabled_at = NULL,"
                " totp_secret = NULL,"
                " role = CASE WHEN username = 'admin' THEN 'admin' ELSE 'user' END"
            ), {"h": self.password_hash})
            self.victim_id = db.session.scalar(sa.text("SELECT id FROM users WHERE username = 'victim'"))
            db.session.commit()
        self.admin_access, self.refresh_token = self._login("admin")
        self.self_access, _ = self._login("self")
        self.session_id = decode_token(self.admin_access, allow_expired=True)["sid"]
        self.fresh = True
        return self

    def _login(self, username):
        response = self.client.post("/auth/login", json={"username": username, "password": PASSWORD})
        assert response.status_code == 200, response.get_json()
        refresh = self.client.get_cookie("refresh_token_cookie", path="/auth").value
        # The requests carry only what each case gives them.
        self.client.delete_cookie("refresh_token_cookie", path="/auth")
        self.client.delete_cookie("csrf_refresh_token", path="/")
        return response.get_json()["access_token"], refresh


@pytest.fixture(scope="module")
def world(postgres_url, redis_url, migrations):
    """One app and database for the module: World.ensure undoes what a case changed."""
    store = redis.Redis.from_url(redis_url)
    store.flushdb()
    app = create_app("testing", environ=base_env(postgres_url, redis_url, **SETTINGS))
    migrations.ensure(postgres_url, lambda: app)
    reset_database(app)
    yield World(app)
    mail.wait_for_background_jobs()
    with app.app_context():
        db.engine.dispose()
    store.flushdb()


def base_request(world, rule, operation, where):
    """The parts of a request to the endpoint that would succeed."""
    world.ensure()
    path = rule.replace("<int(max=2147483647):user_id>", str(world.victim_id))
    path = path.replace("<string:session_id>", world.session_id).replace("<path:filename>", "swagger-ui.css")
    path = re.sub(r"<string[^>]*:passkey_id>", "A" * 22, path)
    security = (operation or {}).get("security") or []
    headers = {}
    if any("refreshToken" in s for s in security) and where != "body:refresh_token":
        headers["Authorization"] = f"Bearer {world.refresh_token}"
    elif any("accessToken" in s for s in security):
        access = world.self_access if path.startswith("/users/me") else world.admin_access
        headers["Authorization"] = f"Bearer {access}"
    schema = _schema(operation, COMPONENTS)
    body = {f: json.dumps(VALID[f]).encode() for f in schema.get("required", [])}
    return path, headers, body if operation and "requestBody" in operation else None


def json_object(body: dict) -> bytes:
    return b"{" + b", ".join(json.dumps(k).encode() + b": " + v for k, v in body.items()) + b"}"


def hostile_request(world, method, rule, operation, where, value):
    """The keyword arguments of client.open for one hostile value at ``where``."""
    kind, _, name = where.partition(":")
    path, headers, body = base_request(world, rule, operation, where)
    query = ""
    content_type = "application/json"
    if kind == "body":
        body = {**body, name: value}
    elif kind == "raw-body":
        body, content_type = value
    elif kind == "form" and (method, rule) in PAGE_FIELDS:
        fields_ = {**{f.split(":")[1]: VALID[f.split(":")[1]] for f in PAGE_FIELDS[method, rule]}, name: value}
        body = "&".join(f"{k}={v}" for k, v in fields_.items()).encode("latin-1")
        content_type = "application/x-www-form-urlencoded"
    elif kind == "form":
        fields_ = {**{k: json.loads(v) for k, v in body.items()}, "grant_type": "password", name: value}
        body = "&".join(f"{k}={v}" for k, v in fields_.items()).encode("latin-1")
        content_type = "application/x-www-form-urlencoded"
    elif kind == "query":
        query = f"?{name}={value}"
    elif kind == "path":
        path = rule.split("<", 1)[0] + value
    else:
        headers[name] = value
    if isinstance(body, dict):
        body = json_object(body)
    kwargs = {"method": method, "headers": headers}
    if body is not None:
        kwargs.update(data=body, content_type=content_type)
    return path + query, kwargs


def check(response, label, *, must_refuse, page=False):
    """The problems with one answer (none when it is right); ``page``: a
    hosted page, whose refusals are pages naming their code (save those made
    before the request is routed, a malformed Host say: the envelope)."""
    problems = []
    status = response.status_code
    if status >= 500:
        problems.append(f"{label}: {status} {response.data[:120]!r}")
    elif status >= 400 and page and response.mimetype != "application/json":
        code = re.search(r'data-error-code="([a-z_]+)"', response.get_data(as_text=True))
        if not (response.mimetype == "text/html" and "Content-Security-Policy" in response.headers
                and code and code.group(1) in CATALOGUE.get(status, {})):
            problems.append(f"{label}: {status} not a page naming its code: {response.data[:200]!r}")
    elif status >= 400:
        body = response.get_json(silent=True)
        error = body.get("error") if isinstance(body, dict) else None
        if not (isinstance(error, dict) and set(body) == {"error"} and set(error) <= {"code", "message", "details"}
                and isinstance(error.get("message"), str) and error.get("code") in CATALOGUE.get(status, {})):
            problems.append(f"{label}: {status} not in the envelope: {response.data[:200]!r}")
    elif must_refuse:
        problems.append(f"{label}: {status}, not refused")
    if not REQUEST_ID_PATTERN.fullmatch(response.headers.get("X-Request-ID", "")):
        problems.append(f"{label}: unsafe X-Request-ID {response.headers.get('X-Request-ID')!r}")
    return problems


def values_for(where: str):
    kind, _, name = where.partition(":")
    if kind == "body":
        return HOSTILE_JSON
    if kind == "raw-body":
        return RAW_BODIES
    if kind == "query":
        return HOSTILE_TEXT + [f"1&{name}=2"]
    if kind == "path":
        return HOSTILE_TEXT + ["%2F", "x" * 3000, "2147483648", "-1", "0"]
    if kind == "form":
        return HOSTILE_TEXT
    # Newlines cannot be sent in a header (the test client refuses them too).
    return [v for v in HEADER_TEXT + HEADER_VALUES[name] if "\n" not in v and "\r" not in v]


@pytest.mark.parametrize("method, rule, operation, where", PLACES)
def test_hostile_input_gets_a_4xx_in_the_envelope(world, method, rule, operation, where):
    kind, _, name = where.partition(":")
    problems = []
    for value in values_for(where):
        url, kwargs = hostile_request(world, method, rule, operation, where, value)
        try:
            response = world.client.open(url, **kwargs)
        except ValueError:  # not sendable at all (the test client refuses it)
            continue
        if response.status_code < 300 and (method, rule) not in CHANGE_NO_CREDENTIALS:
            world.fresh = False  # it may have spent a token or changed an account
        must_refuse = not may_accept(kind, name, value)
        page = (method, rule) in PAGE_FIELDS
        if kind == "raw-body":
            must_refuse = (operation is not None and "requestBody" in operation) or (page and method == "POST")
        problems += check(response, f"{value!r:.70}", must_refuse=must_refuse, page=page)
    assert not problems, "\n".join(problems[:40])
