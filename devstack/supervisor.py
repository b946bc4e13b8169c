"""Run the Procfile's processes and keep them running: what `devstack run` uses in place of honcho.

honcho (like foreman) stops every process as soon as one exits, so one killed Celery worker took web,
beat and then the embedded servers down with it. Here a process that exits while we are not stopping
is logged and started again after a backoff (1 s doubling to 30 s; back to 1 s once a run has stayed
up for 60 s), and only SIGINT, SIGTERM or SIGHUP to the supervisor stops them all.

How it works, and why:

- One thread and one selector loop. It reads every process's output pipe, and a self-pipe on which
  Python's signal machinery (`signal.set_wakeup_fd`) writes a byte for every signal, SIGCHLD
  included, so a process exiting or Ctrl-C wakes the loop at once. The loop sleeps in `select` until
  then or until the next restart is due: no polling while everything runs. (Signal handlers only
  record what arrived; threads signalling a main loop from a handler can deadlock on its locks.)
- Each process is the leader of its own process group (so Ctrl-C in the terminal reaches only the
  supervisor, which decides the order) and we only ever signal a group while its leader is not yet
  reaped: a zombie leader still holds the group id, so it cannot have been reused by anyone else.
- When a leader exits unexpectedly, whatever it leaves in its group is SIGKILLed before the restart:
  a gunicorn worker would keep the port the new master needs, and a Celery pool process cannot
  report to a dead parent anyway (late acks put its task back on the queue).
- Stopping sends SIGTERM to each leader only, not to the group: gunicorn's master and Celery's
  main process then shut their children down themselves. Celery's pool processes reset SIGTERM to
  its default action, so a group-wide SIGTERM would kill running tasks at once instead of letting
  the warm shutdown finish them. After `grace` seconds each group that is still there is SIGKILLed;
  a second Ctrl-C skips the rest of the wait.

Processes must stay in the foreground (no daemonizing), and commands are not run by a shell: a
Procfile line is split into words and may use `$PORT`, nothing else (see devstack.procfile).

`python -m devstack.supervisor [-f Procfile] [-p PORT]` runs any Procfile this way.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import selectors
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import IO, BinaryIO

from devstack.procfile import command_args, read_procfile

SYSTEM = "system"  # the name on the supervisor's own lines, as honcho printed them
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
# After the SIGKILLs, how long to wait for the kernel to finish the processes off.
KILL_WAIT = 5.0
# A line longer than this is printed in pieces rather than held in memory without bound.
MAX_LINE = 64 * 1024
COLORS = ("36", "33", "32", "35", "34", "31")  # cyan, yellow, green, magenta, blue, red


@dataclass
class _Stream:
    """The read end of one run's stdout+stderr pipe, and the unfinished last line read from it."""

    name: str
    pipe: IO[bytes]
    pending: bytes = b""
    closed: bool = False


@dataclass
class _Program:
    """One Procfile process: its command, its current run, and when and after what delay to restart it."""

    name: str
    args: list[str]
    color: str
    delay: float  # the backoff before the next restart
    proc: subprocess.Popen[bytes] | None = None
    stream: _Stream | None = None
    started_at: float = 0.0
    restart_at: float | None = None
    group_termed: bool = False  # while stopping: its group got SIGTERM after the leader left


