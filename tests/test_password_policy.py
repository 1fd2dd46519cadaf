"""The password policy (authapi.passwords, API.md §2 validation rules): length,
the shipped common-password list, the user's own name and email, and the one
check every caller goes through."""

import gzip

import pytest
from sqlalchemy import select

from authapi import errors, passwords
from authapi.extensions import db
from authapi.models import User
from authapi.services import accounts

from .conftest import PASSWORD, error_code, post_login

USERNAME = "margaret"
EMAIL = "lovelace@example.com"


def register(client, password, username=USERNAME, email=EMAIL):
    return client.post(
        "/auth/register", json={"email": email, "username": username, "password": password}
    )


# ---------------------------------------------------------------- policy


def shipped_passwords():
    with gzip.open(passwords.COMMON_PASSWORDS_FILE, "rt", encoding="utf-8") as fh:
        return [line.strip() for line in fh if line.strip()]


def test_shipped_common_password_list_is_large_enough():
    passwords = shipped_passwords()
    assert len(set(passwords)) >= 10_000
    assert {"password", "12345678", "iloveyou", "qwertyuiop", "sunshine"} <= set(passwords)


@pytest.mark.parametrize(
    "password",
    [
        pytest.param("x7#kq9!mz2", id="too-short"),
        pytest.param("x7#kq9!mz2p", id="one-under-the-minimum"),
        pytest.param(("Zq8-" * 65)[:257], id="257-characters"),
        pytest.param("x" * 1000, id="1000-characters"),
        pytest.param("password1234", id="common-password1234"),
        pytest.param("qwertyuiop123", id="common-qwertyuiop123"),
        pytest.param("1qaz2wsx3edc", id="common-1qaz2wsx3edc"),
        pytest.param("qwerty123456", id="common-qwerty123456"),
        pytest.param("my name is margaret ok", id="contains-username"),
        pytest.param("MARGARET, forever and ever", id="contains-username-other-case"),
        pytest.param("margaret", id="is-username-and-short"),
        pytest.param("dear lovelace, hello there", id="contains-email-local-part"),
    ],
)
def test_weak_password_is_refused_at_register(client, password):
    response = register(client, password)
    assert (response.status_code, error_code(response)) == (422, "validation_error")
    messages = response.get_json()["error"]["details"]["password"]
    assert messages and all(isinstance(m, str) and m for m in messages)
    # Nothing was written: the username is still free.
    assert register(client, PASSWORD).status_code == 201


@pytest.mark.parametrize(
    "password",
    [
        pytest.param(PASSWORD, id="passphrase"),
        pytest.param("x7#kq9!mz2pw", id="exactly-12"),
        pytest.param(("Zq8-" * 64), id="exactly-256"),
        pytest.param("mar garet lovel ace", id="username-split-up"),
        pytest.param("Ünïcödé pässwörd ✓ 12", id="unicode"),
    ],
)
def test_good_password_is_accepted_at_register(client, password):
    response = register(client, password)
    assert response.status_code == 201, response.get_json()
    assert post_login(client, USERNAME, password).status_code == 200


@pytest.mark.parametrize("password", ["password", "12345678", "iloveyou", "qwertyuiop", "sunshine"])
def test_common_password_is_refused_whatever_the_minimum_length(make_app, password):
    client = make_app(PASSWORD_MIN_LENGTH=8).test_client()
    response = register(client, password)
    assert (response.status_code, error_code(response)) == (422, "validation_error")
    assert response.get_json()["error"]["details"]["password"]


def test_uncommon_short_password_passes_a_lowered_minimum(make_app):
    # The control for the test above: at that minimum only commonness refuses.
    assert "zq8vmw3k" not in shipped_passwords()
    client = make_app(PASSWORD_MIN_LENGTH=8).test_client()
    assert register(client, "zq8vmw3k").status_code == 201


def test_entries_deep_in_the_shipped_list_are_refused(client):
    # The whole list is in force, not just its head.
    candidates = [
        p for p in shipped_passwords()
        if 12 <= len(p) <= 256 and p.isascii() and USERNAME not in p and "lovelace" not in p
    ][-3:]
    assert len(candidates) == 3
    for password in candidates:
        response = register(client, password)
        assert (response.status_code, error_code(response)) == (422, "validation_error"), password
        assert response.get_json()["error"]["details"]["password"]


def test_password_min_length_is_configurable(make_app):
    client = make_app(PASSWORD_MIN_LENGTH=20).test_client()
    too_short = register(client, "x7#kq9!mz2pw-r8v-nt", username="first", email="first@example.com")
    assert (too_short.status_code, error_code(too_short)) == (422, "validation_error")
    assert any("20" in m for m in too_short.get_json()["error"]["details"]["password"])
    assert register(client, "x7#kq9!mz2pw-r8v-ntq").status_code == 201


def test_default_minimum_is_twelve(client):
    response = register(client, "x7#kq9!mz2p")
    assert any("12" in m for m in response.get_json()["error"]["details"]["password"])


# ---------------------------------------------------------------- the one policy check


def test_ensure_password_allowed_names_the_field(app):
    with app.app_context():
        passwords.ensure_password_allowed(PASSWORD, username=USERNAME, email=EMAIL)
        with pytest.raises(errors.ValidationFailed) as refused:
            passwords.ensure_password_allowed(
                "margaret", username=USERNAME, email=EMAIL, field="new_password"
            )
        problems = passwords.password_problems("margaret", username=USERNAME, email=EMAIL)
    assert problems and refused.value.details == {"new_password": problems}


def test_create_account_enforces_the_policy_without_a_schema(app):
    # The service is the guard: a caller that skips the schemas (the CLI, a
    # future one) still cannot create an account with a weak password.
    with app.app_context():
        with pytest.raises(errors.ValidationFailed) as refused:
            accounts.create_account(EMAIL, USERNAME, "password")
        assert "password" in refused.value.details
        assert db.session.scalar(select(User).where(User.username == USERNAME)) is None
