"""The Procfile's processes under supervisord: restarted with backoff when they exit, stopped on Ctrl-C.

supervisord does the supervising; this module writes its configuration from the Procfile and stands
between it and the terminal:

- Every program is started again when it exits. One that exits within `stable_after` seconds of its
  start waits 1 s, then 2 s, 3 s ... before the next start (supervisord's backoff), and after
  `retries` such exits in a row supervisord gives up on it (FATAL); one that ran longer starts again
  at once. The others keep running meanwhile.
- Stopping sends SIGTERM to each program's main process only (gunicorn's master and Celery's main
  process stop their own children: Celery's pool processes must not get SIGTERM, or running tasks
  die instead of finishing), and SIGKILL to the program's whole process group after `grace` s.
- What a dead program leaves behind (a worker of a killed gunicorn master, a Celery pool process)
  comes to us, the child subreaper, and is killed: it may hold the port the restarted program needs.
- supervisord runs in a process group of its own, so Ctrl-C reaches only us: the first one (or
  SIGTERM, SIGHUP) asks it to stop everything; a second one SIGKILLs every program's group at once.
  If we are killed outright, the kernel sends supervisord SIGTERM (Linux's parent-death signal), and
  the next run waits for any supervisord still named in instance/supervisord.pid.
- Each line a program prints comes out as `HH:MM:SS name | line` (devstack.logprefix, an event
  listener of supervisord); supervisord's own lines (spawned, exited, killing) are left as they are.
"""

from __future__ import annotations

import contextlib
import getpass
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import psutil

from devstack.children import become_subreaper, die_with_parent, interrupts_raise, raise_open_files_limit
from devstack.procfile import command_args, read_procfile

GROUP = "platform"  # every program in one supervisord group, so that all are stopped at once
LISTENER = "output"
LISTENER_MODULE = "devstack.logprefix"
# Beyond supervisord's own SIGKILL deadline, how long we wait before SIGKILLing what is left ourselves.
STOP_MARGIN = 15.0


@dataclass(frozen=True)
class Policy:
    """How programs are restarted and stopped."""

    grace: float = 25.0  # SIGTERM to SIGKILL (gunicorn's graceful_timeout is 10 s; Celery finishes tasks)
    stable_after: int = 60  # a run this long resets the backoff; shorter ones wait 1 s, 2 s, ... first
    retries: int = 60  # quick exits in a row before supervisord gives up on a program


def procfile_processes(procfile: Path, *, port: int, env: Mapping[str, str]) -> dict[str, list[str]]:
    """The Procfile's processes as argument lists, `$PORT` filled in, programs found on env's PATH."""
    processes = {}
    for name, command in read_procfile(procfile).items():
        args = command_args(command, port=port)
        args[0] = shutil.which(args[0], path=env.get("PATH")) or args[0]
        processes[name] = args
    return processes


def process_env(port: int) -> dict[str, str]:
    """Our environment for every process, with this interpreter's bin folder (the venv's) first on
    PATH, PORT, the web port, LOCAL_BASE_URL, the web's address on this machine (links sent out of
    the platform are absolute on it when PUBLIC_BASE_URL is not set), and unbuffered Python output, so
    lines arrive as they are printed."""
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["PORT"] = str(port)
    env["LOCAL_BASE_URL"] = f"http://127.0.0.1:{port}"
    env["PYTHONUNBUFFERED"] = "1"
    return env


def _ini(value: str) -> str:
    # supervisord expands %(name)s in its configuration: a literal % is written %%.
    return value.replace("%", "%%")


def supervisord_conf(
    processes: Mapping[str, list[str]], *, instance: Path, cwd: Path, policy: Policy, color: bool
) -> str:
    """supervisord's configuration for `processes`, its pid file under `instance`."""
    names = list(processes)
    listener = [sys.executable, "-m", LISTENER_MODULE, *(["--color"] if color else []), *names]
    lines = [
        "[supervisord]",
        "nodaemon = true",
        # Its own lines go to stdout (nodaemon), not to a file as well.
        "logfile = /dev/null",
        "logfile_maxbytes = 0",
        f"pidfile = {_ini(str(instance / 'supervisord.pid'))}",
        f"directory = {_ini(str(cwd))}",
    ]
    if os.geteuid() == 0:
        # Run as root on purpose (the embedded PostgreSQL switches to a user of its own): say so, or
        # supervisord warns that it kept its privileges.
        lines.append(f"user = {_ini(getpass.getuser())}")
    lines += [
        "",
        f"[group:{GROUP}]",
        f"programs = {','.join(names)}",
    ]
    for name, args in processes.items():
        lines += [
            "",
            f"[program:{name}]",
            f"command = {_ini(shlex.join(args))}",
            f"directory = {_ini(str(cwd))}",
            "autorestart = true",
            f"startsecs = {policy.stable_after}",
            f"startretries = {policy.retries}",
            "stopsignal = TERM",
            f"stopwaitsecs = {policy.grace:g}",
            "stopasgroup = false",
            "killasgroup = true",
            "redirect_stderr = true",
            "stdout_logfile = NONE",
            "stdout_events_enabled = true",
        ]
    lines += [
        "",
        f"[eventlistener:{LISTENER}]",
        f"command = {_ini(shlex.join(listener))}",
        "events = PROCESS_LOG, PROCESS_STATE_EXITED",
        # Events wait here while the listener prints; overflowing ones would be dropped.
        "buffer_size = 10000",
        # The listener prints on stderr (its stdout speaks the event protocol): straight to ours.
        "stderr_logfile = /dev/stdout",
        "stderr_logfile_maxbytes = 0",
        "stdout_logfile = NONE",
        # Stopped last: the programs' final lines pass through it.
        "priority = 1",
    ]
    return "\n".join(lines) + "\n"


