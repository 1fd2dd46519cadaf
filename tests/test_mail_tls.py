"""Mail over TLS (API.md §4) against a real aiosmtpd server with a throwaway CA:
STARTTLS and implicit TLS deliver when the certificate verifies; an untrusted
certificate or one for another host name gets no mail and no password; and
production refuses an SMTP login over plain text."""

import datetime
import ipaddress
import logging
import ssl
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from aiosmtpd.smtp import AuthResult
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

import config
from authapi import mail

from .conftest import ROOT, AuthActions, Inbox, free_port

SMTP_USER = "mailer"
SMTP_SECRET = "smtp-password-that-must-stay-secret"


@pytest.fixture
def database_url(sqlite_url):
    # Transport only: one database is enough.
    return sqlite_url


# ---------------------------------------------------------------- a throwaway PKI


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _certificate(subject, public_key, issuer, issuer_key, *, ca: bool, names=()):
    now = datetime.datetime.now(datetime.timezone.utc)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(_name(issuer))
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()),
            critical=False,
        )
    )
    if ca:
        builder = builder.add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False),
            critical=True,
        )
    else:
        builder = builder.add_extension(
            x509.SubjectAlternativeName(names), critical=False
        ).add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


@dataclass
class PKI:
    ca_file: Path
    local: tuple[Path, Path]  # (cert, key) for 127.0.0.1 and localhost
    elsewhere: tuple[Path, Path]  # (cert, key) for mail.example.com only


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> PKI:
    directory = tmp_path_factory.mktemp("pki")
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_cert = _certificate("authapi test CA", ca_key.public_key(), "authapi test CA", ca_key, ca=True)
    ca_file = directory / "ca.pem"
    ca_file.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))

    def leaf(stem, names):
        key = ec.generate_private_key(ec.SECP256R1())
        cert = _certificate(stem, key.public_key(), "authapi test CA", ca_key, ca=False, names=names)
        cert_file, key_file = directory / f"{stem}.pem", directory / f"{stem}.key"
        cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        key_file.write_bytes(key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ))
        return cert_file, key_file

    return PKI(
        ca_file=ca_file,
        local=leaf("local", [
            x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
        ]),
        elsewhere=leaf("elsewhere", [x509.DNSName("mail.example.com")]),
    )


# ---------------------------------------------------------------- a TLS SMTP server


class TLSInbox(Inbox):
    """An inbox that also records every login attempt: the server accepts
    AUTH even in plain text, so a client that sent its password unencrypted
    would show here."""

    def __init__(self):
        super().__init__()
        self.logins = []

    def authenticate(self, server, session, envelope, mechanism, auth_data):
        self.logins.append((mechanism, auth_data))
        return AuthResult(success=True)


@pytest.fixture
def tls_smtp(pki):
    """Start a server: ``tls_smtp("starttls" | "implicit", certificate=pki.local)``."""
    from aiosmtpd.controller import Controller

    controllers = []

    def start(mode, certificate=None):
        cert_file, key_file = certificate or pki.local
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert_file, key_file)
        inbox = TLSInbox()
        inbox.port = free_port()
        tls = {"ssl_context": context} if mode == "implicit" else {"tls_context": context}
        controller = Controller(
            inbox, hostname="127.0.0.1", port=inbox.port,
            authenticator=inbox.authenticate, auth_require_tls=False, **tls,
        )
        controller.start()
        controllers.append(controller)
        return inbox

    yield start
    for controller in controllers:
        controller.stop()


def mail_settings(inbox, mode, **extra) -> dict:
    tls = {"SMTP_SSL": "true"} if mode == "implicit" else {"SMTP_STARTTLS": "true"}
    return {
        "MAIL_BACKEND": "smtp", "SMTP_HOST": "127.0.0.1", "SMTP_PORT": inbox.port,
        "SMTP_USERNAME": SMTP_USER, "SMTP_PASSWORD": SMTP_SECRET, "SMTP_TIMEOUT": 5,
        "EMAIL_RESEND_SECONDS": 0, **tls, **extra,
    }


def register_and_settle(app) -> None:
    """Registration mails a verification link; wait until it is dealt with."""
    AuthActions(app.test_client()).register(username="ada", email="ada@example.com")
    mail.wait_for_background_jobs()


MODES = ["starttls", "implicit"]


# ---------------------------------------------------------------- delivery


