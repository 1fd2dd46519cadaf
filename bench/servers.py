"""The processes a bench run serves from: a private PostgreSQL cluster, a
private redis-server, an SMTP sink and the gunicorn servers, all stopped again
at the end."""

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import requests
import sqlalchemy as sa

ROOT = Path(__file__).resolve().parent.parent
APPS = ROOT / "bench" / "apps"
PYTHON = sys.executable
# A server of the operator's instead of the bench's own cluster.
PG_ADMIN_URL = os.environ.get("BENCH_PG_ADMIN_URL")
PG_DATABASE = os.environ.get("BENCH_PG_DATABASE", "authapi_bench")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(check, what: str, timeout: float = 30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except Exception:
            pass  # not up yet: connection refused, a worker still booting
        time.sleep(0.2)
    raise SystemExit(f"bench: {what} did not come up in {timeout:.0f} s")


class Processes:
    """Everything the bench starts, stopped in reverse order at the end."""

    def __init__(self, workdir: Path):
        self.workdir = workdir
        self.started: list[tuple[subprocess.Popen, int]] = []

    def start(self, name: str, args: list[str], stop_signal=signal.SIGTERM, **kwargs) -> subprocess.Popen:
        log = open(self.workdir / f"{name}.log", "w")
        process = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT,
                                   start_new_session=True, **kwargs)
        log.close()
        self.started.append((process, stop_signal))
        return process

    def stop(self, process: subprocess.Popen, sig=signal.SIGTERM):
        if process.poll() is None:
            process.send_signal(sig)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    def stop_all(self):
        for process, stop_signal in reversed(self.started):
            self.stop(process, stop_signal)


def postgres_bin() -> Path | None:
    """The directory holding initdb and pg_ctl, if PostgreSQL's programs are here."""
    found = shutil.which("initdb")
    candidates = [Path(found).resolve().parent] if found else []
    candidates += sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)
    return next((d for d in candidates if (d / "initdb").exists() and (d / "pg_ctl").exists()), None)


def start_postgres(procs: Processes) -> str:
    """A PostgreSQL cluster of the bench's own (initdb in the work directory,
    a free port, the server's default settings, fsync included) with
    pg_stat_statements loaded, so the bench can count the statements each
    request sends; its admin URL. BENCH_PG_ADMIN_URL names another server
    instead (then statements are counted only if it loads pg_stat_statements)."""
    if PG_ADMIN_URL:
        return PG_ADMIN_URL
    bin_dir = postgres_bin()
    if bin_dir is None:
        raise SystemExit("bench: initdb and pg_ctl not found; set BENCH_PG_ADMIN_URL")
    base = procs.workdir / "postgres"
    base.mkdir()
    # PostgreSQL refuses to run as root: then as the postgres user, started
    # as such (not through runuser, which would not pass the stop signal on).
    user = "postgres" if os.geteuid() == 0 else None
    if user:
        shutil.chown(procs.workdir, user)
        shutil.chown(base, user)
    subprocess.run([str(bin_dir / "initdb"), "-D", str(base / "data"), "-A", "trust", "-U", "postgres"],
                   check=True, capture_output=True, user=user)
    port = free_port()
    process = procs.start("postgres", [
        str(bin_dir / "postgres"), "-D", str(base / "data"), "-p", str(port), "-k", str(base),
        "-c", "listen_addresses=127.0.0.1", "-c", "shared_preload_libraries=pg_stat_statements",
    ], stop_signal=signal.SIGINT, user=user)  # SIGINT: a fast shutdown, not waiting for idle clients
    url = f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres"
    engine = sa.create_engine(url)
    wait_for(lambda: process.poll() is None and engine.connect().close() is None, "PostgreSQL")
    engine.dispose()
    return url


def fresh_database(admin_url: str) -> str:
    engine = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{PG_DATABASE}" WITH (FORCE)'))
        conn.execute(sa.text(f'CREATE DATABASE "{PG_DATABASE}"'))
    engine.dispose()
    return admin_url.rsplit("/", 1)[0] + "/" + PG_DATABASE


