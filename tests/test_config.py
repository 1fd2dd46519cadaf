"""Configuration (API.md §5) and the operator's commands (§6): start-up checks in
real subprocesses with a controlled environment, the settings table and its
page, and URL mapping. Migrations are in test_migrations.py, gunicorn.conf.py
in test_gunicorn_config.py."""

import pytest

import config
from config.page import markdown
from config.table import SETTINGS

from .commands import (
    assert_refused_with_one_line, clean_env, flask_cli, import_wsgi, production_env, run,
)
from .conftest import ROOT, free_port


# ---------------------------------------------------------------- production refuses


@pytest.mark.parametrize(
    "overrides, variable",
    [
        ({"SECRET_KEY": None}, "SECRET_KEY"),
        ({"SECRET_KEY": ""}, "SECRET_KEY"),
        ({"SECRET_KEY": "s" * 31}, "SECRET_KEY"),
        ({"JWT_SECRET_KEY": None}, "JWT_SECRET_KEY"),
        ({"JWT_SECRET_KEY": "j" * 31}, "JWT_SECRET_KEY"),
        ({"DATABASE_URL": None}, "DATABASE_URL"),
        ({"REDIS_URL": None}, "REDIS_URL"),
        ({"MAIL_BACKEND": "console"}, "MAIL_BACKEND"),
    ],
    ids=[
        "secret-key-missing",
        "secret-key-empty",
        "secret-key-31-bytes",
        "jwt-secret-key-missing",
        "jwt-secret-key-31-bytes",
        "database-url-missing",
        "redis-url-missing",
        "mail-backend-console",
    ],
)
def test_production_refuses_to_start_with_one_line_naming_the_setting(
    tmp_path, overrides, variable
):
    result = import_wsgi(production_env(tmp_path, **overrides))

    assert_refused_with_one_line(result, variable)


@pytest.mark.parametrize("entry_point", ["flask-db-upgrade", "gunicorn"])
def test_production_refusal_is_one_line_from_the_operator_commands(tmp_path, entry_point):
    env = production_env(tmp_path, REDIS_URL=None)
    if entry_point == "gunicorn":
        # gunicorn.conf.py makes a metrics directory unless given one.
        env.update(PORT=str(free_port()), PROMETHEUS_MULTIPROC_DIR=str(tmp_path / "metrics"))
        # It would serve (and time out here) if it did not refuse.
        result = run(["-m", "gunicorn", "wsgi:app"], env)
    else:
        result = flask_cli(env, "db", "upgrade")

    assert_refused_with_one_line(result, "REDIS_URL")
    assert not (tmp_path / "prod.db").exists()


def test_production_starts_with_every_required_setting(tmp_path, redis_url):
    env = production_env(tmp_path, REDIS_URL=redis_url)

    result = import_wsgi(
        env, "import wsgi; c = wsgi.app.config; print(c['AUTHAPI_ENV'], c['MAIL_BACKEND'])"
    )

    assert result.returncode == 0, result.stderr
    # Without MAIL_BACKEND production sends real email, never to the log.
    assert result.stdout.split() == ["production", "smtp"]


def test_production_starts_while_redis_is_down(tmp_path):
    env = production_env(tmp_path, REDIS_URL=f"redis://127.0.0.1:{free_port()}/0")

    result = import_wsgi(env)

    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize(
    "secret",
    ["k" * 32, "é" * 16],  # 32 bytes each; the second only 16 characters
    ids=["32-ascii-bytes", "32-utf8-bytes"],
)
def test_production_accepts_secrets_of_exactly_32_bytes(tmp_path, secret):
    environ = production_env(tmp_path, SECRET_KEY=secret, JWT_SECRET_KEY=secret)

    loaded = config.load_config(environ=environ)

    assert (loaded.SECRET_KEY, loaded.JWT_SECRET_KEY) == (secret, secret)


def test_production_refuses_secret_of_32_characters_but_fewer_bytes(tmp_path):
    environ = production_env(tmp_path, SECRET_KEY="é" * 15 + "a")  # 31 bytes

    with pytest.raises(config.ConfigError, match="SECRET_KEY"):
        config.load_config(environ=environ)


# ---------------------------------------------------------------- bad values


def test_unknown_environment_name_is_refused_with_one_line(tmp_path):
    env = clean_env(AUTHAPI_ENV="nonsense", DATABASE_URL=f"sqlite:///{tmp_path / 'x.db'}")

    result = import_wsgi(env)

    assert_refused_with_one_line(result, "AUTHAPI_ENV", "nonsense")


def test_bad_integer_is_refused_with_one_line_naming_the_variable(tmp_path):
    env = clean_env(
        AUTHAPI_ENV="development",
        DATABASE_URL=f"sqlite:///{tmp_path / 'x.db'}",
        ACCESS_TOKEN_TTL="abc",
    )

    result = import_wsgi(env)

    assert_refused_with_one_line(result, "ACCESS_TOKEN_TTL", "abc")


