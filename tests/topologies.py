"""Real Redis topologies from the installed ``redis-server``, on loopback ports,
for test_redis_topologies.py: a Sentinel group (one primary, one replica, three
sentinels) and a Cluster (three primaries, three replicas). Each is started in
a temporary directory and killed (every process) by ``stop``."""

import shutil
import socket
import subprocess
import time
from pathlib import Path

import redis

from .servers import require_program

SERVICE = "mymaster"
# How fast the topology notices a dead primary: small, so a failover takes
# seconds in the tests (production values are an operator's choice, see
# docs/performance.md).
DOWN_AFTER_MS = 1000


def free_ports(count: int) -> list[int]:
    """Ports below 55536 whose cluster bus port (port + 10000) is free too."""
    ports = []
    for candidate in range(21000 + (time.monotonic_ns() // 1000) % 20000, 55000):
        if all(_free(port) for port in (candidate, candidate + 10000)) and candidate not in ports \
                and candidate - 10000 not in ports and candidate + 10000 not in ports:
            ports.append(candidate)
            if len(ports) == count:
                return ports
    raise RuntimeError("no free ports")


def _free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def wait_for(condition, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if condition():
                return
        except redis.RedisError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"timed out waiting for {what}")


class Topology:
    def __init__(self, base: Path):
        self.binary = require_program(shutil.which("redis-server"), "redis-server is not installed")
        self.base = base
        self.processes: dict[int, subprocess.Popen] = {}

    def spawn(self, port: int, *args: str, config: str | None = None):
        command = [self.binary] + ([config] if config else [])
        command += ["--bind", "127.0.0.1", "--port", str(port), "--save", "", "--appendonly", "no",
                    "--dir", str(self.base), *args]
        self.processes[port] = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for(lambda: redis.Redis(port=port, socket_timeout=0.5).ping(), 10, f"redis on {port}")

    def kill(self, port: int):
        """kill -9 the server on ``port``."""
        process = self.processes.pop(port)
        process.kill()
        process.wait()

    def stop(self):
        for port in list(self.processes):
            self.kill(port)

    @staticmethod
    def client(port: int) -> redis.Redis:
        return redis.Redis(port=port, decode_responses=True, socket_timeout=2)


class SentinelGroup(Topology):
    def start(self):
        self.primary, self.replica, *self.sentinels = free_ports(5)
        self.spawn(self.primary)
        self.spawn(self.replica, "--replicaof", "127.0.0.1", str(self.primary))
        for port in self.sentinels:
            config = self.base / f"sentinel-{port}.conf"
            config.write_text(
                f"sentinel monitor {SERVICE} 127.0.0.1 {self.primary} 2\n"
                f"sentinel down-after-milliseconds {SERVICE} {DOWN_AFTER_MS}\n"
                f"sentinel failover-timeout {SERVICE} 5000\n")
            self.spawn(port, "--sentinel", config=str(config))
        # Ready once every sentinel knows the replica and the other sentinels.
        wait_for(lambda: all(self._sees_all(port) for port in self.sentinels), 30, "the sentinels")
        self.url = "redis+sentinel://" + ",".join(f"127.0.0.1:{p}" for p in self.sentinels) + f"/{SERVICE}/0"
        return self

    def _sees_all(self, port: int) -> bool:
        state = self.client(port).sentinel_master(SERVICE)
        return int(state["num-slaves"]) == 1 and int(state["num-other-sentinels"]) == 2

    def primary_port(self) -> int:
        return int(self.client(self.sentinels[0]).sentinel_get_master_addr_by_name(SERVICE)[1])

    def primary_client(self) -> redis.Redis:
        return self.client(self.primary_port())


class Cluster(Topology):
    def start(self):
        ports = free_ports(6)
        for port in ports:
            self.spawn(port, "--cluster-enabled", "yes", "--cluster-config-file",
                       str(self.base / f"nodes-{port}.conf"), "--cluster-node-timeout", str(DOWN_AFTER_MS))
        subprocess.run(["redis-cli", "--cluster", "create", *(f"127.0.0.1:{p}" for p in ports),
                        "--cluster-replicas", "1", "--cluster-yes"],
                       check=True, capture_output=True, timeout=60)
        wait_for(lambda: all(self._ok(port) for port in ports), 30, "cluster_state:ok")
        self.url = "redis+cluster://" + ",".join(f"127.0.0.1:{p}" for p in ports[:2])
        return self

    def _ok(self, port: int) -> bool:
        if self.client(port).cluster("INFO").get("cluster_state") != "ok":
            return False
        # And every node agrees on who serves every slot (the replicas synced).
        return all(len(entry) == 4 for entry in self._slots(port))

    def _slots(self, port: int) -> list[list]:
        """CLUSTER SLOTS: [first, last, [host, port, id] of the primary, then of each replica]."""
        return self.client(port).execute_command("CLUSTER SLOTS")

    def primary_for(self, key: str) -> int:
        """The port of the primary that serves ``key``'s slot now."""
        port = next(iter(self.processes))
        slot = self.client(port).cluster("KEYSLOT", key)
        for first, last, primary, *_ in self._slots(port):
            if first <= slot <= last:
                return int(primary[1])
        raise RuntimeError(f"no node serves slot {slot}")
