"""The error envelope, request ids and security headers (API.md §1, §7)."""

import pytest

from .conftest import bearer

SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


def assert_error(response, status, code):
    assert response.status_code == status
    assert response.mimetype == "application/json"
    body = response.get_json()
    assert set(body) == {"error"}
    assert body["error"]["code"] == code
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]


def test_malformed_json_is_bad_request(client):
    response = client.post("/auth/login", data="{nope", content_type="application/json")
    assert_error(response, 400, "bad_request")


@pytest.mark.parametrize("body", ["[1, 2]", '"text"', "42", "null"])
def test_json_that_is_not_an_object_is_bad_request(client, body):
    response = client.post("/auth/register", data=body, content_type="application/json")
    assert_error(response, 400, "bad_request")


@pytest.mark.parametrize("content_type", ["text/plain", "application/xml", "multipart/form-data"])
def test_other_content_types_are_unsupported(client, content_type):
    response = client.post("/auth/register", data="email=a", content_type=content_type)
    assert_error(response, 415, "unsupported_media_type")


def test_oversized_body_is_payload_too_large(client):
    response = client.post(
        "/auth/register", data='{"full_name": "' + "x" * 70000 + '"}', content_type="application/json"
    )
    assert_error(response, 413, "payload_too_large")


def test_oversized_form_body_is_payload_too_large(client):
    response = client.post("/auth/login", data={"username": "x" * 70000, "password": "y"})
    assert_error(response, 413, "payload_too_large")


def test_unknown_route_is_json_not_found(client):
    assert_error(client.get("/nowhere"), 404, "not_found")


def test_wrong_method_is_json_method_not_allowed(client):
    response = client.get("/auth/login")
    assert_error(response, 405, "method_not_allowed")
    assert "POST" in response.headers["Allow"]


def test_validation_error_has_field_details(client):
    response = client.post("/auth/register", json={"email": "x"})
    assert_error(response, 422, "validation_error")
    details = response.get_json()["error"]["details"]
    assert set(details) >= {"email", "username", "password"}
    assert all(isinstance(messages, list) and messages for messages in details.values())


def test_unexpected_error_is_json_without_internals(make_app):
    app = make_app()

    @app.get("/boom")
    def boom():
        raise RuntimeError("secret internals: postgresql://user:pw@db")

    response = app.test_client().get("/boom")
    assert_error(response, 500, "internal_error")
    assert "secret" not in response.get_data(as_text=True)


def test_database_down_is_service_unavailable(make_app, client, auth):
    _, pair = auth.user()
    down = make_app(DATABASE_URL="postgresql://nobody@127.0.0.1:1/none").test_client()
    response = down.post("/auth/login", json={"username": "nobody", "password": "whatever it is"})
    assert_error(response, 503, "service_unavailable")


def test_request_id_is_generated(client):
    response = client.get("/nowhere")
    assert len(response.headers["X-Request-ID"]) >= 16


def test_sane_request_id_is_echoed(client):
    response = client.get("/nowhere", headers={"X-Request-ID": "abc-123.def"})
    assert response.headers["X-Request-ID"] == "abc-123.def"


@pytest.mark.parametrize("bad", ["x" * 500, "has space", "<script>", "a;b=c", ""])
def test_insane_request_id_is_replaced(client, bad):
    response = client.get("/nowhere", headers={"X-Request-ID": bad})
    assert response.headers["X-Request-ID"] != bad
    assert response.headers["X-Request-ID"]


@pytest.mark.parametrize("path, method", [("/nowhere", "get"), ("/users/me", "get"), ("/auth/login", "post")])
def test_security_headers_on_every_response(client, path, method):
    response = getattr(client, method)(path, json={} if method == "post" else None)
    for name, value in SECURITY_HEADERS.items():
        assert response.headers[name] == value


def test_security_headers_on_success(client, auth):
    _, pair = auth.user()
    response = client.get("/users/me", headers=bearer(pair["access_token"]))
    assert response.status_code == 200
    for name, value in SECURITY_HEADERS.items():
        assert response.headers[name] == value
    assert "Strict-Transport-Security" not in response.headers


def test_deeply_nested_json_is_bad_request(client):
    response = client.post("/auth/login", data="[" * 30000 + "]" * 30000, content_type="application/json")
    assert_error(response, 400, "bad_request")


@pytest.mark.parametrize(
    "path, body, field",
    [
        ("/auth/login", '{"username": "\\ud800", "password": "x"}', "username"),
        ("/auth/login", '{"username": "ada", "password": "\\udfffabc"}', "password"),
        ("/auth/register", '{"email": "a@example.com", "username": "ada", "password": "long enough pass \\ud800"}',
         "password"),
        ("/auth/password/reset", '{"token": "\\ud800", "new_password": "long enough phrase 123"}', "token"),
        ("/auth/email/verify", '{"token": "\\ud800"}', "token"),
    ],
)
def test_lone_surrogates_are_validation_errors(client, path, body, field):
    response = client.post(path, data=body, content_type="application/json")
    assert_error(response, 422, "validation_error")
    assert field in response.get_json()["error"]["details"]


@pytest.mark.parametrize("session_id", ["%00", "x" * 300, "%ED%A0%80"])
def test_malformed_session_ids_are_not_found(client, auth, session_id):
    _, pair = auth.user()
    response = client.delete(f"/auth/sessions/{session_id}", headers=bearer(pair["access_token"]))
    assert_error(response, 404, "not_found")


def test_delete_endpoints_refuse_body_fields(client, auth):
    _, pair = auth.user()
    sid = client.get("/auth/sessions", headers=bearer(pair["access_token"])).get_json()["items"][0]["id"]
    response = client.delete(f"/auth/sessions/{sid}", json={"x": 1}, headers=bearer(pair["access_token"]))
    assert_error(response, 422, "validation_error")
    assert client.get("/users/me", headers=bearer(pair["access_token"])).status_code == 200