# What wsgi prints is the ConfigError's message (shown above for one case);
# the other bad values are checked in-process, which is much faster.
@pytest.mark.parametrize(
    "variable, value",
    [
        ("REFRESH_TOKEN_TTL", "1.5"),
        ("ACCESS_TOKEN_TTL", "0"),
        ("ACCESS_TOKEN_TTL", "-60"),
        ("MAX_CONTENT_LENGTH", "64k"),
        ("SMTP_PORT", "smtp"),
        ("RATELIMIT_ENABLED", "maybe"),
        ("PASSWORD_MIN_LENGTH", "0"),
        ("LOG_FORMAT", "xml"),
        ("MFA_ENCRYPTION_KEYS", "not-a-fernet-key"),
        ("REQUIRE_MFA_FOR_ADMINS", "maybe"),
    ],
)
def test_bad_value_raises_config_error_naming_the_variable(tmp_path, variable, value):
    environ = clean_env(DATABASE_URL=f"sqlite:///{tmp_path / 'x.db'}", **{variable: value})

    with pytest.raises(config.ConfigError) as refused:
        config.load_config("development", environ)

    message = str(refused.value)
    assert variable in message
    assert len(message.splitlines()) == 1


@pytest.mark.parametrize(
    "variable, value",
    [
        ("LOG_LEVEL", "verbose"),
        ("DATABASE_URL", "localhost/authapi"),
        ("DATABASE_URL", "nosuchdb://user:pw@host/db"),
        ("REDIS_URL", "localhost:6379"),
    ],
)
def test_malformed_setting_is_refused_with_one_line_naming_it(tmp_path, variable, value):
    settings = {"AUTHAPI_ENV": "development", "DATABASE_URL": f"sqlite:///{tmp_path / 'x.db'}"}
    env = clean_env(**{**settings, variable: value})

    result = import_wsgi(env)

    assert_refused_with_one_line(result, variable)


def test_production_refuses_unknown_mail_backend(tmp_path):
    environ = production_env(tmp_path, MAIL_BACKEND="smpt")

    with pytest.raises(config.ConfigError, match="MAIL_BACKEND"):
        config.load_config(environ=environ)


@pytest.mark.parametrize("variable", ["SECRET_KEY", "JWT_SECRET_KEY"])
def test_production_refusal_does_not_echo_a_short_secret(tmp_path, variable):
    secret = "short-but-real-secret"
    environ = production_env(tmp_path, **{variable: secret})

    with pytest.raises(config.ConfigError) as refused:
        config.load_config(environ=environ)

    # The message goes to the deployment log.
    assert variable in str(refused.value)
    assert secret not in str(refused.value)


# ---------------------------------------------------------------- the table and its page


def test_configuration_page_is_the_one_made_from_the_table():
    page = (ROOT / "docs" / "configuration.md").read_text()

    assert page == markdown(), "run: python -m config.page > docs/configuration.md"


def test_every_setting_is_read_into_the_app_config_under_one_key():
    keys = [setting.key for setting in SETTINGS]

    assert len(keys) == len(set(keys))
    assert set(keys) <= set(vars(config.load_config("testing", {})))


def test_trusted_hosts_are_applied_by_authapi_not_by_flask():
    # API.md §5 exempts /health/*, which Flask's own TRUSTED_HOSTS would not.
    loaded = config.load_config("testing", {"TRUSTED_HOSTS": "api.example.com, .example.org"})

    assert loaded.AUTHAPI_TRUSTED_HOSTS == ["api.example.com", ".example.org"]
    assert loaded.TRUSTED_HOSTS is None


# ---------------------------------------------------------------- database URLs


@pytest.mark.parametrize(
    "given, expected",
    [
        ("postgres://u:p@h/db", "postgresql+psycopg://u:p@h/db"),
        ("postgresql://u:p@h/db", "postgresql+psycopg://u:p@h/db"),
        (
            "postgres://u:p@h:5433/db?sslmode=require",
            "postgresql+psycopg://u:p@h:5433/db?sslmode=require",
        ),
        ("postgresql+psycopg://u:p@h/db", "postgresql+psycopg://u:p@h/db"),
        ("sqlite:///:memory:", "sqlite:///:memory:"),
    ],
)
def test_database_url_maps_to_the_installed_driver(given, expected):
    assert config.database_url(given) == expected


def test_database_url_makes_relative_sqlite_path_absolute_under_cwd(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)

    url = config.database_url("sqlite:///data/app.db")

    assert url == f"sqlite:///{tmp_path / 'data' / 'app.db'}"
    assert (tmp_path / "data").is_dir()


def test_database_url_keeps_absolute_sqlite_path(tmp_path):
    url = f"sqlite:///{tmp_path / 'abs' / 'app.db'}"

    assert config.database_url(url) == url
