"""nginx configured from deploy/nginx.conf, on free loopback ports, in front
of a real gunicorn; clients that connect from a chosen loopback address."""

import os
import re
import shutil
import socket
import subprocess
import time
from pathlib import Path

from requests.adapters import HTTPAdapter

from .servers import ROOT, free_port, require_program, stop_process

NGINX_SITE = ROOT / "deploy" / "nginx.conf"


def nginx_binary() -> str:
    found = shutil.which("nginx") or ("/usr/sbin/nginx" if os.access("/usr/sbin/nginx", os.X_OK) else None)
    return require_program(found, "nginx is not installed (apt-get install nginx; .ci/run does it)")


def self_signed_certificate(directory: Path) -> tuple[Path, Path]:
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "1", "-subj", "/CN=localhost",
         "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
        check=True, capture_output=True,
    )
    return cert, key


class Nginx:
    """nginx in the foreground with everything (pid, logs, temp files) in its
    own directory, serving deploy/nginx.conf on free loopback ports."""

    def __init__(self, directory: Path, upstream_port: int, cert: Path, key: Path, app_port: int | None = None):
        """``app_port``: where the app that the site's forward-authentication
        example protects listens (unset: nowhere, that server stays idle)."""
        self.directory = directory
        self.app_port = app_port
        self.http_port, self.https_port = free_port(), free_port()
        self.url = f"https://127.0.0.1:{self.https_port}"
        self.http_url = f"http://127.0.0.1:{self.http_port}"
        self.access_log = directory / "access.log"
        self.error_log = directory / "error.log"
        self.cert = cert
        site = self.site_config(NGINX_SITE.read_text(), upstream_port, cert, key)
        (directory / "site.conf").write_text(site)
        for temp in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"):
            (directory / temp).mkdir(mode=0o777, exist_ok=True)
            os.chmod(directory / temp, 0o777)  # workers may run as nobody
        (directory / "nginx.conf").write_text(
            f"""worker_processes 1;
pid {directory}/nginx.pid;
error_log {self.error_log} warn;
events {{ worker_connections 64; }}
http {{
    client_body_temp_path {directory}/client_body;
    proxy_temp_path {directory}/proxy;
    fastcgi_temp_path {directory}/fastcgi;
    uwsgi_temp_path {directory}/uwsgi;
    scgi_temp_path {directory}/scgi;
    include {directory}/site.conf;
}}
"""
        )
        self.process = None

    def site_config(self, text: str, upstream_port: int, cert: Path, key: Path) -> str:
        replacements = [
            ("server 127.0.0.1:8000;", f"server 127.0.0.1:{upstream_port};"),
            ("listen 80;", f"listen 127.0.0.1:{self.http_port};"),
            ("listen 443 ssl http2;", f"listen 127.0.0.1:{self.https_port} ssl http2;"),
            ("/etc/ssl/certs/api.example.com.fullchain.pem", str(cert)),
            ("/etc/ssl/private/api.example.com.key", str(key)),
            ("/var/log/nginx/authapi.access.log", str(self.access_log)),
            ("/var/log/nginx/authapi.error.log", str(self.error_log)),
            ("server_name api.example.com;", "server_name localhost;"),
            # The forward-authentication example (app.example.com).
            ("/etc/ssl/certs/app.example.com.fullchain.pem", str(cert)),
            ("/etc/ssl/private/app.example.com.key", str(key)),
            ("/var/log/nginx/app.access.log", str(self.access_log)),
            ("/var/log/nginx/app.error.log", str(self.error_log)),
        ]
        if self.app_port is not None:
            replacements.append(("server 127.0.0.1:3000;", f"server 127.0.0.1:{self.app_port};"))
        for old, new in replacements:
            assert old in text, f"deploy/nginx.conf no longer has {old!r}"
            text = text.replace(old, new)
        # No IPv6 listeners: the test binds loopback only.
        return re.sub(r"^\s*listen \[::\]:.*\n", "", text, flags=re.M)

    def start(self):
        binary = nginx_binary()
        conf = str(self.directory / "nginx.conf")
        checked = subprocess.run(
            [binary, "-t", "-p", str(self.directory), "-e", str(self.error_log), "-c", conf],
            capture_output=True, text=True,
        )
        assert checked.returncode == 0, checked.stderr
        self.process = subprocess.Popen(
            [binary, "-p", str(self.directory), "-e", str(self.error_log), "-c", conf, "-g", "daemon off;"],
            stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"nginx exited: {self.error_log.read_text()}")
            try:
                socket.create_connection(("127.0.0.1", self.https_port), timeout=0.5).close()
                return self
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError("nginx did not start in 10 s")

    def stop(self):
        stop_process(self.process, timeout=10)


class FromAddress(HTTPAdapter):
    """Connect from one loopback address (127.0.0.0/8 is all local on Linux),
    so that nginx sees different clients."""

    def __init__(self, address: str):
        self.address = address
        super().__init__()

    def init_poolmanager(self, *args, **kwargs):
        kwargs["source_address"] = (self.address, 0)
        super().init_poolmanager(*args, **kwargs)