@dataclass
class Supervisor:
    """Starts `processes` (name to argument list), restarts those that exit, stops all on a signal."""

    processes: Mapping[str, list[str]]
    env: Mapping[str, str] | None = None
    cwd: Path | None = None
    out: BinaryIO | None = None  # where prefixed lines go; sys.stdout by default
    grace: float = 25.0  # SIGTERM to SIGKILL when stopping (gunicorn's graceful_timeout is 10 s)
    backoff: float = 1.0  # the first restart delay, doubled after each quick exit ...
    backoff_max: float = 30.0  # ... up to this
    stable_after: float = 60.0  # a run that lasted this long resets the delay to `backoff`
    color: bool | None = None  # colored names; by default when `out` is a terminal
    _programs: list[_Program] = field(init=False, default_factory=list)
    _selector: selectors.BaseSelector = field(init=False, default_factory=selectors.DefaultSelector)
    _signals: list[int] = field(init=False, default_factory=list)
    _width: int = field(init=False, default=0)

    def __post_init__(self) -> None:
        if not self.processes:
            raise ValueError("no processes to run")
        if self.out is None:
            self.out = sys.stdout.buffer
        if self.color is None:
            self.color = self.out.isatty() and "NO_COLOR" not in os.environ
        self._programs = [
            _Program(name, list(args), COLORS[i % len(COLORS)], self.backoff)
            for i, (name, args) in enumerate(self.processes.items())
        ]
        self._width = max(len(name) for name in [SYSTEM, *self.processes])

    # --- the loop ---------------------------------------------------------------------------------

    def run(self) -> int:
        """Run until SIGINT, SIGTERM or SIGHUP, then stop every process; returns 0. Main thread only."""
        wake_read, wake_write = os.pipe()
        os.set_blocking(wake_read, False)
        os.set_blocking(wake_write, False)
        previous_wakeup = signal.set_wakeup_fd(wake_write, warn_on_full_buffer=False)
        # A Python-level handler is what makes a signal reach the wakeup fd; SIGCHLD's is a no-op.
        handled = (*STOP_SIGNALS, signal.SIGCHLD)
        previous = {sig: signal.signal(sig, self._on_signal) for sig in handled}
        try:
            self._selector.register(wake_read, selectors.EVENT_READ, None)
            for program in self._programs:
                self._start(program)
            while not self._signals:
                self._step(self._restart_timeout())
                self._reap_and_restart()
            self._stop()
        finally:
            self._kill_all()
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            signal.set_wakeup_fd(previous_wakeup)
            for key in list(self._selector.get_map().values()):
                if isinstance(key.data, _Stream):
                    self._close(key.data)
            self._selector.close()
            os.close(wake_read)
            os.close(wake_write)
        return 0

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        # Runs between two bytecodes of the loop: record, and let the loop act (it wakes on the fd).
        if signum != signal.SIGCHLD:
            self._signals.append(signum)

    def _step(self, timeout: float | None) -> None:
        """Wait for output, a signal or `timeout` seconds, and print the output that arrived."""
        for key, _ in self._selector.select(timeout):
            if key.data is None:
                _drain(key.fd)
            else:
                self._read(key.data)
        if self.out is not None:
            try:
                self.out.flush()
            except OSError:  # stdout went away (a closed pipe): keep supervising, silently
                self.out = None

    def _restart_timeout(self) -> float | None:
        due = [p.restart_at for p in self._programs if p.restart_at is not None]
        return max(0.0, min(due) - time.monotonic()) if due else None

    def _reap_and_restart(self) -> None:
        now = time.monotonic()
        for program in self._programs:
            proc = program.proc
            if proc is not None and _exited(proc):
                # Its leftovers first, while the unreaped leader still reserves the group id.
                _signal_group(proc.pid, signal.SIGKILL)
                code = proc.wait()
                program.proc = None
                uptime = now - program.started_at
                if uptime >= self.stable_after:
                    program.delay = self.backoff
                program.restart_at = now + program.delay
                self._log(
                    f"{program.name} (pid {proc.pid}) {_describe(code)} after {uptime:.1f} s; "
                    f"restarting in {program.delay:g} s"
                )
                program.delay = min(program.delay * 2, self.backoff_max)
            elif proc is None and program.restart_at is not None and now >= program.restart_at:
                self._start(program)

    def _start(self, program: _Program) -> None:
        program.restart_at = None
        program.started_at = time.monotonic()
        try:
            proc = subprocess.Popen(
                program.args,
                cwd=self.cwd,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                process_group=0,  # its own group: see the module docstring
            )
        except OSError as exc:
            program.restart_at = program.started_at + program.delay
            self._log(f"{program.name} could not start ({exc}); retrying in {program.delay:g} s")
            program.delay = min(program.delay * 2, self.backoff_max)
            return
        assert proc.stdout is not None
        os.set_blocking(proc.stdout.fileno(), False)
        program.proc = proc
        program.stream = _Stream(program.name, proc.stdout)
        self._selector.register(proc.stdout, selectors.EVENT_READ, program.stream)
        self._log(f"{program.name} started (pid {proc.pid}): {' '.join(program.args)}")

    # --- stopping ---------------------------------------------------------------------------------

    def _stop(self) -> None:
        self._log(
            f"{_signal_name(self._signals[0])} received: stopping every process "
            f"(SIGKILL after {self.grace:g} s; Ctrl-C again to kill now)"
        )
        for program in self._programs:
            program.restart_at = None
            if program.proc is not None and not _exited(program.proc):
                _signal(program.proc.pid, signal.SIGTERM)
        self._wait_stopped(time.monotonic() + self.grace, interruptible=True)
        for program in self._programs:
            if program.proc is not None:
                self._log(f"{program.name} (pid {program.proc.pid}) is still running: SIGKILL to its group")
                _signal_group(program.proc.pid, signal.SIGKILL)
        self._wait_stopped(time.monotonic() + KILL_WAIT)
        for program in self._programs:
            if program.proc is None:
                continue
            if _exited(program.proc):  # its output pipe is held open by a process outside its group
                self._finish(program)
            else:
                self._log(f"{program.name} (pid {program.proc.pid}) did not exit even after SIGKILL")
        if self._all_stopped():
            self._log("all processes stopped")

    def _wait_stopped(self, deadline: float, *, interruptible: bool = False) -> None:
        """Print output and reap leaders until all have stopped, `deadline`, or (if `interruptible`) a
        further stop signal."""
        signals_seen = len(self._signals)
        while not self._all_stopped() and not (interruptible and len(self._signals) > signals_seen):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            self._step(remaining)
            self._reap_stopped()

    def _all_stopped(self) -> bool:
        return all(program.proc is None for program in self._programs)

    def _reap_stopped(self) -> None:
        """Reap each leader that has exited once its group has closed its output."""
        for program in self._programs:
            proc = program.proc
            if proc is None or not _exited(proc):
                continue
            if program.stream is not None and not program.stream.closed:
                if not program.group_termed:
                    # The leader is gone and can no longer stop what it started: ask those directly.
                    program.group_termed = True
                    _signal_group(proc.pid, signal.SIGTERM)
                continue
            self._finish(program)

    def _finish(self, program: _Program) -> None:
        assert program.proc is not None
        code = program.proc.wait()
        self._log(f"{program.name} (pid {program.proc.pid}) {_describe(code)}")
        program.proc = None

    def _kill_all(self) -> None:
        """Last resort, when the loop itself failed: no process may outlive the supervisor."""
        for program in self._programs:
            if program.proc is not None and program.proc.returncode is None:
                _signal_group(program.proc.pid, signal.SIGKILL)
                program.proc.wait()

    # --- output -----------------------------------------------------------------------------------

    def _read(self, stream: _Stream) -> None:
        try:
            chunk = os.read(stream.pipe.fileno(), 65536)
        except BlockingIOError:
            return
        if not chunk:
            if stream.pending:
                self._emit(stream.name, stream.pending)
            self._close(stream)
            return
        lines = (stream.pending + chunk).split(b"\n")
        stream.pending = lines.pop()
        if len(stream.pending) > MAX_LINE:
            lines.append(stream.pending)
            stream.pending = b""
        for line in lines:
            self._emit(stream.name, line.removesuffix(b"\r"))

    def _close(self, stream: _Stream) -> None:
        self._selector.unregister(stream.pipe)
        stream.pipe.close()
        stream.closed = True

    def _log(self, message: str) -> None:
        self._emit(SYSTEM, message.encode())
        if self.out is not None:
            try:
                self.out.flush()
            except OSError:
                self.out = None

    def _emit(self, name: str, line: bytes) -> None:
        """One line as `HH:MM:SS name   | line`, the name padded to the longest."""
        if self.out is None:
            return
        prefix = f"{time.strftime('%H:%M:%S')} {name:<{self._width}} |"
        if self.color:
            color = next((p.color for p in self._programs if p.name == name), "1")
            prefix = f"\x1b[{color}m{prefix}\x1b[0m"
        try:
            self.out.write(prefix.encode() + b" " + line + b"\n")
        except OSError:
            self.out = None


