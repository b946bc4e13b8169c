"""Long jobs at a lower CPU priority than the requests people wait on.

A job's Python (an export writing its file) and its statements (an exact aggregation over a year,
an export's scan) can keep a CPU busy for seconds. On a machine whose CPUs the web processes share
with the worker (and with the database, when it runs here), such a job would slow every request
while it runs. So a job that is still running after a short while is demoted, as an operating
system's scheduler demotes a process that keeps using its time slices: the thread running it, and
each database backend its work runs statements on, get a higher niceness. When the CPUs are short
the web processes and the requests' backends go first and the long job takes what they leave (all
of it when they leave all of it: nothing is slower on an idle machine). A short job (a cache
refresh, a small report) ends before it would be demoted and runs at full priority throughout.

At the job's end both are put back. Where the operating system does not let this process raise a
priority again (an unprivileged user), a demoted backend's connection is closed instead of going
back to the pool, and the thread keeps the lower priority (logged once).

Where Linux schedules by autogroup (kernel.sched_autogroup_enabled), a process's niceness only ranks
it among the processes of its own session, and each session's group gets an equal share of the CPUs
against the others. PostgreSQL starts every backend in a session of its own, so there the niceness of
a backend changes nothing: the group's niceness is set too (/proc/<pid>/autogroup), for a backend that
leads its own session.

Only a backend known to be the server's own process on this machine is touched: the connection
reached the server on a loopback address or a Unix socket, and the process of that id is named
`postgres`. A server elsewhere keeps its backends' priority; its CPUs are its own to share.
"""

from __future__ import annotations

import errno
import functools
import logging
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

_LOCAL_HOSTS = ("127.0.0.1", "::1", "localhost")
_AUTOGROUP_ENABLED = Path("/proc/sys/kernel/sched_autogroup_enabled")
_warned: set[str] = set()


class Demotion:
    """One job's run: after `after` seconds its thread and its backends drop to `niceness`.

    Enter it in the thread that runs the job; `backend` registers each database connection the work
    runs on (from any point of the run). Exiting puts everything back.
    """

    def __init__(self, after: float, niceness: int) -> None:
        self.after = after
        self.niceness = niceness
        # Linux alone gives a thread a niceness of its own (setpriority on its thread id).
        self.enabled = niceness > 0 and sys.platform.startswith("linux")
        self.demoted = False
        self.ended = False
        self._thread = threading.get_native_id()
        self._thread_niceness = 0
        self._backends: dict[int, Priority] = {}  # backend pid -> its priority before the run
        self._lock = threading.Lock()

    def __enter__(self) -> Demotion:
        if self.enabled:
            self._thread_niceness = os.getpriority(os.PRIO_PROCESS, self._thread)
            _timer().arm(self, time.monotonic() + self.after)
        return self

    def __exit__(self, *exc: object) -> None:
        if not self.enabled:
            return
        _timer().disarm(self)
        with self._lock:
            # The timer may have taken this run just before the disarm: `ended` keeps it from
            # demoting a thread that has gone on to other work.
            self.ended = True
            demoted, self.demoted = self.demoted, False
        if demoted and not _set(self._thread, self._thread_niceness):
            _warn("thread", "a demoted job's worker process keeps its lower CPU priority")

    def demote(self) -> None:
        """Lower the thread and every registered backend (the timer calls this)."""
        with self._lock:
            if self.demoted or self.ended:
                return
            self.demoted = True
            _set(self._thread, max(self.niceness, self._thread_niceness))
            for pid, before in self._backends.items():
                _set_backend(pid, before.lowered(self.niceness))

    @contextmanager
    def backend(self, dbapi_connection: Any, discard: Callable[[], None]) -> Iterator[None]:
        """While the block runs, the backend of `dbapi_connection` (a psycopg connection) follows the
        job's priority; at its end it is put back, or `discard` is called (it must close the
        connection and keep its pool from handing it out again) if it cannot be."""
        pid = _local_backend(dbapi_connection) if self.enabled else None
        before = backend_priority(pid) if pid is not None else None
        if pid is None or before is None:
            yield
            return
        with self._lock:
            self._backends[pid] = before
            if self.demoted:
                _set_backend(pid, before.lowered(self.niceness))
        try:
            yield
        finally:
            with self._lock:
                del self._backends[pid]
                lowered = self.demoted
            if lowered and not _set_backend(pid, before):
                _warn("backend", "demoted database backends are closed, not pooled")
                discard()


