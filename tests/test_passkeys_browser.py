"""Passkeys in a real browser (API.md §9): headless Chromium with a virtual
authenticator (the DevTools WebAuthn domain: CTAP2, internal, resident keys,
user verification) on a page served from an allowed origin, against a real
gunicorn on PostgreSQL and Redis. The page passes the API's JSON through the
browser's own ``PublicKeyCredential.parse*OptionsFromJSON`` and
``credential.toJSON()``: register, then sign in with no username; and the
README's JavaScript, as it is printed there, does the same."""

import base64
import re
from contextlib import contextmanager

import pytest
import requests

from authapi.extensions import db
from authapi.models import Passkey

from .browser import PageServer, chromium_page
from .clients import LiveAuth, bearer, claims_of
from .servers import ROOT, free_port

PAGE_PORT = free_port()
# localhost is a secure context over plain HTTP, as WebAuthn requires.
PAGE_ORIGIN = f"http://localhost:{PAGE_PORT}"

PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>passkeys</title></head><body><script>
const api = "http://localhost:API_PORT";

async function post(path, body, token) {
  const headers = body === undefined ? {} : {"Content-Type": "application/json"};
  if (token) headers.Authorization = "Bearer " + token;
  const response = await fetch(api + path, {
    method: "POST", headers, body: body === undefined ? undefined : JSON.stringify(body)});
  return {status: response.status, body: await response.json()};
}

// What a site's page does: the README's dozen lines.
async function registerPasskey(token) {
  const options = await post("/auth/passkeys/register/options", undefined, token);
  const credential = await navigator.credentials.create(
    {publicKey: PublicKeyCredential.parseCreationOptionsFromJSON(options.body)});
  return post("/auth/passkeys/register", {credential: credential.toJSON(), name: "Chromium"}, token);
}

async function signIn() {
  const options = await post("/auth/passkeys/login/options");
  const credential = await navigator.credentials.get(
    {publicKey: PublicKeyCredential.parseRequestOptionsFromJSON(options.body)});
  return post("/auth/passkeys/login", {credential: credential.toJSON()});
}
</script></body></html>
"""


@pytest.fixture(scope="session")
def database_url(postgres_url):
    return postgres_url


@pytest.fixture(scope="module")
def server(serve):
    return serve(WEBAUTHN_RP_ID="localhost", WEBAUTHN_ORIGINS=PAGE_ORIGIN, CORS_ORIGINS=PAGE_ORIGIN)


def b64url(text: str) -> str:
    """The DevTools protocol's standard base64, as the API writes it (base64url)."""
    return base64.urlsafe_b64encode(base64.b64decode(text)).rstrip(b"=").decode()


@contextmanager
def page_with_authenticator(html: str, server):
    """The page (``API_PORT`` in it replaced) open in Chromium with a virtual
    passkey authenticator: (page, DevTools session, authenticator id)."""
    port = server.url.rsplit(":", 1)[1]
    with PageServer(html.replace("API_PORT", port), PAGE_PORT), chromium_page() as page:
        page.goto(PAGE_ORIGIN + "/")
        devtools = page.context.new_cdp_session(page)
        devtools.send("WebAuthn.enable")
        authenticator = devtools.send("WebAuthn.addVirtualAuthenticator", {"options": {
            "protocol": "ctap2", "transport": "internal", "hasResidentKey": True,
            "hasUserVerification": True, "isUserVerified": True,
        }})["authenticatorId"]
        yield page, devtools, authenticator


def assert_signed_in(server, tokens, user):
    assert claims_of(tokens["access_token"])["amr"] == ["hwk", "user", "mfa"]
    me = requests.get(server.url + "/users/me", headers=bearer(tokens["access_token"]), timeout=10)
    assert me.status_code == 200 and me.json()["id"] == user["id"]


def test_register_then_sign_in_without_a_username_in_chromium(make_app, server):
    app = make_app()  # a fresh database and Redis for the server
    user, pair = LiveAuth(server.url).user("pk")
    with page_with_authenticator(PAGE, server) as (page, devtools, authenticator):
        registered = page.evaluate("token => registerPasskey(token)", pair["access_token"])
        assert registered["status"] == 201, registered
        (credential,) = devtools.send("WebAuthn.getCredentials", {"authenticatorId": authenticator})["credentials"]
        assert credential["isResidentCredential"] and credential["rpId"] == "localhost"
        assert b64url(credential["credentialId"]) == registered["body"]["id"]
        assert registered["body"]["name"] == "Chromium"

        signed_in = page.evaluate("signIn()")
        assert signed_in["status"] == 200, signed_in
        (after,) = devtools.send("WebAuthn.getCredentials", {"authenticatorId": authenticator})["credentials"]

    assert_signed_in(server, signed_in["body"], user)
    assert after["signCount"] > credential["signCount"]
    with app.app_context():
        stored = db.session.scalars(db.select(Passkey)).one()
        assert stored.sign_count == after["signCount"] and stored.last_used_at is not None
        assert stored.transports == "internal" and stored.user_id == user["id"]
        # The opaque user handle the authenticator keeps, handed back at login.
        assert base64.b64decode(after["userHandle"]) == stored.user.passkey_user_handle


def readme_javascript() -> str:
    section = (ROOT / "README.md").read_text().split("\n## Passkeys\n", 1)[1]
    return re.search(r"```js\n(.*?)```", section, re.S).group(1)


def test_the_readmes_javascript_works_as_printed(make_app, server):
    make_app()
    user, pair = LiveAuth(server.url).user("readme")
    snippet = readme_javascript().replace("https://api.example.com", "http://localhost:API_PORT")
    html = f"<!doctype html><script>async function readme(token) {{\n{snippet}\nreturn pair;\n}}</script>"
    with page_with_authenticator(html, server) as (page, devtools, authenticator):
        tokens = page.evaluate("token => readme(token)", pair["access_token"])
        credentials = devtools.send("WebAuthn.getCredentials", {"authenticatorId": authenticator})["credentials"]
    assert len(credentials) == 1
    assert_signed_in(server, tokens, user)
