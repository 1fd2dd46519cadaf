"""The load clients: wrk when it is installed, otherwise a bounded Python one.

Both take a ``Load`` (what to send, over how many connections) and return one
run's figures: requests, rps, p50_ms, p99_ms, errors, connections.
"""

import http.client
import json
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Load:
    """What one load run sends. ``kind`` is how each request is made:

    - ``fixed``: the same request every time;
    - ``unique``: ``body`` with ``{name}`` replaced by a name no request has
      used before (registrations);
    - ``chain``: one chain per connection, started from ``seeds`` (one token
      per connection); each response's ``refresh_token`` is the bearer token
      of that connection's next request;
    - ``queue``: every request takes the next token of ``seeds`` as its
      bearer token, whichever connection sends it (once they are all used,
      the requests carry a spent one and count as errors).
    """

    path: str
    connections: int
    method: str = "GET"
    headers: dict = field(default_factory=dict)
    body: str | None = None
    kind: str = "fixed"
    seeds: list[str] = field(default_factory=list)


def run_together(parallel: list) -> float:
    """Start every thread or process, wait for all; the seconds that took."""
    started = time.perf_counter()
    for each in parallel:
        each.start()
    for each in parallel:
        each.join()
    return time.perf_counter() - started


def _figures(requests: int, seconds: float, p50_s: float, p99_s: float, errors: int, load: Load) -> dict:
    return {"requests": requests, "rps": requests / seconds, "p50_ms": p50_s * 1000,
            "p99_ms": p99_s * 1000, "errors": errors, "connections": load.connections}


# ---------------------------------------------------------------- wrk

WRK_DONE = r'''
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCH {"requests": %d, "duration_us": %d, "p50_us": %d, "p99_us": %d, ' ..
    '"errors": {"connect": %d, "read": %d, "write": %d, "status": %d, "timeout": %d}}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    e.connect, e.read, e.write, e.status, e.timeout))
end
'''


def lua_string(value: str) -> str:
    return json.dumps(value)  # a JSON string of ASCII is a valid Lua string


def lua_table(mapping: dict) -> str:
    return "{" + ", ".join(f"[{lua_string(k)}] = {lua_string(v)}" for k, v in mapping.items()) + "}"


def lua_script(load: Load, threads: int, workdir: Path) -> str:
    headers = lua_table(load.headers)
    if load.kind == "fixed":
        body = lua_string(load.body) if load.body is not None else "nil"
        return (f"wrk.method = {lua_string(load.method)}\nwrk.path = {lua_string(load.path)}\n"
                f"wrk.headers = {headers}\nwrk.body = {body}\n" + WRK_DONE)
    if load.kind == "unique":
        # wrk runs one Lua state per thread: a thread id from setup() and a
        # counter make each name unique; the stamp, across runs.
        return f'''
local n = 0
local threads = 0
setup = function(thread) threads = threads + 1; thread:set("tid", threads) end
request = function()
  n = n + 1
  local name = string.format("b%s_%d_%d", "{time.time_ns() % 10**9}", tid, n)
  local body = string.gsub({lua_string(load.body)}, "{{name}}", name)
  return wrk.format({lua_string(load.method)}, {lua_string(load.path)}, {headers}, body)
end
''' + WRK_DONE
    if load.kind == "chain":
        # One connection per thread (see run_wrk), so one chain per thread.
        return f'''
local seeds = {{{", ".join(lua_string(s) for s in load.seeds)}}}
local threads = 0
setup = function(thread) threads = threads + 1; thread:set("token", seeds[threads]) end
request = function()
  return wrk.format({lua_string(load.method)}, {lua_string(load.path)},
                    {{["Authorization"] = "Bearer " .. token}}, nil)
end
response = function(status, headers, body)
  local t = string.match(body, '"refresh_token":%s*"([^"]+)"')
  if t then token = t end
end
''' + WRK_DONE
    if load.kind == "queue":
        # wrk runs one Lua state per thread: each takes every threads-th
        # token of the file, in order.
        queue = workdir / f"queue-{time.time_ns()}.txt"
        queue.write_text("\n".join(load.seeds) + "\n")
        return f'''
local tokens, used, threads = {{}}, 0, 0
setup = function(thread) threads = threads + 1; thread:set("tid", threads) end
init = function(args)
  local n = 0
  for line in io.lines({lua_string(str(queue))}) do
    n = n + 1
    if n % {threads} == tid % {threads} then tokens[#tokens + 1] = line end
  end
end
request = function()
  used = used + 1
  return wrk.format({lua_string(load.method)}, {lua_string(load.path)},
                    {{["Authorization"] = "Bearer " .. (tokens[used] or "spent")}}, nil)
end
''' + WRK_DONE
    raise ValueError(load.kind)