class _Timer:
    """One thread per process that demotes each run whose time is up."""

    def __init__(self) -> None:
        self._due: dict[Demotion, float] = {}
        self._changed = threading.Condition()
        thread = threading.Thread(target=self._run, name="job-demotion", daemon=True)
        thread.start()

    def arm(self, run: Demotion, deadline: float) -> None:
        with self._changed:
            self._due[run] = deadline
            self._changed.notify()

    def disarm(self, run: Demotion) -> None:
        with self._changed:
            self._due.pop(run, None)

    def _run(self) -> None:
        while True:
            with self._changed:
                now = time.monotonic()
                due = [run for run, deadline in self._due.items() if deadline <= now]
                for run in due:
                    del self._due[run]
                if not due:
                    self._changed.wait(min(self._due.values(), default=now + 60) - now)
                    continue
            for run in due:
                run.demote()


_timers: dict[int, _Timer] = {}
_timers_lock = threading.Lock()


def _timer() -> _Timer:
    """This process's timer (a forked child starts its own: threads do not survive a fork)."""
    with _timers_lock:
        timer = _timers.get(os.getpid())
        if timer is None:
            timer = _timers[os.getpid()] = _Timer()
        return timer


def _local_backend(dbapi_connection: Any) -> int | None:
    """The process id of the connection's backend when it runs on this machine, else None."""
    info = dbapi_connection.info
    host = info.host or ""
    if not (host.startswith("/") or host in _LOCAL_HOSTS):
        return None
    pid = info.backend_pid
    try:
        is_postgres = Path(f"/proc/{pid}/comm").read_text().strip() == "postgres"
    except OSError:
        is_postgres = False
    return pid if is_postgres else None


@dataclass(frozen=True)
class Priority:
    """A backend's niceness, and its autogroup's where that group is its own (else None)."""

    niceness: int
    group: int | None

    def lowered(self, niceness: int) -> Priority:
        group = None if self.group is None else max(niceness, self.group)
        return Priority(max(niceness, self.niceness), group)


def backend_priority(pid: int) -> Priority | None:
    """What `pid` runs at now; None where it cannot be read."""
    try:
        niceness = os.getpriority(os.PRIO_PROCESS, pid)
    except OSError:
        return None
    path = _own_autogroup(pid)
    return Priority(niceness, None if path is None else _group_niceness(path))


@functools.cache
def _autogroups() -> bool:
    """Whether Linux schedules by autogroup here (read once a process)."""
    try:
        return _AUTOGROUP_ENABLED.read_text().strip() == "1"
    except OSError:
        return False


def _own_autogroup(pid: int) -> Path | None:
    """/proc/<pid>/autogroup when Linux schedules by autogroup and `pid` leads its own session (the
    group is then its alone: a session's group is made when its leader calls setsid), else None."""
    if not _autogroups():
        return None
    try:
        if os.getsid(pid) != pid:
            return None
    except OSError:
        return None
    path = Path(f"/proc/{pid}/autogroup")
    return path if path.exists() else None


def _group_niceness(path: Path) -> int | None:
    """The niceness in an autogroup file ("/autogroup-12 nice 0")."""
    try:
        return int(path.read_text().split()[-1])
    except (OSError, ValueError, IndexError):
        return None


def _set_backend(pid: int, wanted: Priority) -> bool:
    """Set a backend's niceness and its own autogroup's; False where either is refused."""
    done = _set(pid, wanted.niceness)
    # A group was read (backend_priority) only where the backend leads its own autogroup.
    if wanted.group is not None:
        path = Path(f"/proc/{pid}/autogroup")
        for attempt in (1, 2):
            try:
                path.write_text(str(wanted.group))
                break
            except OSError as exc:
                # Without CAP_SYS_ADMIN, Linux takes one autogroup change per 100 ms machine-wide.
                if exc.errno != errno.EAGAIN or attempt == 2:
                    done = False
                    break
                time.sleep(0.1)
    return done


def _set(pid: int, niceness: int) -> bool:
    """Set the niceness of process or thread `pid`; False where the system refuses it."""
    try:
        os.setpriority(os.PRIO_PROCESS, pid, niceness)
    except OSError:
        return False
    return True


def _warn(key: str, message: str) -> None:
    if key not in _warned:
        _warned.add(key)
        log.info("%s (the operating system refuses to raise a priority here)", message)