@pytest.mark.parametrize("mode", MODES)
def test_tls_delivers_when_the_certificate_verifies_against_the_ca_file(
    make_app, tls_smtp, pki, mode
):
    inbox = tls_smtp(mode)
    app = make_app(**mail_settings(inbox, mode, SMTP_CA_FILE=pki.ca_file))
    register_and_settle(app)
    inbox.wait_for("ada@example.com", subject="Confirm your email address")
    assert [data.password for _, data in inbox.logins] == [SMTP_SECRET.encode()]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("problem", ["untrusted-ca", "other-host-name"])
def test_a_server_failing_verification_gets_no_mail_and_no_password(
    make_app, tls_smtp, pki, caplog, mode, problem
):
    if problem == "untrusted-ca":  # the system's CAs never signed the test CA
        inbox, extra = tls_smtp(mode), {}
    else:
        inbox, extra = tls_smtp(mode, certificate=pki.elsewhere), {"SMTP_CA_FILE": pki.ca_file}
    app = make_app(**mail_settings(inbox, mode, **extra))
    with caplog.at_level(logging.INFO, logger="authapi.mail"):
        register_and_settle(app)
    assert inbox.messages == [] and inbox.logins == []
    failures = [r.getMessage() for r in caplog.records if "email delivery failed" in r.getMessage()]
    assert len(failures) == 1 and "SSLCertVerificationError" in failures[0], failures
    logged = caplog.text
    assert SMTP_SECRET not in logged and "ada@example.com" not in logged and "token=" not in logged


def test_starttls_is_required_not_optional(make_app, smtp_server, pki, caplog):
    # A server (or a man in the middle) that does not offer STARTTLS gets
    # nothing: no fall back to plain text.
    app = make_app(**mail_settings(smtp_server, "starttls", SMTP_CA_FILE=pki.ca_file))
    with caplog.at_level(logging.ERROR, logger="authapi.mail"):
        register_and_settle(app)
    assert smtp_server.messages == []
    assert "email delivery failed: SMTPNotSupportedError" in caplog.text


# ---------------------------------------------------------------- configuration


def production_environ(tmp_path, **settings) -> dict:
    return {
        "AUTHAPI_ENV": "production", "SECRET_KEY": "s" * 40, "JWT_SECRET_KEY": "j" * 40,
        "DATABASE_URL": f"sqlite:///{tmp_path / 'prod.db'}", "REDIS_URL": "redis://127.0.0.1:6379/15",
        "MAIL_BACKEND": "smtp", **{k: str(v) for k, v in settings.items()},
    }


def test_production_refuses_an_smtp_login_in_plain_text_with_one_line(tmp_path):
    env = {"PATH": "/usr/bin:/bin", **production_environ(tmp_path, SMTP_USERNAME=SMTP_USER,
                                                         SMTP_PASSWORD=SMTP_SECRET)}
    result = subprocess.run(
        [sys.executable, "-c", "import wsgi"], cwd=ROOT, env=env,
        capture_output=True, text=True, timeout=60,
    )
    assert result.returncode != 0
    assert result.stderr.strip().splitlines() == [
        "authapi: configuration error: SMTP_USERNAME is set but neither SMTP_STARTTLS nor "
        "SMTP_SSL is on: production refuses to send the SMTP password in plain text"
    ]


@pytest.mark.parametrize("tls", [{"SMTP_STARTTLS": "true"}, {"SMTP_SSL": "true"}, {}])
def test_production_accepts_an_smtp_login_over_tls_and_no_login_at_all(tmp_path, tls):
    login = {"SMTP_USERNAME": SMTP_USER} if tls else {}
    loaded = config.load_config(environ=production_environ(tmp_path, **login, **tls))
    assert loaded.SMTP_USERNAME == login.get("SMTP_USERNAME")


def test_starttls_and_implicit_tls_together_are_refused(tmp_path):
    environ = production_environ(tmp_path, SMTP_STARTTLS="true", SMTP_SSL="true")
    with pytest.raises(config.ConfigError, match="SMTP_SSL"):
        config.load_config(environ=environ)


def test_an_unreadable_ca_file_is_refused(tmp_path):
    environ = production_environ(tmp_path, SMTP_CA_FILE=tmp_path / "missing.pem")
    with pytest.raises(config.ConfigError, match="SMTP_CA_FILE"):
        config.load_config(environ=environ)
