"""gunicorn.conf.py (API.md §5 PORT, WEB_CONCURRENCY, GUNICORN_THREADS): the
settings it computes from the environment, read by running the file."""

import runpy

import pytest

from config.table import GUNICORN_SETTINGS

from .conftest import ROOT


def gunicorn_settings(monkeypatch, tmp_path, **environ) -> dict:
    for name in ("AUTHAPI_ENV", "REDIS_URL", "WEB_CONCURRENCY", "PORT", "LOG_FORMAT"):
        monkeypatch.delenv(name, raising=False)
    # The file exports a metrics directory of its own otherwise; monkeypatch
    # takes this one away again after the test.
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path / "metrics"))
    for name, value in environ.items():
        monkeypatch.setenv(name, str(value))
    return runpy.run_path(str(ROOT / "gunicorn.conf.py"))


@pytest.mark.parametrize("environment", [None, "development", "testing"])
def test_gunicorn_serves_one_worker_without_redis(monkeypatch, tmp_path, capsys, environment):
    environ = {"WEB_CONCURRENCY": 4}
    if environment:
        environ["AUTHAPI_ENV"] = environment

    settings = gunicorn_settings(monkeypatch, tmp_path, **environ)

    # The in-process revocation store is per process: a second worker would
    # not see a logout served by the first.
    assert settings["workers"] == 1
    assert "REDIS_URL" in capsys.readouterr().err


def test_gunicorn_uses_web_concurrency_with_redis(monkeypatch, tmp_path):
    settings = gunicorn_settings(
        monkeypatch,
        tmp_path,
        AUTHAPI_ENV="development",
        REDIS_URL="redis://127.0.0.1:6379/0",
        WEB_CONCURRENCY=3,
    )

    assert settings["workers"] == 3


def test_gunicorn_defaults_to_two_workers_with_redis(monkeypatch, tmp_path):
    settings = gunicorn_settings(monkeypatch, tmp_path, REDIS_URL="redis://127.0.0.1:6379/0")

    assert settings["workers"] == 2


def test_gunicorn_defaults_are_the_ones_the_configuration_page_lists(monkeypatch, tmp_path):
    listed = {setting.name: setting.default for setting in GUNICORN_SETTINGS}
    monkeypatch.delenv("GUNICORN_THREADS", raising=False)

    settings = gunicorn_settings(monkeypatch, tmp_path, REDIS_URL="redis://127.0.0.1:6379/0")

    assert settings["bind"] == f"0.0.0.0:{listed['PORT']}"
    assert settings["workers"] == int(listed["WEB_CONCURRENCY"])
    assert settings["threads"] == int(listed["GUNICORN_THREADS"])


@pytest.mark.parametrize("port, bind", [(None, "0.0.0.0:8000"), (5123, "0.0.0.0:5123")])
def test_gunicorn_binds_to_port(monkeypatch, tmp_path, port, bind):
    environ = {"PORT": port} if port else {}

    settings = gunicorn_settings(monkeypatch, tmp_path, **environ)

    assert settings["bind"] == bind


def test_gunicorn_trusts_no_forwarding_headers(monkeypatch, tmp_path):
    # API.md §5: only ProxyFix (PROXY_FIX_X_FOR) decides which proxies to trust.
    settings = gunicorn_settings(monkeypatch, tmp_path)

    assert settings["forwarded_allow_ips"] == ""
    assert settings["secure_scheme_headers"] == {}
