"""Child processes of the dev stack that stop when we do: Ctrl-C passed on, and a signal if we die."""

from __future__ import annotations

import contextlib
import ctypes
import os
import resource
import shlex
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from types import FrameType

PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>
PR_SET_CHILD_SUBREAPER = 36
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class StepFailed(RuntimeError):
    """A one-off command exited with an error (it has said why on stderr)."""


def die_with_parent(sig: int) -> Callable[[], None] | None:
    """A preexec_fn asking Linux to send the child `sig` when we die, even by SIGKILL (None elsewhere)."""
    if not sys.platform.startswith("linux"):
        return None
    libc = ctypes.CDLL(None, use_errno=True)
    parent = os.getpid()

    def arrange() -> None:
        libc.prctl(PR_SET_PDEATHSIG, sig)
        if os.getppid() != parent:  # we died before the request was made
            os.kill(os.getpid(), sig)

    return arrange


def become_subreaper() -> None:
    """Adopt our descendants whose parent dies (Linux), instead of leaving them to init."""
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1)


def raise_open_files_limit() -> int:
    """Lift our soft limit of open files to the hard limit, for every process we start (a web worker
    holds a socket per open dashboard; the usual soft limit of 1024 would cap it far below that)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        return hard
    return soft


def _raise_interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


@contextlib.contextmanager
def interrupts_raise() -> Iterator[None]:
    """SIGTERM and SIGHUP raise KeyboardInterrupt too, so that every stop takes Ctrl-C's path."""
    previous = {sig: signal.signal(sig, _raise_interrupt) for sig in STOP_SIGNALS}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


@contextlib.contextmanager
def interrupts_ignored() -> Iterator[None]:
    """No stop signal interrupts what runs inside (stopping the embedded servers, say)."""
    previous = {sig: signal.signal(sig, signal.SIG_IGN) for sig in STOP_SIGNALS}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def run_step(args: list[str], *, cwd: str | os.PathLike[str] | None = None, capture: bool = False) -> str:
    """Run a one-off command to its end and return its output when `capture`.

    It runs in a process group of its own, so a Ctrl-C in the terminal reaches only us; we pass it on
    as SIGINT (a Python child unwinds, and PostgreSQL rolls its transaction back), SIGKILL it if it has
    not stopped after 10 s or at a second Ctrl-C, and raise KeyboardInterrupt once it is gone.
    """
    proc = subprocess.Popen(
        args,
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE if capture else None,
        text=True,
        process_group=0,
        preexec_fn=die_with_parent(signal.SIGINT),
    )
    try:
        output, _ = proc.communicate()
    except KeyboardInterrupt:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(10)
        except (KeyboardInterrupt, subprocess.TimeoutExpired):
            proc.kill()
            proc.wait()
        raise
    if proc.returncode != 0:
        raise StepFailed(f"`{shlex.join(args)}` exited with code {proc.returncode}")
    return output or ""
