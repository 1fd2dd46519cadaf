"""gunicorn's bind address (issue 13, finding 12): BIND_ADDRESS, every
interface by default (so PORT on a PaaS keeps working), 127.0.0.1 behind
nginx on the same host, IPv6 in brackets; checked in the settings gunicorn.conf.py
makes and on the sockets a real gunicorn listens on."""

import os
import runpy
import socket
import subprocess
import sys
import time

import pytest

from config.table import GUNICORN_SETTINGS

from .conftest import ROOT, base_env, free_port


def settings(monkeypatch, tmp_path, **environ) -> dict:
    for name in ("BIND_ADDRESS", "PORT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path / "metrics"))
    for name, value in environ.items():
        monkeypatch.setenv(name, value)
    return runpy.run_path(str(ROOT / "gunicorn.conf.py"))


@pytest.mark.parametrize("environ, bind", [
    ({}, "0.0.0.0:8000"),
    ({"PORT": "5123"}, "0.0.0.0:5123"),  # a PaaS sets only PORT
    ({"BIND_ADDRESS": "127.0.0.1", "PORT": "8001"}, "127.0.0.1:8001"),
    ({"BIND_ADDRESS": "::1"}, "[::1]:8000"),
    ({"BIND_ADDRESS": "[::]", "PORT": "9000"}, "[::]:9000"),
    ({"BIND_ADDRESS": "fd00::0:7"}, "[fd00::7]:8000"),
    ({"BIND_ADDRESS": "app.internal"}, "app.internal:8000"),
])
def test_bind_is_bind_address_and_port(monkeypatch, tmp_path, environ, bind):
    assert settings(monkeypatch, tmp_path, **environ)["bind"] == bind


@pytest.mark.parametrize("value", ["127.0.0.1:8000", "::1]", "a b", "unix:/tmp/x", "-x"])
def test_a_bad_bind_address_stops_start_up_naming_it(monkeypatch, tmp_path, value):
    with pytest.raises(SystemExit) as stopped:
        settings(monkeypatch, tmp_path, BIND_ADDRESS=value)

    assert "BIND_ADDRESS" in str(stopped.value.code)


def test_the_configuration_page_lists_the_default(monkeypatch, tmp_path):
    listed = {setting.name: setting.default for setting in GUNICORN_SETTINGS}

    assert settings(monkeypatch, tmp_path)["bind"] == f"{listed['BIND_ADDRESS']}:{listed['PORT']}"


def reachable(host: str, port: int) -> bool:
    try:
        socket.create_connection((host, port), timeout=1).close()
        return True
    except OSError:
        return False


def serve(tmp_path, **environ) -> tuple[subprocess.Popen, int]:
    """``gunicorn wsgi:app`` with only gunicorn.conf.py's bind (no --bind)."""
    port = free_port()
    env = {name: value for name, value in os.environ.items() if name != "BIND_ADDRESS"}
    env.update(base_env(f"sqlite:///{tmp_path / 'bind.db'}", None), PORT=str(port), **environ)
    process = subprocess.Popen([sys.executable, "-m", "gunicorn", "wsgi:app"], cwd=ROOT, env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return process, port


def wait_listening(process, host: str, port: int):
    deadline = time.monotonic() + 30
    while not reachable(host, port):
        assert process.poll() is None, "gunicorn exited"
        assert time.monotonic() < deadline, "gunicorn did not start in 30 s"
        time.sleep(0.1)


# 127.0.0.0/8 is all local on Linux: another loopback address stands for
# "another interface than the one bound".
@pytest.mark.parametrize("environ, listening, not_listening", [
    ({}, ("127.0.0.1", "127.0.0.2"), ()),
    ({"BIND_ADDRESS": "127.0.0.1"}, ("127.0.0.1",), ("127.0.0.2", "::1")),
    ({"BIND_ADDRESS": "::1"}, ("::1",), ("127.0.0.1",)),
])
def test_a_real_gunicorn_listens_where_it_is_told(tmp_path, environ, listening, not_listening):
    process, port = serve(tmp_path, **environ)
    try:
        wait_listening(process, listening[0], port)

        assert all(reachable(host, port) for host in listening)
        assert not any(reachable(host, port) for host in not_listening)
    finally:
        process.terminate()
        process.wait(timeout=30)
