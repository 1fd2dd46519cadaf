"""The OpenAPI document (/openapi.json), the /docs page, and Schemathesis
against a real gunicorn over PostgreSQL and Redis: whatever it sends, no 500,
and every answer (status, content type, headers, body) is the documented one.
"""

import re
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis import checks
from schemathesis.config import SchemathesisConfig

from authapi import create_app
from authapi.extensions import db
from authapi.models import User
from authapi.passwords import hash_password

from .conftest import PASSWORD, ROOT, base_env, fresh_server

# The hosted pages (API.md §12) are HTML for people, not API: left out of the
# document, which describes JSON endpoints only.
HOSTED_PAGES = {"pages.verify_form", "pages.verify", "pages.reset_form", "pages.reset"}
NON_API_ENDPOINTS = {"static", "api-docs.openapi_json", "api-docs.openapi_swagger_ui", "docs_assets.asset",
                     *HOSTED_PAGES}

CHECKS = [
    checks.not_a_server_error,
    checks.status_code_conformance,
    checks.content_type_conformance,
    checks.response_headers_conformance,
    checks.response_schema_conformance,
]
# Without a token Schemathesis's own invalid requests must be refused too. (With
# one it cannot tell: it counts a request it meant to send without the token
# as invalid, and we always add a valid one.)
ANONYMOUS_CHECKS = [*CHECKS, checks.negative_data_rejection]
# A few examples per operation keep the run near a minute on two cores; a
# failure is still shrunk to its smallest request.
FUZZ = settings(
    max_examples=25,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much,
                           HealthCheck.function_scoped_fixture],
)


@pytest.fixture(scope="module")
def spec(sqlite_url):
    app = create_app("testing", environ=base_env(sqlite_url, None))
    return app, app.test_client().get("/openapi.json").get_json()


def openapi_path(rule) -> str:
    return re.sub(r"<(?:[^:<>]+:)?([^<>]+)>", r"{\1}", rule.rule)


def test_document_describes_every_route(spec):
    app, document = spec
    assert document["openapi"].startswith("3.")
    for rule in app.url_map.iter_rules():
        if rule.endpoint in NON_API_ENDPOINTS:
            continue
        operations = document["paths"].get(openapi_path(rule), {})
        for method in rule.methods - {"HEAD", "OPTIONS"}:
            assert method.lower() in operations, (rule.rule, method)


def test_document_leaves_the_hosted_pages_out(spec):
    app, document = spec
    pages = {openapi_path(rule) for rule in app.url_map.iter_rules() if rule.endpoint in HOSTED_PAGES}
    assert pages == {"/verify", "/reset"}
    assert not pages & set(document["paths"])


def test_protected_operations_declare_their_bearer_token(spec):
    _, document = spec
    schemes = document["components"]["securitySchemes"]
    assert schemes["accessToken"] == {**schemes["accessToken"], "type": "http", "scheme": "bearer"}
    paths = document["paths"]
    assert paths["/users/me"]["get"]["security"] == [{"accessToken": []}]
    assert paths["/users/{user_id}"]["delete"]["security"] == [{"accessToken": []}]
    # The refresh token may come as the bearer or in the JSON body.
    assert paths["/auth/refresh"]["post"]["security"] == [{"refreshToken": []}, {}]
    for path, method in [("/auth/register", "post"), ("/auth/login", "post"), ("/health/ready", "get")]:
        assert "security" not in paths[path][method]
    assert "401" in paths["/users/me"]["get"]["responses"]
    assert "403" in paths["/users"]["get"]["responses"]
    assert "403" not in paths["/users/me"]["get"]["responses"]


def test_declared_security_matches_what_endpoints_answer_without_a_token(spec):
    # The security of each operation is read off its decorators (authapi.docs);
    # this holds it to the behaviour: 401 without a token exactly where declared.
    app, document = spec
    client = app.test_client()
    values = {"user_id": "1", "session_id": str(uuid.uuid4())}
    for path, operations in document["paths"].items():
        url = re.sub(r"{([^}]+)}", lambda m: values[m.group(1)], path)
        for method, operation in operations.items():
            if method == "parameters":
                continue
            body = {"json": {}} if "requestBody" in operation else {}
            response = client.open(url, method=method.upper(), **body)
            assert (response.status_code == 401) == ("security" in operation), (method, path)


