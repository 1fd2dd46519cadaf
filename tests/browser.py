"""A real browser: a page served from an allowed origin, run in headless Chromium."""

import json
import re
import shutil
import subprocess
import threading
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from .servers import require_program


class PageServer:
    """Serves one HTML page on 127.0.0.1:``port`` (the origin a browser test loads)."""

    def __init__(self, html: str, port: int):
        body = html.encode()

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                self.send_response(200)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()


def run_in_chromium(url: str) -> dict:
    """Load ``url`` in headless Chromium; the JSON the page wrote into
    ``<pre id="result">``."""
    chromium = chromium_path()
    dom = subprocess.run(
        [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
         "--virtual-time-budget=15000", "--dump-dom", url],
        capture_output=True, text=True, timeout=60,
    ).stdout
    match = re.search(r'<pre id="result">(.*?)</pre>', dom, re.S)
    assert match, dom[-2000:]
    return json.loads(match.group(1).replace("&quot;", '"').replace("&amp;", "&"))


def chromium_path() -> str:
    return require_program(
        shutil.which("chromium") or shutil.which("chromium-browser"),
        "chromium is not installed (apt-get install chromium)",
    )


@contextmanager
def chromium_page():
    """A page in headless Chromium driven by Playwright over the DevTools
    protocol: clicks, forms, screenshots, and ``page.context.new_cdp_session``
    for what Playwright has no call for (WebAuthn's virtual authenticator)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium_path(),
                                             args=["--no-sandbox", "--disable-gpu"])
        try:
            yield browser.new_page()
        finally:
            browser.close()
