"""A job still running after a short while yields the CPUs: its thread and its database backends
drop to a lower priority, and get it back when it ends (webapp/infra/priority.py).

The test servers are processes of this machine (the embedded PostgreSQL), so the backend serving a
connection can be looked at with the operating system's own priority call. The whole platform on a
real worker is in test_job_platform.py (test_a_long_job_yields_the_cpus_and_gets_them_back).
"""

from __future__ import annotations

import os
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from flask import Flask

from webapp.infra import priority

AUTOGROUP = Path("/proc/sys/kernel/sched_autogroup_enabled")

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="thread priorities are Linux's")


def _niceness(pid: int) -> int:
    return os.getpriority(os.PRIO_PROCESS, pid)


def _until(check: Any, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def _in_thread(body: Any) -> None:
    """Run `body` in a thread of its own (the test's own thread keeps its priority) and re-raise."""
    failures: list[BaseException] = []

    def run() -> None:
        try:
            body()
        except BaseException as exc:
            failures.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    thread.join(30)
    if failures:
        raise failures[0]


def _group_niceness(pid: int) -> int | None:
    """The niceness of the autogroup `pid` leads, read from /proc; None where there is none."""
    if os.getsid(pid) != pid or AUTOGROUP.read_text().strip() != "1":
        return None
    return int(Path(f"/proc/{pid}/autogroup").read_text().split()[-1])


def test_a_long_run_is_demoted_and_put_back(base_app: Flask) -> None:
    engine = base_app.extensions["db_engine"]

    def body() -> None:
        me = threading.get_native_id()
        with engine.connect() as conn:
            raw = conn.connection.dbapi_connection
            backend = raw.info.backend_pid
            with priority.Demotion(0.05, 10) as run, run.backend(raw, conn.invalidate):
                assert (_niceness(me), _niceness(backend)) == (0, 0)
                _until(lambda: run.demoted)
                assert (_niceness(me), _niceness(backend)) == (10, 10)
            assert _niceness(me) == 0
            # Back at its priority before the pool has it again (or dropped, where it cannot be).
            assert conn.invalidated or _niceness(backend) == 0

    _in_thread(body)


@pytest.mark.skipif(
    not AUTOGROUP.exists() or AUTOGROUP.read_text().strip() != "1",
    reason="Linux schedules by autogroup here only",
)
def test_under_autogroups_a_backends_own_group_is_demoted_too(base_app: Flask) -> None:
    # PostgreSQL puts each backend in a session, so an autogroup, of its own: its niceness alone
    # would rank it only against itself, and the group's niceness is what yields the CPUs.
    engine = base_app.extensions["db_engine"]

    def body() -> None:
        with engine.connect() as conn:
            raw = conn.connection.dbapi_connection
            backend = raw.info.backend_pid
            assert _group_niceness(backend) == 0
            with priority.Demotion(0.0, 10) as run, run.backend(raw, conn.invalidate):
                _until(lambda: run.demoted)
                assert _group_niceness(backend) == 10
            assert conn.invalidated or _group_niceness(backend) == 0

    _in_thread(body)


def test_a_process_in_a_shared_session_keeps_its_groups_priority() -> None:
    # Its autogroup is its session's: setting that group's niceness would demote every process of it.
    if os.getsid(0) == os.getpid():
        pytest.skip("this process leads its session")
    assert priority.backend_priority(os.getpid()) == priority.Priority(_niceness(os.getpid()), None)


def test_a_backend_registered_after_the_demotion_is_lowered_at_once(base_app: Flask) -> None:
    engine = base_app.extensions["db_engine"]

    def body() -> None:
        with priority.Demotion(0.0, 7) as run:
            _until(lambda: run.demoted)
            with engine.connect() as conn:
                raw = conn.connection.dbapi_connection
                with run.backend(raw, conn.invalidate):
                    assert _niceness(raw.info.backend_pid) == 7
                assert conn.invalidated or _niceness(raw.info.backend_pid) == 0

    _in_thread(body)


def test_a_short_run_keeps_its_priority(base_app: Flask) -> None:
    engine = base_app.extensions["db_engine"]

    def body() -> None:
        with engine.connect() as conn:
            raw = conn.connection.dbapi_connection
            with priority.Demotion(5.0, 10) as run, run.backend(raw, conn.invalidate):
                time.sleep(0.05)
            assert not run.demoted
            assert _niceness(threading.get_native_id()) == 0
            assert _niceness(raw.info.backend_pid) == 0

    _in_thread(body)


def test_niceness_zero_never_demotes() -> None:
    def body() -> None:
        with priority.Demotion(0.0, 0) as run:
            time.sleep(0.05)
            assert not run.demoted
            assert _niceness(threading.get_native_id()) == 0

    _in_thread(body)


def test_a_process_not_the_servers_is_never_reniced() -> None:
    # The guard against a server elsewhere whose backend id names some process of this machine.
    class Info:
        host = "127.0.0.1"
        backend_pid = os.getpid()

    class Connection:
        info = Info()

    assert priority._local_backend(Connection()) is None
    Info.host, Info.backend_pid = "db.example.com", 1
    assert priority._local_backend(Connection()) is None


def test_a_run_that_ended_is_never_demoted_late() -> None:
    # The timer may take a run just before it ends: the demotion that follows must not touch a
    # thread that has gone on to other work.
    def body() -> None:
        me = threading.get_native_id()
        with priority.Demotion(60.0, 10) as run:
            pass
        run.demote()  # as the timer would, having taken the run just before its end
        assert not run.demoted
        assert _niceness(me) == 0

    _in_thread(body)


def test_a_backend_that_cannot_be_put_back_is_dropped_from_the_pool(base_app: Flask, monkeypatch) -> None:
    # As for an unprivileged user, whom the system lets lower a priority but not raise it again.
    lower_only = priority._set
    monkeypatch.setattr(priority, "_set", lambda pid, niceness: niceness > 0 and lower_only(pid, niceness))
    engine = base_app.extensions["db_engine"]

    def body() -> None:
        with engine.connect() as conn:
            raw = conn.connection.dbapi_connection
            backend = raw.info.backend_pid
            with priority.Demotion(0.0, 10) as run, run.backend(raw, conn.invalidate):
                _until(lambda: run.demoted)
                assert _niceness(backend) == 10
            assert conn.invalidated  # closed; the pool opens a new connection in its place
            assert raw.closed
        with engine.connect() as fresh:
            assert _niceness(fresh.connection.dbapi_connection.info.backend_pid) == 0

    _in_thread(body)


def test_a_backend_goes_back_to_the_priority_it_had(base_app: Flask) -> None:
    # A server started at a niceness of its own keeps it: the run puts back what it found.
    engine = base_app.extensions["db_engine"]

    def body() -> None:
        with engine.connect() as conn:
            raw = conn.connection.dbapi_connection
            backend = raw.info.backend_pid
            os.setpriority(os.PRIO_PROCESS, backend, 3)
            try:
                with priority.Demotion(0.0, 10) as run, run.backend(raw, conn.invalidate):
                    _until(lambda: run.demoted)
                    assert _niceness(backend) == 10
                assert conn.invalidated or _niceness(backend) == 3
            finally:
                conn.invalidate()  # not back to the pool at niceness 3

    _in_thread(body)
