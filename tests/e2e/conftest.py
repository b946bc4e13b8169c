"""The real web process under gunicorn (gevent workers, as the Procfile says), against the test services."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from devstack.ports import free_port, port_open
from tests.conftest import ROOT, TEST_INSTANCE, process_env

# Short, so a test sees the server's keepalive ping quickly (webapp/config.py reads WS_PING_INTERVAL).
PING_INTERVAL = 3


@dataclass
class Web:
    base_url: str
    port: int
    log_path: Path
    log_start: int

    def answers(self) -> bool:
        try:
            return self.request("GET", "/api/v1/openapi.json")[0] == 200
        except OSError:
            return False

    def log_text(self) -> str:
        """What the web process has logged during this run."""
        with self.log_path.open("rb") as log:
            log.seek(self.log_start)
            return log.read().decode(errors="replace")

    def request(self, method: str, path: str, token: str | None = None, body: Any = None) -> tuple[int, Any]:
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.base_url + path, data=data, method=method)
        if token:
            req.add_header("Authorization", f"Bearer {token}")
        if data is not None:
            req.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(req, timeout=30) as response:
                return response.status, json.loads(response.read() or b"null")
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read() or b"null")


@pytest.fixture(scope="session")
def web_server(services, celery_worker) -> Iterator[Web]:
    """gunicorn serving create_app() on a free loopback port."""
    port = free_port()
    env = process_env(services, WS_PING_INTERVAL=str(PING_INTERVAL))
    log_path = TEST_INSTANCE / "web.log"
    with open(log_path, "ab") as log:
        # Tests read back this run's part only (e.g. to prove a token never reached a log line).
        log_start = log.tell()
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "gunicorn",
                "--config",
                str(ROOT / "gunicorn.conf.py"),
                "--bind",
                f"127.0.0.1:{port}",
                "--workers",
                "2",
                # A socket a failed test left open would otherwise hold the shutdown for 10 s.
                "--graceful-timeout",
                "2",
                "webapp:create_app()",
            ],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    web = Web(f"http://127.0.0.1:{port}", port, log_path, log_start)
    deadline = time.monotonic() + 60
    # Ready once a worker answers (the port opens before the workers have loaded the app).
    while not (port_open(port) and web.answers()):
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError(f"gunicorn did not start; see {log_path}")
        time.sleep(0.1)
    yield web
    proc.terminate()
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
