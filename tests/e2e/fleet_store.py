"""Redis (no persistence) and webdis in front of it, on free loopback ports, from the Debian packages: the
fleet state store of `state.redis` for tests/e2e/test_fleet.py and scripts/run_fleet.py (`make run-fleet`).

webdis gets a generated config whose ACL allows only what trustgate sends (SET and EVAL), as in the README
("Running several proxies").
"""
from __future__ import annotations

import json
import subprocess
import time

import trustgate_e2e as h

WEBDIS_ACL = [{"disabled": ["*"]}, {"enabled": ["SET", "EVAL"]}]


class Store:
    """redis-server (no persistence) and webdis in front of it, both on free loopback ports."""

    def __init__(self, workdir) -> None:
        self.workdir = workdir
        self.redis_port = h.free_port()
        self.webdis_port = h.free_port()
        self.redis: subprocess.Popen | None = None
        self.webdis: subprocess.Popen | None = None

    def start_redis(self) -> None:
        self.redis = subprocess.Popen(
            ["redis-server", "--port", str(self.redis_port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(self.workdir)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        )
        self._wait(lambda: self.cli("PING") == "PONG", "redis-server")

    def start_webdis(self) -> None:
        cfg = {
            "redis_host": "127.0.0.1", "redis_port": self.redis_port,
            "http_host": "127.0.0.1", "http_port": self.webdis_port,
            "threads": 2, "pool_size": 4, "daemonize": False, "websockets": False,
            "verbosity": 3, "logfile": str(self.workdir / "webdis.log"),
            "acl": WEBDIS_ACL,
        }
        path = self.workdir / "webdis.json"
        path.write_text(json.dumps(cfg))
        self.webdis = subprocess.Popen(["webdis", str(path)], stdout=subprocess.DEVNULL,
                                       stderr=subprocess.DEVNULL, start_new_session=True)
        self._wait(self._webdis_up, "webdis")

    def _webdis_up(self) -> bool:
        try:
            return h.http_request(self.webdis_port, "/SET/tgtest:probe/1/EX/5", timeout=1).status == 200
        except OSError:
            return False

    @staticmethod
    def stop(proc: subprocess.Popen | None) -> None:
        if proc and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)

    def cli(self, *args: str) -> str:
        out = subprocess.run(["redis-cli", "-p", str(self.redis_port), *args], capture_output=True, text=True,
                             timeout=10)
        return out.stdout.strip()

    @staticmethod
    def _wait(ready, what: str) -> None:
        deadline = time.time() + 10
        while time.time() < deadline:
            if ready():
                return
            time.sleep(0.1)
        raise h.HarnessError(f"{what} did not start")