def stop_leftover(instance: Path, timeout: float) -> bool:
    """Stop a supervisord that a killed run left for this instance; whether there was one."""
    pid_file = instance / "supervisord.pid"
    try:
        process = psutil.Process(int(pid_file.read_text()))
        if not any("supervisord" in part for part in process.cmdline()):
            return False
    except (FileNotFoundError, ValueError, psutil.Error):
        return False
    print(f"stopping the processes of an earlier run (supervisord, pid {process.pid})", flush=True)
    with contextlib.suppress(psutil.Error):
        process.terminate()
        process.wait(timeout)
    return True


def _kill_programs(supervisord: subprocess.Popen[bytes]) -> None:
    # Each program leads its own process group (supervisord makes it so), which holds its children.
    # The output listener is spared: it prints the programs' exits, and supervisord stops it last.
    with contextlib.suppress(psutil.Error):
        for child in psutil.Process(supervisord.pid).children():
            with contextlib.suppress(psutil.Error):
                if LISTENER_MODULE in child.cmdline():
                    continue
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(child.pid, signal.SIGKILL)


def _kill_orphans(supervisord: subprocess.Popen[bytes]) -> None:
    # As the subreaper we adopt what a dead program left (a pool process, a worker of a killed master):
    # it has no business outliving it, and it may hold the port the restarted program needs.
    for child in psutil.Process().children():
        if child.pid == supervisord.pid:
            continue
        with contextlib.suppress(psutil.Error):
            child.kill()
        with contextlib.suppress(ChildProcessError):
            os.waitpid(child.pid, os.WNOHANG)


def _wait(supervisord: subprocess.Popen[bytes], timeout: float) -> int | None:
    """supervisord's exit code once it has exited, else None after `timeout` s; orphans killed meanwhile."""
    try:
        return supervisord.wait(timeout)
    except subprocess.TimeoutExpired:
        return None
    finally:
        _kill_orphans(supervisord)


def run(
    processes: Mapping[str, list[str]],
    *,
    instance: Path,
    cwd: Path,
    env: Mapping[str, str],
    policy: Policy | None = None,
) -> int:
    """Run `processes` under supervisord until Ctrl-C, SIGTERM or SIGHUP, then stop them all."""
    if not processes:
        raise ValueError("no processes to run")
    policy = policy or Policy()
    instance.mkdir(parents=True, exist_ok=True)
    stop_leftover(instance, policy.grace + STOP_MARGIN)
    conf = instance / "supervisord.conf"
    color = sys.stdout.isatty() and "NO_COLOR" not in env
    conf.write_text(supervisord_conf(processes, instance=instance, cwd=cwd, policy=policy, color=color))
    sys.stdout.flush()
    become_subreaper()
    raise_open_files_limit()  # supervisord and the processes inherit it
    supervisord = subprocess.Popen(
        [sys.executable, "-m", "supervisor.supervisord", "-c", str(conf)],
        cwd=cwd,
        env=dict(env),
        stdin=subprocess.DEVNULL,
        process_group=0,
        preexec_fn=die_with_parent(signal.SIGTERM),
    )
    with interrupts_raise():
        try:
            while (code := _wait(supervisord, 1.0)) is None:
                pass
            return code
        except KeyboardInterrupt:
            _stop(supervisord, policy.grace)
    return 0


def _stop(supervisord: subprocess.Popen[bytes], grace: float) -> None:
    """Ask supervisord to stop every program; SIGKILL them all at a second Ctrl-C, or if it is still
    there well after its own SIGKILL deadline."""
    supervisord.send_signal(signal.SIGTERM)
    print(f"\nstopping (SIGKILL after {grace:g} s; Ctrl-C again to kill now)", flush=True)
    deadline = time.monotonic() + grace + STOP_MARGIN
    with contextlib.suppress(KeyboardInterrupt):
        while supervisord.poll() is None and time.monotonic() < deadline:
            _wait(supervisord, 1.0)
    if supervisord.poll() is None:
        _kill_programs(supervisord)
        with contextlib.suppress(KeyboardInterrupt):
            _wait(supervisord, STOP_MARGIN)
    if supervisord.poll() is None:
        supervisord.kill()
        supervisord.wait()
    _kill_orphans(supervisord)
