"""/metrics on a real gunicorn with several workers over PostgreSQL and Redis
(API.md §3 Operations): counts are exact whichever worker served a request
and whichever worker answers the scrape. Also what gunicorn itself writes on
that server: its JSON access log and its own refusals."""

import json
import os
import signal
import socket
import subprocess
import sys
import shutil
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from prometheus_client import CollectorRegistry
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.parser import text_string_to_metric_families

from .conftest import PASSWORD, ROOT, base_env, bearer, fresh_server

WORKERS = 3


@pytest.fixture(scope="module")
def server(postgres_url, redis_url, tmp_path_factory):
    metrics_dir = tmp_path_factory.mktemp("metrics")
    env = base_env(postgres_url, redis_url, PROMETHEUS_MULTIPROC_DIR=metrics_dir, LOG_FORMAT="json")
    with fresh_server(env, tmp_path_factory, workers=WORKERS) as server:
        server.metrics_dir = metrics_dir
        yield server


def scrape(server) -> dict:
    """{(sample name, frozenset of labels): value} from one GET /metrics."""
    response = requests.get(server.url + "/metrics", timeout=5)
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/plain")
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def labels(**values):
    return frozenset(values.items())


LIVE = labels(endpoint="health.live", method="GET", status="200")


def per_worker_counts(server) -> dict:
    """{pid: requests to /health/live counted by that process}, read from each
    process's own file with prometheus-client's public collector."""
    counts = {}
    for path in server.metrics_dir.glob("counter_*.db"):
        alone = server.metrics_dir.parent / f"alone-{uuid.uuid4().hex}"
        alone.mkdir()
        shutil.copy(path, alone)
        registry = CollectorRegistry()
        MultiProcessCollector(registry, path=str(alone))
        pid = int(path.stem.split("_")[1])
        counts[pid] = registry.get_sample_value("authapi_http_requests_total", dict(LIVE)) or 0
        shutil.rmtree(alone)
    return counts


def test_request_count_is_exact_across_workers(server):
    sent = 0
    with ThreadPoolExecutor(12) as pool:
        # Connections are spread by the kernel; send batches until at least two
        # workers have served some (almost always after the first).
        for _ in range(10):
            statuses = list(pool.map(
                lambda _: requests.get(server.url + "/health/live", timeout=5).status_code, range(40)
            ))
            assert statuses == [200] * 40
            sent += 40
            if sum(1 for count in per_worker_counts(server).values() if count) >= 2:
                break
    counts = per_worker_counts(server)
    assert sum(1 for count in counts.values() if count) >= 2, counts
    assert sum(counts.values()) == sent

    # Every scrape, whichever worker answers it, has the total.
    for _ in range(2 * WORKERS):
        samples = scrape(server)
        assert samples[("authapi_http_requests_total", LIVE)] == sent
        assert samples[("authapi_http_request_duration_seconds_count", LIVE)] == sent
        assert samples[("authapi_http_request_duration_seconds_bucket", LIVE | labels(le="+Inf"))] == sent


def test_counts_survive_a_worker_that_dies(server):
    for _ in range(10):
        requests.get(server.url + "/health/live", timeout=5).raise_for_status()
    before = scrape(server)[("authapi_http_requests_total", LIVE)]
    victim = next(pid for pid, count in per_worker_counts(server).items()
                  if count and pid != server.process.pid)
    os.kill(victim, signal.SIGKILL)  # gunicorn starts another; child_exit runs
    deadline = time.monotonic() + 10
    while True:
        try:
            after = scrape(server)[("authapi_http_requests_total", LIVE)]
            break
        except requests.ConnectionError:
            assert time.monotonic() < deadline
            time.sleep(0.1)
    # What the dead worker counted is still in the total.
    assert after == before


