"""The Dockerfile, checked without a Docker engine (there is none here): hadolint
lints it, a parse checks the properties the image promises, and its
HEALTHCHECK command is run against a real HTTP server. gunicorn.conf.py is
read by gunicorn itself (--print-config)."""

import json
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from werkzeug.serving import make_server

from authapi import create_app

from .conftest import ROOT, base_env, free_port

DOCKERFILE = ROOT / "Dockerfile"


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    logical, pending = [], ""
    for line in DOCKERFILE.read_text().splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        logical.append(pending + stripped)
        pending = ""
    return [(text.split(None, 1)[0].upper(), text.split(None, 1)[1]) for text in logical]


def index(name, predicate=lambda args: True) -> int:
    return next(i for i, (op, args) in enumerate(instructions()) if op == name and predicate(args))


def test_hadolint_finds_nothing():
    hadolint = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")
    if not os.path.exists(hadolint):
        pytest.fail("hadolint is missing: pip install -r requirements-dev.txt")
    result = subprocess.run([hadolint, str(DOCKERFILE)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_base_image_is_a_pinned_slim_python():
    (image,) = [args for op, args in instructions() if op == "FROM"]
    name, _, tag = image.partition(":")
    assert name == "python" and "slim" in tag and tag[0].isdigit()


def test_dependencies_are_installed_in_their_own_layer_before_the_code():
    copy_requirements = index("COPY", lambda args: args.split() == ["requirements.txt", "."])
    install = index("RUN", lambda args: "pip install" in args and "-r requirements.txt" in args)
    first_code = index("COPY", lambda args: "requirements.txt" not in args)
    assert copy_requirements < install < first_code
    assert "--no-cache-dir" in instructions()[install][1]


def test_the_copied_paths_exist_and_are_not_docker_ignored():
    ignored = {line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()
               if line.strip() and not line.startswith("#")}
    for op, args in instructions():
        if op != "COPY":
            continue
        for source in args.split()[:-1]:
            assert (ROOT / source).exists(), source
            assert source not in ignored, source
    for secret_or_state in (".git", ".venv", ".env", "*.pem", "instance", "tests"):
        assert secret_or_state in ignored


def test_runs_as_a_non_root_user_after_installing():
    users = [(i, args) for i, (op, args) in enumerate(instructions()) if op == "USER"]
    assert users, "no USER: the app would run as root"
    last_index, user = users[-1]
    assert user.split(":")[0] not in {"root", "0"}
    assert last_index > index("RUN", lambda args: "pip install" in args)
    assert last_index < index("CMD")


def test_cmd_is_gunicorn_serving_wsgi_app():
    assert json.loads(instructions()[index("CMD")][1]) == ["gunicorn", "wsgi:app"]


def healthcheck_argv() -> list[str]:
    args = instructions()[index("HEALTHCHECK")][1]
    options, _, command = args.partition(" CMD ")
    assert "--timeout=" in options and "--interval=" in options
    argv = json.loads(command)
    assert argv[0] == "python"
    return [sys.executable, *argv[1:]]


@pytest.fixture
def live_http(sqlite_url):
    """The app behind a real HTTP server on a free port."""
    app = create_app("testing", environ=base_env(sqlite_url, None))
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_port
    server.shutdown()


def test_healthcheck_probes_health_live(live_http):
    argv = healthcheck_argv()
    assert "/health/live" in argv[-1]
    ok = subprocess.run(argv, env={**os.environ, "PORT": str(live_http)}, capture_output=True, timeout=10)
    assert ok.returncode == 0, ok.stderr
    down = subprocess.run(argv, env={**os.environ, "PORT": str(free_port())}, capture_output=True, timeout=10)
    assert down.returncode != 0


def test_gunicorn_config_binds_port_and_workers_from_the_environment(tmp_path):
    env = {**os.environ, "PORT": "9123", "WEB_CONCURRENCY": "3", "REDIS_URL": "redis://127.0.0.1:6379/0",
           "PROMETHEUS_MULTIPROC_DIR": str(tmp_path), "AUTHAPI_ENV": "testing"}
    result = subprocess.run(
        [sys.executable, "-m", "gunicorn", "--print-config", "wsgi:app"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=30,
    )
    assert result.returncode == 0, result.stderr
    settings = dict(
        (name.strip(), value.strip())
        for name, _, value in (line.partition("=") for line in result.stdout.splitlines())
    )
    assert settings["bind"] == "['0.0.0.0:9123']"
    assert settings["workers"] == "3"
    # Heroku and Kubernetes kill 30 s after SIGTERM.
    assert int(settings["graceful_timeout"]) < 30
    assert settings["child_exit"] == "<child_exit()>"  # multi-process metrics clean-up
    # One line per request: the app's own (authapi.request), not gunicorn's too.
    assert settings["accesslog"] == "None"