def test_every_error_is_documented_in_the_envelope(spec):
    _, document = spec
    responses = document["components"]["responses"]
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            if method == "parameters":
                continue
            for status, response in operation["responses"].items():
                if status.startswith("2") or path == "/health/ready":
                    continue
                name = response["$ref"].rsplit("/", 1)[1]
                schema = responses[name]["content"]["application/json"]["schema"]
                assert schema == {"$ref": "#/components/schemas/ErrorOut"}, (path, method, status)
    body = document["components"]["schemas"]["ErrorBodyOut"]
    assert set(body["required"]) == {"code", "message"}
    ready = document["paths"]["/health/ready"]["get"]["responses"]
    assert ready["503"]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/ReadyOut"}


def test_login_documents_the_oauth2_form(spec):
    _, document = spec
    content = document["paths"]["/auth/login"]["post"]["requestBody"]["content"]
    assert content["application/x-www-form-urlencoded"] == content["application/json"]


def test_error_descriptions_name_every_code_of_the_catalogue(spec):
    # The descriptions come from errors.py, the one catalogue of codes.
    from authapi import errors
    from authapi.docs import ERROR_RESPONSES

    _, document = spec
    responses = document["components"]["responses"]
    for status, (name, _) in ERROR_RESPONSES.items():
        for code, message in errors.catalogue()[status].items():
            assert f"`{code}`: {message}" in responses[name]["description"], (status, code)


def properties(document, schema_name):
    return document["components"]["schemas"][schema_name]["properties"]


def test_document_states_the_field_constraints_the_server_enforces(spec):
    _, document = spec
    register = properties(document, "RegisterIn")
    assert register["email"] | {"format": "email", "maxLength": 254} == register["email"]
    assert register["username"]["pattern"] == "^[A-Za-z0-9_.-]{3,32}$"
    assert (register["username"]["minLength"], register["username"]["maxLength"]) == (3, 32)
    assert (register["password"]["minLength"], register["password"]["maxLength"]) == (12, 256)
    assert register["full_name"]["maxLength"] == 100
    assert properties(document, "ForgotPasswordIn")["email"]["format"] == "email"
    for name in ("ResetPasswordIn", "VerifyEmailIn"):
        token = properties(document, name)["token"]
        assert (token["minLength"], token["maxLength"]) == (1, 512)
    assert properties(document, "ResetPasswordIn")["new_password"]["minLength"] == 12


def test_documented_password_length_is_the_configured_one(make_app):
    app = make_app(PASSWORD_MIN_LENGTH="16")
    document = app.test_client().get("/openapi.json").get_json()

    for schema, field in [("RegisterIn", "password"), ("PasswordChangeIn", "new_password"),
                          ("ResetPasswordIn", "new_password"), ("AdminUserIn", "password")]:
        assert properties(document, schema)[field]["minLength"] == 16, schema


@pytest.mark.parametrize("username", ["admin\n", "a" * 32 + "\n", "\nadmin"])
def test_username_pattern_matches_the_whole_value(app, username):
    # re.match with "^...$" would take a trailing newline: "admin\n" beside
    # admin, or 33 characters for a VARCHAR(32) (a 500 on PostgreSQL).
    response = app.test_client().post("/auth/register", json={
        "email": "newline@example.com", "username": username, "password": "long enough phrase 123"})

    assert response.status_code == 422
    assert "username" in response.get_json()["error"]["details"]


@pytest.mark.parametrize("email", ["", "ada@example.test", "ada@mail.localhost"])
def test_emails_the_document_refuses_are_refused(spec, app, email):
    _, document = spec
    field = properties(document, "ForgotPasswordIn")["email"]
    assert email == "" or not re.search(field["pattern"], email)

    response = app.test_client().post("/auth/password/forgot", json={"email": email})

    assert response.status_code == 422