# --- processes and signals ------------------------------------------------------------------------


def _exited(proc: subprocess.Popen[bytes]) -> bool:
    """Whether the process has exited, without reaping it (an unreaped leader keeps its group id)."""
    if proc.returncode is not None:
        return True
    try:
        return os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None
    except ChildProcessError:
        return True


def _signal(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)


def _signal_group(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, sig)


def _drain(fd: int) -> None:
    try:
        while os.read(fd, 4096):
            pass
    except BlockingIOError:
        pass


def _signal_name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


def _describe(code: int) -> str:
    return f"was killed by {_signal_name(-code)}" if code < 0 else f"exited with code {code}"


# --- from a Procfile ------------------------------------------------------------------------------


def procfile_processes(procfile: Path, *, port: int, env: Mapping[str, str]) -> dict[str, list[str]]:
    """The Procfile's processes as argument lists, `$PORT` filled in, programs looked up on env's PATH."""
    processes = {}
    for name, command in read_procfile(procfile).items():
        args = command_args(command, port=port)
        # Resolved here so that a missing program is reported by name (and retried) like a crash.
        args[0] = shutil.which(args[0], path=env.get("PATH")) or args[0]
        processes[name] = args
    return processes


def process_env(port: int, base: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment of every process: this interpreter's bin folder (the venv's) first on PATH, and
    PORT, the web port, in all of them (honcho gave the second process PORT+100 and so on)."""
    env = dict(os.environ if base is None else base)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["PORT"] = str(port)
    env["PYTHONUNBUFFERED"] = "1"  # a Python process's prints reach us line by line through the pipe
    return env


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devstack.supervisor", description=__doc__.split("\n")[0])
    parser.add_argument("-f", "--procfile", type=Path, default=Path("Procfile"))
    parser.add_argument("-p", "--port", type=int, default=int(os.environ.get("PORT", "8000")))
    parser.add_argument("--grace", type=float, default=25.0, help="seconds from SIGTERM to SIGKILL")
    parser.add_argument("--backoff", type=float, default=1.0, help="first restart delay, in seconds")
    parser.add_argument("--backoff-max", type=float, default=30.0, help="longest restart delay")
    parser.add_argument("--stable-after", type=float, default=60.0, help="uptime that resets the delay")
    args = parser.parse_args(argv)
    env = process_env(args.port)
    supervisor = Supervisor(
        procfile_processes(args.procfile, port=args.port, env=env),
        env=env,
        grace=args.grace,
        backoff=args.backoff,
        backoff_max=args.backoff_max,
        stable_after=args.stable_after,
    )
    return supervisor.run()


if __name__ == "__main__":
    sys.exit(main())