def run_wrk(url: str, load: Load, duration: int, workdir: Path) -> dict:
    threads = load.connections if load.kind == "chain" else min(2, load.connections)
    script = workdir / f"load-{time.time_ns()}.lua"
    script.write_text(lua_script(load, threads, workdir))
    out = subprocess.run(
        ["wrk", "-t", str(threads), "-c", str(load.connections), "-d", f"{duration}s",
         "--timeout", "10s", "-s", str(script), url + load.path],
        capture_output=True, text=True, timeout=duration + 60,
    )
    for line in out.stdout.splitlines():
        if line.startswith("BENCH "):
            raw = json.loads(line[len("BENCH "):])
            return _figures(raw["requests"], raw["duration_us"] / 1e6, raw["p50_us"] / 1e6,
                            raw["p99_us"] / 1e6, sum(raw["errors"].values()), load)
    raise RuntimeError(f"wrk gave no summary: {out.stdout}\n{out.stderr}")


# ---------------------------------------------------------------- python


class _Connection:
    """One load connection of the Python client: a persistent http.client
    connection, re-opened when the server closes it (sync workers do after
    every response)."""

    def __init__(self, url: str, load: Load, index: int, stamp: int, queue=None):
        self.host, port = url.split("//")[1].split(":")
        self.port = int(port)
        self.load, self.index, self.stamp, self.queue = load, index, stamp, queue
        self.token = load.seeds[index] if load.kind == "chain" else None
        self.latencies: list[float] = []
        self.errors = 0

    def request(self, n: int) -> tuple[dict, str | None]:
        headers, body = dict(self.load.headers), self.load.body
        if self.load.kind == "unique":
            body = body.replace("{name}", f"p{self.stamp}_{self.index}_{n}")
        elif self.load.kind == "chain":
            headers["Authorization"] = f"Bearer {self.token}"
        elif self.load.kind == "queue":
            headers["Authorization"] = f"Bearer {next(self.queue, 'spent')}"
        return headers, body

    def run_until(self, stop_at: float):
        conn, n = None, 0
        while time.monotonic() < stop_at:
            n += 1
            headers, body = self.request(n)
            started = time.perf_counter()
            try:
                if conn is None:
                    conn = http.client.HTTPConnection(self.host, self.port, timeout=10)
                conn.request(self.load.method, self.load.path, body=body, headers=headers)
                response = conn.getresponse()
                data = response.read()
                if response.will_close:
                    conn.close()
                    conn = None
            except (OSError, http.client.HTTPException):
                self.errors += 1
                conn = None
                continue
            self.latencies.append(time.perf_counter() - started)
            if response.status >= 400:
                self.errors += 1
            elif self.load.kind == "chain":
                self.token = json.loads(data)["refresh_token"]


class _Queue:
    """``seeds`` handed out one at a time to every connection thread."""

    def __init__(self, seeds: list[str]):
        self._seeds, self._lock = iter(seeds), threading.Lock()

    def __iter__(self):
        return self

    def __next__(self) -> str:
        with self._lock:
            return next(self._seeds)


def run_python(url: str, load: Load, duration: int, workdir: Path) -> dict:
    """One thread per connection; wrk's figures from the merged latencies."""
    stamp = time.time_ns() % 10**9
    queue = _Queue(load.seeds) if load.kind == "queue" else None
    connections = [_Connection(url, load, i, stamp, queue) for i in range(load.connections)]
    stop_at = time.monotonic() + duration
    elapsed = run_together([threading.Thread(target=c.run_until, args=(stop_at,)) for c in connections])
    merged = sorted(x for c in connections for x in c.latencies)
    if not merged:
        raise RuntimeError(f"{url}{load.path}: no request completed")
    p99 = merged[min(len(merged) - 1, int(len(merged) * 0.99))]
    return _figures(len(merged), elapsed, merged[len(merged) // 2], p99,
                    sum(c.errors for c in connections), load)


CLIENTS = {"wrk": run_wrk, "python": run_python}


def with_paced_calls(load_run, call, per_second: float, duration: int):
    """Run ``load_run()`` while ``call()`` starts ``per_second`` times a second,
    each on its own thread on schedule whether or not the one before has
    answered (a steady arrival rate, not a closed loop). Returns the load's
    figures and [(call's result, its ms)]."""
    outcomes, lock = [], threading.Lock()

    def timed_call():
        started = time.perf_counter()
        result = call()
        with lock:
            outcomes.append((result, (time.perf_counter() - started) * 1000))

    def pacer():
        # Half a second of margin at each end keeps the calls inside the load.
        start = time.monotonic() + 0.5
        fired, i = [], 0
        while (at := start + i / per_second) <= start + duration - 0.5:
            time.sleep(max(0.0, at - time.monotonic()))
            fired.append(threading.Thread(target=timed_call))
            fired[-1].start()
            i += 1
        for thread in fired:
            thread.join()

    pacing = threading.Thread(target=pacer)
    pacing.start()
    figures = load_run()
    pacing.join()
    return figures, outcomes