def test_docs_page_loads_only_assets_the_app_serves(spec):
    app, _ = spec
    client = app.test_client()
    page = client.get("/docs")
    assert page.status_code == 200 and page.mimetype == "text/html"
    html = page.get_data(as_text=True)
    urls = re.findall(r'(?:src|href)="([^"]+)"', html) + re.findall(r'url: "([^"]+)"', html)
    assert any(url.endswith("swagger-ui-bundle.js") for url in urls)
    assert "/openapi.json" in urls
    for url in urls:
        # Same origin only: no CDN, no protocol-relative URL.
        assert url.startswith("/") and not url.startswith("//"), url
        assert client.get(url).status_code == 200, url


def test_docs_assets_stay_in_their_directory(spec):
    app, _ = spec
    client = app.test_client()
    for path in ("/docs/assets/../__init__.py", "/docs/assets/%2e%2e/__init__.py", "/docs/assets/nope.js"):
        response = client.get(path)
        assert response.status_code == 404 and response.get_json()["error"]["code"] == "not_found"


# ---------------------------------------------------------------- Schemathesis


# The optional endpoints are on, so Schemathesis sees them too.
OPTIONAL_ENDPOINTS = {"WEBAUTHN_RP_ID": "example.com"}


def served_document() -> dict:
    app = create_app("testing", environ=base_env("sqlite:///:memory:", None, **OPTIONAL_ENDPOINTS))
    return app.test_client().get("/openapi.json").get_json()


# Loaded at collection, from the same code the live server runs; the server's
# own /openapi.json is checked to be this very document before any case runs.
# (schemathesis.pytest.from_fixture would fetch it from the server, but it
# does not work with pytest 9.)
DOCUMENT = served_document()
schema = schemathesis.openapi.from_dict(DOCUMENT, config=SchemathesisConfig.from_dict({
    # Refusals Schemathesis does not count by default: a body over
    # MAX_CONTENT_LENGTH, and gunicorn's own limits on the request line and headers.
    "checks": {"negative_data_rejection": {"expected-statuses": [
        400, 401, 403, 404, 405, 406, 409, 413, 414, 415, 422, 428, 429, 431,
    ]}},
}))


@pytest.fixture(scope="module")
def live(postgres_url, redis_url, tmp_path_factory):
    with fresh_server(base_env(postgres_url, redis_url, **OPTIONAL_ENDPOINTS), tmp_path_factory, workers=2) as server:
        assert requests.get(server.url + "/openapi.json", timeout=10).json() == DOCUMENT
        yield server


def fresh_admin_pair(server) -> dict:
    """A token pair of a new active admin: every case gets its own, so a case
    that logs out, renames or deletes its user cannot spoil the next one."""
    email = f"admin-{uuid.uuid4().hex[:16]}@example.com"
    with server.app.app_context():
        db.session.add(User(email=email, username=email[:22], role="admin", is_verified=True,
                            password_hash=hash_password(PASSWORD)))
        db.session.commit()
    response = requests.post(server.url + "/auth/login", json={"username": email, "password": PASSWORD},
                             timeout=10)
    response.raise_for_status()
    return response.json()


def uses_refresh_token(case) -> bool:
    return any("refreshToken" in requirement for requirement in case.operation.definition.raw.get("security", []))


@schema.parametrize()
@FUZZ
def test_api_conforms_with_a_valid_token(case, live):
    pair = fresh_admin_pair(live)
    token = pair["refresh_token"] if uses_refresh_token(case) else pair["access_token"]
    case.call_and_validate(base_url=live.url, headers={"Authorization": f"Bearer {token}"},
                           checks=CHECKS, timeout=10)


@schema.parametrize()
@settings(FUZZ, max_examples=8)
def test_api_conforms_without_a_token(case, live):
    case.call_and_validate(base_url=live.url, checks=ANONYMOUS_CHECKS, timeout=10)


def test_schemathesis_run_with_every_check_finds_nothing(live):
    # As a newcomer runs it, from the repository root (so schemathesis.toml
    # applies), without a token: every check, the stateful phase included.
    # A few examples per operation keep it within about half a minute.
    started = time.monotonic()
    run = subprocess.run(
        [str(Path(sys.executable).parent / "schemathesis"), "run", live.url + "/openapi.json",
         "--checks", "all", "--max-examples", "15", "--no-color"],
        cwd=ROOT, capture_output=True, text=True, timeout=180,
    )
    assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-2000:]
    assert time.monotonic() - started < 120
