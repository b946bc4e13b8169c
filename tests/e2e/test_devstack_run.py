"""`python -m devstack run` (what `make run` runs) as a new user meets it, with its own embedded
PostgreSQL and Redis under a scratch instance: Ctrl-C while the demo is seeded stops everything and the
next run seeds again; a run killed outright leaves the embedded servers, which the next run reuses."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import psycopg
import pytest

from devstack.ports import free_port
from tests.conftest import ROOT, TEST_INSTANCE
from tests.e2e.test_supervisor import alive, wait_until

pytestmark = pytest.mark.slow

# Enough that seeding the demo takes seconds on this machine, so a Ctrl-C lands in the middle of it;
# a month of them, as a year's rollups alone take half a minute to build.
DEMO_TICKETS = 20_000
DEMO_DAYS = 30


@dataclass
class DevStack:
    """`python -m devstack run` processes, one after another, on one instance folder."""

    instance: Path
    port: int
    demo_tickets: int = DEMO_TICKETS
    proc: subprocess.Popen[bytes] | None = None
    log: Path | None = None
    runs: int = 0

    def start(self) -> None:
        self.runs += 1
        self.log = self.instance.parent / f"run-{self.runs}.log"
        env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "REDIS_URL", "BROKER_URL"}}
        env.update(
            INSTANCE_PATH=str(self.instance),
            PORT=str(self.port),
            DEMO_TICKETS=str(self.demo_tickets),
            DEMO_DAYS=str(DEMO_DAYS),
        )
        env.pop("JWT_SECRET_KEY", None)
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "devstack", "run"],
                cwd=ROOT,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    def output(self) -> str:
        assert self.log is not None
        return self.log.read_text(errors="replace")

    def wait_for(self, text: str, timeout: float) -> None:
        assert self.proc is not None
        wait_until(lambda: text in self.output() or self.proc.poll() is not None, timeout, repr(text))
        assert text in self.output(), self.output()

    def request(self, method: str, path: str, token: str | None = None, body: Any = None) -> tuple[int, Any]:
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(f"http://127.0.0.1:{self.port}/api/v1{path}", data=data, method=method)
        req.add_header("Content-Type", "application/json")
        if token:
            req.add_header("Authorization", f"Bearer {token}")
        try:
            with urllib.request.urlopen(req, timeout=30) as response:
                return response.status, json.loads(response.read() or b"null")
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read() or b"null")

    def wait_up(self, timeout: float = 300) -> None:
        def answers() -> bool:
            assert self.proc is not None
            assert self.proc.poll() is None, self.output()
            try:
                return self.request("GET", "/openapi.json")[0] == 200
            except OSError:
                return False

        wait_until(answers, timeout, "the web process to answer")

    def server_pids(self) -> dict[str, int]:
        """The embedded servers' pids, from their own pid files."""
        postmaster = self.instance / "postgres" / "pgdata" / "postmaster.pid"
        return {
            "postgres": int(postmaster.read_text().split()[0]),
            "redis": int((self.instance / "redis" / "redis.pid").read_text()),
        }

    def descendants(self) -> list[int]:
        assert self.proc is not None
        return [p.pid for p in psutil.Process(self.proc.pid).children(recursive=True)]

    def interrupt(self, timeout: float = 60) -> int:
        """Ctrl-C, as the terminal sends it to the foreground process; returns the exit code."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGINT)
        return self.proc.wait(timeout)


@pytest.fixture(scope="module")
def devstack() -> Iterator[DevStack]:
    # Under the project's instance/test, not pytest's temporary folders: the embedded PostgreSQL runs as
    # a user of its own when we are root, and pytest makes its folder private at each session start.
    folder = TEST_INSTANCE / f"devstack-{os.getpid()}"
    folder.mkdir(parents=True)
    stack = DevStack(folder / "instance", free_port())
    yield stack
    if stack.proc is not None and stack.proc.poll() is None:
        stack.proc.send_signal(signal.SIGINT)
        stack.proc.send_signal(signal.SIGINT)
        stack.proc.wait(60)
    env = dict(os.environ, INSTANCE_PATH=str(stack.instance))
    subprocess.run([sys.executable, "-m", "devstack", "down"], cwd=ROOT, env=env, check=False)
    shutil.rmtree(folder, ignore_errors=True)


def test_ctrl_c_while_seeding_stops_everything_and_the_next_run_seeds_again(devstack: DevStack) -> None:
    devstack.start()
    # The progress bar's label: the demo command is writing tickets.
    devstack.wait_for("seeding tickets", 300)
    servers = devstack.server_pids()
    children = devstack.descendants()
    assert children, "the demo command runs as a child"

    assert devstack.interrupt() == 130
    output = devstack.output()
    assert "Platform:" not in output, output
    assert output.rstrip().endswith("stopped."), output
    assert not (devstack.instance / "demo.json").exists()
    for pid in [*servers.values(), *children]:
        wait_until(lambda pid=pid: not alive(pid), 10, f"pid {pid} to stop")

    devstack.start()
    devstack.wait_for("seeding tickets", 300)
    devstack.wait_up()
    login = json.loads((devstack.instance / "demo.json").read_text())
    status, tokens = devstack.request(
        "POST", "/auth/login", body={"email": login["email"], "password": login["password"]}
    )
    assert status == 200, tokens
    # Every ticket of the demo, once: the interrupted run left no half-seeded organization behind.
    status, body = devstack.request(
        "GET", "/analytics/distribution/status?start=1990-01-01&end=2100-01-01", token=tokens["access_token"]
    )
    assert status == 200, body
    assert body["total"] == DEMO_TICKETS
    # The demo has a default business-hours schedule, so the business clock answers at once.
    status, schedules = devstack.request("GET", "/schedules", token=tokens["access_token"])
    assert status == 200, schedules
    assert [s["default"] for s in schedules["items"]] == [True]
    status, body = devstack.request(
        "GET",
        "/analytics/time-series/response_time?granularity=weekly&clock=business",
        token=tokens["access_token"],
    )
    assert status == 200, body
    assert body["clock"] == "business"
    database = json.loads((devstack.instance / "services.json").read_text())["database_url"]
    with psycopg.connect(database.replace("postgresql+psycopg://", "postgresql://")) as conn:
        [(organizations,)] = conn.execute("SELECT count(*) FROM organizations").fetchall()
    assert organizations == 1

    servers = devstack.server_pids()
    children = devstack.descendants()
    assert devstack.interrupt() == 0
    assert devstack.output().rstrip().endswith("stopped.")
    for pid in [*servers.values(), *children]:
        wait_until(lambda pid=pid: not alive(pid), 10, f"pid {pid} to stop")


def test_a_killed_run_leaves_the_servers_and_the_next_run_reuses_them(devstack: DevStack) -> None:
    devstack.demo_tickets = 1_000  # what is timed here is the servers' lives, not the seeding
    devstack.start()
    devstack.wait_up()
    servers = devstack.server_pids()
    children = devstack.descendants()
    assert devstack.proc is not None
    devstack.proc.kill()
    devstack.proc.wait()
    # supervisord gets SIGTERM when its parent dies and stops web, worker and beat ...
    for pid in children:
        wait_until(lambda pid=pid: not alive(pid), 40, f"pid {pid} to stop")
    # ... while the embedded servers, in sessions of their own, keep running.
    assert all(alive(pid) for pid in servers.values())

    devstack.start()
    devstack.wait_up()
    assert devstack.output().count("still running, reused") == 2, devstack.output()
    assert devstack.server_pids() == servers
    children = devstack.descendants()
    assert devstack.interrupt() == 0
    for pid in [*servers.values(), *children]:
        wait_until(lambda pid=pid: not alive(pid), 10, f"pid {pid} to stop")