def start_redis(procs: Processes) -> str:
    if os.environ.get("BENCH_REDIS_URL"):
        return os.environ["BENCH_REDIS_URL"]
    if not shutil.which("redis-server"):
        raise SystemExit("bench: redis-server is not installed; set BENCH_REDIS_URL")
    port = free_port()
    procs.start("redis", ["redis-server", "--bind", "127.0.0.1", "--port", str(port),
                          "--save", "", "--appendonly", "no"])
    import redis

    wait_for(lambda: redis.Redis(port=port).ping(), "redis-server")
    return f"redis://127.0.0.1:{port}/0"


def start_smtp_sink():
    """Registration sends a verification email: to a local sink, as a
    deployment would to its relay."""
    from aiosmtpd.controller import Controller

    class Discard:
        async def handle_DATA(self, server, session, envelope):
            return "250 OK"

    port = free_port()
    controller = Controller(Discard(), hostname="127.0.0.1", port=port)
    controller.start()
    return controller, port


def app_env(database_url: str, redis_url: str, smtp_port: int) -> dict:
    """authapi as deployed (production settings, argon2-cffi's default
    parameters, WEB_CONCURRENCY=2) with rate limits off, so the bench measures
    the work and not the limiter's refusals."""
    env = {
        **os.environ,
        "AUTHAPI_ENV": "production",
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "SECRET_KEY": "bench-secret-key-" + "s" * 32,
        "JWT_SECRET_KEY": "bench-jwt-secret-key-" + "j" * 32,
        "RATELIMIT_ENABLED": "false",
        "MAIL_BACKEND": "smtp",
        "SMTP_HOST": "127.0.0.1",
        "SMTP_PORT": str(smtp_port),
        "WEB_CONCURRENCY": "2",
    }
    for name in ("ARGON2_TIME_COST", "ARGON2_MEMORY_COST", "ARGON2_PARALLELISM", "PROMETHEUS_MULTIPROC_DIR"):
        env.pop(name, None)
    return env


@contextlib.contextmanager
def backing_services(procs: Processes):
    """PostgreSQL with a fresh, migrated database, Redis and the SMTP sink;
    yields the environment authapi's servers run with."""
    smtp = None
    try:
        database_url = fresh_database(start_postgres(procs))
        redis_url = start_redis(procs)
        smtp, smtp_port = start_smtp_sink()
        env = app_env(database_url, redis_url, smtp_port)
        subprocess.run([PYTHON, "-m", "flask", "--app", "wsgi", "db", "upgrade"], cwd=ROOT, env=env,
                       check=True, capture_output=True)
        yield env
    finally:
        procs.stop_all()
        if smtp:
            smtp.stop()


@dataclass
class Server:
    """One gunicorn as it runs: what it serves and with how many workers of
    which class, counted from its processes rather than assumed."""

    process: subprocess.Popen
    url: str
    worker_class: str

    def worker_pids(self) -> list[int]:
        pid = self.process.pid
        return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]

    def worker_rss_mb(self) -> list[float]:
        sizes = []
        for pid in self.worker_pids():
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    sizes.append(round(int(line.split()[1]) / 1024, 1))
        return sizes


def start_gunicorn(procs: Processes, name: str, app_spec: str, env: dict, worker_class: str,
                   in_apps: bool = False) -> Server:
    """Serve ``app_spec`` with the repository's gunicorn.conf.py; ``in_apps``
    serves one of bench/apps/ (which import authapi, hence the pythonpath)."""
    port = free_port()
    args = [PYTHON, "-m", "gunicorn", "-c", str(ROOT / "gunicorn.conf.py"), app_spec,
            "--bind", f"127.0.0.1:{port}", "--worker-class", worker_class]
    if worker_class == "sync":
        # gunicorn silently turns "sync" into gthread when threads > 1, and
        # gunicorn.conf.py sets 4.
        args += ["--threads", "1"]
    if in_apps:
        args += ["--chdir", str(APPS), "--pythonpath", str(ROOT)]
    process = procs.start(name, args, cwd=ROOT, env=env)
    url = f"http://127.0.0.1:{port}"
    wait_for(lambda: process.poll() is None and requests.get(url + "/", timeout=1) is not None,
             f"gunicorn {name}")
    # preload_app: the master forks every worker at once after loading the
    # app, so once one answers, all of them exist.
    return Server(process, url, worker_class)
