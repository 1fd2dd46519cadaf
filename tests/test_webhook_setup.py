"""Setting webhooks up and operating them (API.md §5, §6, §10): the start-up
refusals (WEBHOOK_SECRET, WEBHOOK_EVENTS) as one line, ``webhooks run``
without WEBHOOK_URLS, ``make run`` starting the delivery process beside
gunicorn, and the README's receiver, as printed there, verifying real
deliveries."""

import os
import shutil
import signal
import subprocess
import sys
import threading
from pathlib import Path

import flask
import pytest
import requests
from werkzeug.serving import make_server

from authapi import create_app
from config import ConfigError

from .clients import PASSWORD
from .commands import assert_refused_with_one_line, clean_env, import_wsgi
from .servers import ROOT, base_env, free_port, require_program
from .webhook_helpers import SECRET, SETTINGS, Receiver, add_event, deliver, deliveries, wait_until


@pytest.fixture
def receiver():
    with Receiver() as receiver:
        yield receiver


# ---------------------------------------------------------------- start-up


@pytest.mark.parametrize("secret", [None, "", "whsec_" + "c2hvcnQ=", "c2VjcmV0LXdpdGhvdXQtdGhlLXByZWZpeC0zMg==",
                                    "whsec_not base64!"],
                         ids=["missing", "empty", "short", "no-prefix", "not-base64"])
def test_webhook_urls_without_a_good_secret_stop_start_up_naming_it(tmp_path, secret):
    env = clean_env(AUTHAPI_ENV="development", DATABASE_URL=f"sqlite:///{tmp_path / 'x.db'}",
                    WEBHOOK_URLS="https://hooks.example.com/in", WEBHOOK_SECRET=secret)

    result = import_wsgi(env)

    assert_refused_with_one_line(result, "WEBHOOK_SECRET")
    assert not secret or secret not in result.stderr


@pytest.mark.parametrize("entry", ["login.faild", "logn.*", "user.*,mfa.enable"])
def test_webhook_events_naming_no_event_type_stop_start_up(tmp_path, entry):
    env = base_env(f"sqlite:///{tmp_path / 'x.db'}", None, WEBHOOK_EVENTS=entry)

    with pytest.raises(ConfigError) as refused:
        create_app("testing", environ=env)

    assert "WEBHOOK_EVENTS" in str(refused.value) and len(str(refused.value).splitlines()) == 1


def test_webhook_events_refusal_is_one_line_from_wsgi(tmp_path):
    env = clean_env(AUTHAPI_ENV="development", DATABASE_URL=f"sqlite:///{tmp_path / 'x.db'}",
                    WEBHOOK_EVENTS="login.*,passkey.add")

    assert_refused_with_one_line(import_wsgi(env), "WEBHOOK_EVENTS", "passkey.add")


def test_the_delivery_process_needs_webhook_urls(make_app):
    result = make_app().test_cli_runner().invoke(args=["webhooks", "run", "--once"])

    assert result.exit_code == 1
    assert "WEBHOOK_URLS" in result.stderr


# ---------------------------------------------------------------- the README's receiver


def readme_receiver() -> str:
    section = (ROOT / "README.md").read_text().split("\n### Webhooks\n", 1)[1]
    return section.split("```python\n", 1)[1].split("```", 1)[0]


def test_the_readme_receiver_verifies_real_deliveries(make_app, monkeypatch, capsys):
    monkeypatch.setenv("WEBHOOK_SECRET", SECRET)
    receiver_app = flask.Flask("receiver")
    exec(readme_receiver(), {"os": os, "app": receiver_app, "request": flask.request})
    server = make_server("127.0.0.1", 0, receiver_app, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_port}/authapi-events"
    try:
        app = make_app(WEBHOOK_URLS=url, **SETTINGS)
        event_id = add_event(app)
        deliver(app)
        forged = requests.post(url, data=b"{}", timeout=5, headers={
            "webhook-id": event_id, "webhook-timestamp": "1796000000", "webhook-signature": "v1,Zm9yZ2Vk"})
    finally:
        server.shutdown()

    (row,) = deliveries(app)
    assert (row.status, row.last_status_code) == ("delivered", 204)
    assert capsys.readouterr().out.splitlines() == [f"user.updated None {event_id}"]
    assert forged.status_code == 400


# ---------------------------------------------------------------- make run


def test_make_run_starts_the_delivery_process_beside_gunicorn(tmp_path, redis_url, receiver):
    make = require_program(shutil.which("make"), "make is not installed")
    # A venv that `make` finds ready (this interpreter's), so nothing is installed.
    venv = tmp_path / "venv"
    venv.mkdir()
    (venv / "bin").symlink_to(Path(sys.executable).parent)
    (venv / ".installed").touch()
    port = free_port()
    env = {**os.environ, **base_env(f"sqlite:///{tmp_path / 'make.db'}", redis_url, PORT=port,
                                    BIND_ADDRESS="127.0.0.1", WEB_CONCURRENCY=1,
                                    WEBHOOK_URLS=receiver.url + "/hooks", **SETTINGS)}
    output = tmp_path / "make.log"
    with open(output, "w") as log:
        # Its own process group, as a terminal's job: Ctrl-C reaches every process.
        run = subprocess.Popen([make, "run", f"VENV={venv}"], cwd=ROOT, env=env, stdout=log,
                               stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_until(lambda: "webhook delivery started" in output.read_text(), timeout=60)
        wait_until(lambda: answers(f"http://127.0.0.1:{port}/health/live"), timeout=60)
        registered = requests.post(f"http://127.0.0.1:{port}/auth/register", timeout=10, json={
            "email": "ada@example.com", "username": "ada", "password": PASSWORD})
        assert registered.status_code == 201, registered.text
        (got,) = receiver.wait_for(1)
        assert got["message"]["type"] == "user.registered"
    finally:
        os.killpg(run.pid, signal.SIGINT)
        run.wait(timeout=30)
    assert "webhook delivery stopped" in output.read_text()
    wait_until(lambda: not group_alive(run.pid))  # gunicorn and the delivery process alike


def answers(url: str) -> bool:
    try:
        return requests.get(url, timeout=1).status_code == 200
    except requests.ConnectionError:
        return False


def group_alive(group: int) -> bool:
    try:
        os.killpg(group, 0)
    except ProcessLookupError:
        return False
    return True


