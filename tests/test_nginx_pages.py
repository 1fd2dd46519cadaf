"""nginx's own pages (issue 13, finding 12): whatever nginx answers itself (a
malformed request, a request line or header over its buffers, plain HTTP to
the TLS port, gunicorn down) is the API's JSON envelope with the security
headers, sent to the real nginx of tests/test_nginx.py as raw bytes."""

import json
import socket
import ssl

import pytest

from authapi import errors, http

from .conftest import free_port
from .test_nginx import (  # noqa: F401  fixtures
    certificate, database_url, gunicorn, nginx, site, start_nginx,
)


def raw(nginx, request: bytes, tls: bool = True) -> tuple[int, dict, bytes]:
    """Send ``request`` as written; nginx's answer as (status, headers, body)."""
    sock = socket.create_connection(("127.0.0.1", nginx.https_port), timeout=10)
    if tls:
        context = ssl.create_default_context(cafile=str(nginx.cert))
        sock = context.wrap_socket(sock, server_hostname="localhost")
    with sock:
        sock.sendall(request)
        answer = b""
        try:
            while chunk := sock.recv(65536):
                answer += chunk
        except (ConnectionResetError, ssl.SSLError):
            pass
    head, _, body = answer.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:])
    return int(lines[0].split()[1]), headers, body


def request(target: str = "/users/me", *extra: str, method: str = "GET", version: str = "HTTP/1.1") -> bytes:
    lines = [f"{method} {target} {version}", "Host: localhost", "Connection: close", *extra]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def assert_envelope(answer, status: int, code: str, message: str):
    got_status, headers, body = answer
    assert got_status == status, (got_status, body)
    assert headers["Content-Type"] == "application/json", headers
    assert json.loads(body) == errors.envelope(code, message)
    for name, value in {**http.SECURITY_HEADERS, "Strict-Transport-Security": http.HSTS}.items():
        assert headers.get(name) == value, (name, headers)
    assert headers["X-Request-ID"]


REFUSALS = {
    "a header over nginx's buffers": (
        request("/users/me", "X-Big: " + "a" * 9000), 431, errors.SERVER_REFUSALS[431]),
    "a request line over nginx's buffers": (
        request("/users/me?" + "a" * 9000), 414, errors.SERVER_REFUSALS[414]),
    "a malformed request line": (b"GET /users/me\x01 HTTP/1.1\r\nHost: localhost\r\n\r\n", 400,
                                 errors.HTTP_CODES[400]),
    "a malformed header": (request("/users/me", "Bad Header: x"), 400, errors.HTTP_CODES[400]),
    "an unknown HTTP version": (request(version="HTTP/3.0"), 400, errors.HTTP_CODES[400]),
    "an unknown transfer coding": (
        request("/auth/login", "Transfer-Encoding: gzip", method="POST"), 400, errors.HTTP_CODES[400]),
    "TRACE": (request(method="TRACE"), 405, errors.HTTP_CODES[405]),
    "one of these pages asked for directly": (request("/_nginx/bad_request"), 404, errors.HTTP_CODES[404]),
}


@pytest.mark.parametrize("name", REFUSALS)
def test_nginxs_refusals_are_the_apis_envelope_with_its_headers(nginx, name):
    sent, status, (code, message) = REFUSALS[name]

    assert_envelope(raw(nginx, sent), status, code, message)


def test_plain_http_to_the_tls_port_is_the_apis_envelope(nginx):
    answer = raw(nginx, request(), tls=False)

    assert_envelope(answer, 400, *errors.HTTP_CODES[400])


def test_gunicorn_down_is_the_apis_envelope(make_app, start_nginx):
    nginx = start_nginx(free_port())  # nothing listens there

    answer = raw(nginx, request())

    assert_envelope(answer, 503, *errors.HTTP_CODES[503])
    assert answer[1]["Retry-After"] == "5"