def test_gunicorn_empties_a_given_metrics_directory_at_start(tmp_path):
    stale = tmp_path / "counter_12345.db"
    stale.write_bytes(b"left over from an earlier run")
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path), "REDIS_URL": "redis://127.0.0.1:1/0"}
    result = subprocess.run([sys.executable, "-m", "gunicorn", "--print-config", "wsgi:app"],
                            cwd=ROOT, env=env, capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    assert not stale.exists()


@pytest.mark.parametrize("case, status", [
    ("request line over 4094 bytes", 414),
    ("over 100 header fields", 431),
    ("malformed request line", 400),
])
def test_requests_gunicorn_refuses_get_the_error_envelope(server, case, status):
    secret = uuid.uuid4().hex
    if case.startswith("request line"):
        response = requests.get(f"{server.url}/health/live?token={secret}{'x' * 5000}", timeout=5)
        raw = response.content
        assert response.status_code == status
        assert response.headers["Content-Type"] == "application/json"
    else:
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
            if case.startswith("over 100"):
                headers = "".join(f"X-Field-{i}: {secret}\r\n" for i in range(120))
                sock.sendall(f"GET /health/live HTTP/1.1\r\nHost: x\r\n{headers}\r\n".encode())
            else:
                sock.sendall(f"GET /health/live?{secret} HTTP/1.1 nonsense\r\n\r\n".encode())
            raw = b""
            while chunk := sock.recv(65536):
                raw += chunk
        head, _, body = raw.partition(b"\r\n\r\n")
        assert head.startswith(f"HTTP/1.1 {status} ".encode())
        assert b"Content-Type: application/json" in head
        # Every response carries a request id and the security headers (API.md §1, §7).
        for header in (b"X-Request-ID: ", b"X-Frame-Options: DENY", b"Referrer-Policy: no-referrer",
                       b"X-Content-Type-Options: nosniff", b"Cache-Control: no-store"):
            assert header in head
        raw = body
    error = json.loads(raw)["error"]
    assert error["code"] == "bad_request" and set(error) == {"code", "message"}
    # gunicorn's own message would quote the request, token and all.
    assert secret.encode() not in raw


def login(server, username, password):
    return requests.post(server.url + "/auth/login", json={"username": username, "password": password},
                         timeout=5)


def test_logins_by_outcome_refresh_reuse_and_active_sessions(server):
    before = scrape(server)
    response = requests.post(server.url + "/auth/register", timeout=5, json={
        "email": "ada@example.com", "username": "ada", "password": PASSWORD})
    assert response.status_code == 201
    for _ in range(3):
        assert login(server, "ada", "not the password at all").status_code == 401
    assert login(server, "nobody", "not the password at all").status_code == 401
    first = login(server, "ada", PASSWORD).json()
    login(server, "ada", PASSWORD).raise_for_status()
    refresh = lambda token: requests.post(server.url + "/auth/refresh", headers=bearer(token), timeout=5)  # noqa: E731
    assert refresh(first["refresh_token"]).status_code == 200
    reused = refresh(first["refresh_token"])
    assert (reused.status_code, reused.json()["error"]["code"]) == (401, "token_reused")

    after = scrape(server)

    def delta(name, sample_labels=frozenset()):
        return after.get((name, sample_labels), 0) - before.get((name, sample_labels), 0)

    assert delta("authapi_logins_total", labels(outcome="success")) == 2
    assert delta("authapi_logins_total", labels(outcome="invalid_credentials")) == 4
    assert delta("authapi_refresh_token_reuse_total") == 1
    # Two sessions started; the reuse ended the first.
    assert delta("authapi_active_sessions") == 1
    assert delta("authapi_http_requests_total", labels(endpoint="auth.login", method="POST", status="401")) == 4


def test_unmatched_paths_share_one_label(server):
    probe = uuid.uuid4().hex
    assert requests.get(f"{server.url}/no/such/{probe}", timeout=5).status_code == 404
    text = requests.get(server.url + "/metrics", timeout=5).text
    assert probe not in text
    samples = scrape(server)
    assert samples[("authapi_http_requests_total", labels(endpoint="unmatched", method="GET", status="404"))] >= 1



def test_invented_methods_share_one_label(server):
    probe = "PROBE" + uuid.uuid4().hex[:8].upper()
    response = requests.request(probe, f"{server.url}/users/me", timeout=5)
    assert response.status_code == 405
    text = requests.get(server.url + "/metrics", timeout=5).text
    assert probe not in text
    samples = scrape(server)
    assert samples[("authapi_http_requests_total", labels(endpoint="unmatched", method="other", status="405"))] >= 1

def request_lines(server) -> list[dict]:
    lines = [json.loads(line) for line in server.log_path.read_text().splitlines() if line.startswith("{")]
    return [line for line in lines if line.get("message") == "request" or line.get("logger") in
            ("authapi.request", "gunicorn.access")]


def test_access_log_is_one_json_line_per_request_without_query_strings(server):
    secret = uuid.uuid4().hex
    response = requests.get(f"{server.url}/health/live?token={secret}", timeout=5)
    request_id = response.headers["X-Request-ID"]
    deadline = time.monotonic() + 5
    while not [e for e in request_lines(server) if e.get("request_id") == request_id]:
        assert time.monotonic() < deadline, "no access log line for the request"
        time.sleep(0.05)
    time.sleep(0.2)  # a second line, if any, would follow at once
    (line,) = [e for e in request_lines(server) if e.get("request_id") == request_id]
    assert line["logger"] == "authapi.request" and line["level"] == "INFO"
    assert (line["method"], line["path"], line["status"]) == ("GET", "/health/live", 200)
    assert isinstance(line["duration_ms"], float) and line["time"].endswith("+00:00")
    assert secret not in server.log_path.read_text()
