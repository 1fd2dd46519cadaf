"""The operator's commands (``python -c 'import wsgi'``, ``flask --app wsgi ...``)
run in real subprocesses with a controlled environment, and how a refusal of
theirs must look: one line on stderr, no traceback."""

import os
import subprocess
import sys

from .servers import ROOT

SECRET = "s" * 40
JWT_SECRET = "j" * 40
CLI_TIMEOUT = 60


def clean_env(**settings) -> dict:
    """Only what a process needs to run, plus ``settings``: nothing of ours leaks
    in from the environment the tests run in."""
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": os.environ.get("HOME", "/tmp")}
    env.update({k: str(v) for k, v in settings.items() if v is not None})
    return env


def production_env(tmp_path, **overrides) -> dict:
    """Every setting production requires (nothing is contacted at import time),
    with ``overrides``; an override of None removes the variable."""
    settings = {
        "AUTHAPI_ENV": "production",
        "SECRET_KEY": SECRET,
        "JWT_SECRET_KEY": JWT_SECRET,
        "DATABASE_URL": f"sqlite:///{tmp_path / 'prod.db'}",
        "REDIS_URL": "redis://127.0.0.1:6379/15",
    }
    settings.update(overrides)
    return clean_env(**settings)


def run(args, env, cwd=ROOT) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=CLI_TIMEOUT,
    )


def import_wsgi(env, code="import wsgi") -> subprocess.CompletedProcess:
    return run(["-c", code], env)


def flask_cli(env, *args, cwd=ROOT) -> subprocess.CompletedProcess:
    return run(["-m", "flask", "--app", "wsgi", *args], env, cwd=cwd)


def assert_refused_with_one_line(result, *words):
    assert result.returncode != 0, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    for word in words:
        assert word in lines[0], lines[0]
