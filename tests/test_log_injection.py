"""Log injection (issue 13, finding 11): whatever a client controls (the path,
a forwarded address, headers, anything a record or its fields carry) cannot
start a line of its own, in the text format (escaped) or the JSON one
(encoded). Checked on the real output of a gunicorn, through the app's and
gunicorn's own logging configuration."""

import json
import logging
import re
import socket
import sys

import pytest

from authapi.logs import HANDLER_NAME

# Every way a value could end a line, or a line viewed on a terminal: LF, CR,
# ESC, NEL (C1, and a line break to str.splitlines), the Unicode separators.
# Each as the text format writes it.
BREAKS = {"\n": r"\n", "\r": r"\r", "\x1b": r"\u001b", "\x85": r"\u0085", "\u2028": r"\u2028",
          "\u2029": r"\u2029", "\x0b": r"\u000b", "\x0c": r"\u000c"}
FORGED = "2030-01-01 00:00:00,000 INFO authapi.request: FAKE"
# The start of every record: the app's format or gunicorn's own; gunicorn's
# access log starts with the client address (as ProxyFix set it, so whatever
# the client forwarded), hence ACCESS_LINE.
# All a header value can carry of them: to WSGI, the UTF-8 bytes are C1 text.
HEADER_BREAKS = ["\x85", "\u2028", "\u2029"]
RECORD_START = re.compile(
    r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} [A-Z]+ \S+: |\[\d{4}-\d\d-\d\d )")
ACCESS_LINE = re.compile(r" - - \[\d\d/\w{3}/\d{4}:[\d:]{8} [+-]\d{4}\] \"[A-Z]+ ")


@pytest.fixture(scope="session")
def database_url(postgres_url):
    return postgres_url


def quoted(text: str) -> str:
    return "".join(f"%{byte:02X}" for byte in text.encode())


def raw_request(port: int, target: str, headers: dict[str, bytes]) -> bytes:
    """Send a request exactly as written (no client library cleans it up)."""
    head = f"GET {target} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n".encode()
    head += b"".join(name.encode() + b": " + value + b"\r\n" for name, value in headers.items())
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(head + b"\r\n")
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    return answer


def hostile_requests(port: int) -> list[bytes]:
    """One request a break in BREAKS, in its path and (where HTTP lets a header
    carry it at all: bytes over 0x7f, C1 text to WSGI) in its headers; then one
    whose header gunicorn itself refuses (400), logging why."""
    answers = []
    for brk in BREAKS:
        carried = (brk if brk in HEADER_BREAKS else "") + FORGED
        answers.append(raw_request(port, "/a" + quoted(brk + FORGED), {
            "User-Agent": carried.encode(),
            "X-Request-ID": ("id" + carried).encode(),
            # The last entry is the client address the app logs.
            "X-Forwarded-For": ("203.0.113.9," + carried).encode(),
        }))
    answers.append(raw_request(port, "/b", {"X-Bad": ("x\x1b" + FORGED).encode()}))
    return answers


def assert_one_line_per_record(log: str) -> list[str]:
    lines = log.split("\n")
    for line in lines:
        if line and not line.startswith("    "):
            assert RECORD_START.match(line) or ACCESS_LINE.search(line), repr(line)
        # No other character a reader might take for a line break either.
        assert len(line.splitlines()) <= 1, repr(line)
    return lines


def test_text_logs_keep_each_record_on_one_line(make_app, serve):
    make_app()
    server = serve(LOG_FORMAT="text", PROXY_FIX_X_FOR="1", GUNICORN_CMD_ARGS="--access-logfile=-")

    answers = hostile_requests(server.port)

    statuses = [answer.split(b" ", 2)[1] for answer in answers]
    assert statuses == [b"404"] * len(BREAKS) + [b"400"]
    lines = assert_one_line_per_record(server.log_path.read_text(errors="strict"))
    request_lines = [line for line in lines if " authapi.request: GET /a\\" in line]
    assert len(request_lines) == len(BREAKS)
    for escaped in BREAKS.values():
        assert any(f"GET /a{escaped}{FORGED} 404" in line for line in request_lines), escaped
    access_lines = [line for line in lines if ACCESS_LINE.search(line)]
    assert len(access_lines) == len(BREAKS) + 1  # and the start-up probe


def test_json_logs_encode_what_a_client_sent(make_app, serve):
    make_app()
    server = serve(LOG_FORMAT="json", PROXY_FIX_X_FOR="1")

    hostile_requests(server.port)

    lines = server.log_path.read_text().split("\n")
    records = [json.loads(line) for line in lines if line]  # every line is one object
    assert all(len(line.splitlines()) <= 1 for line in lines)
    paths = {r["path"] for r in records if r.get("logger") == "authapi.request"}
    assert {"/a" + brk + FORGED for brk in BREAKS} <= paths


def test_text_format_escapes_the_message_its_arguments_and_fields(make_app):
    make_app(LOG_FORMAT="text")
    formatter = next(h for h in logging.getLogger().handlers if h.get_name() == HANDLER_NAME).formatter
    record = logging.LogRecord("authapi.test", logging.WARNING, __file__, 1,
                               "seen %s\u2028FAKE", ("x\nFAKE",), None)
    record.event = "e\rFAKE"
    record.user_id = "7\x85FAKE"

    line = formatter.format(record)

    assert line.endswith(r"seen x\nFAKE\u2028FAKE [event=e\rFAKE user_id=7\u0085FAKE]")


def test_a_traceback_stays_below_its_record_indented(make_app):
    make_app(LOG_FORMAT="text")
    formatter = next(h for h in logging.getLogger().handlers if h.get_name() == HANDLER_NAME).formatter
    try:
        raise ValueError("bad\n" + FORGED)
    except ValueError:
        record = logging.LogRecord("authapi.test", logging.ERROR, __file__, 1, "failed", (), sys.exc_info())

    lines = formatter.format(record).split("\n")

    assert RECORD_START.match(lines[0]) and lines[0].endswith("failed")
    assert len(lines) > 2 and all(line.startswith("    ") for line in lines[1:])
