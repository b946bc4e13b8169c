"""The processes under `devstack run`, on real processes: `python -m devstack processes` runs a scratch
Procfile of tiny Python programs under supervisord; the programs record their pids, and the tests kill
them, watch the restarts, and stop the whole. No database or broker is involved."""

from __future__ import annotations

import itertools
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from devstack.procfile import command_args, read_procfile
from tests.conftest import ROOT

# One program, several behaviours; each run appends "pid unix-time" to <folder>/<name>.pids (a child
# it spawns, to <name>.kids) before doing anything else.
CHILD = """
import os, signal, subprocess, sys, time

mode, name, folder = sys.argv[1:4]

def record(kind):
    with open(os.path.join(folder, f"{name}.{kind}"), "a") as f:
        f.write(f"{os.getpid()} {time.time()}\\n")

if mode == "kid":
    record("kids")
else:
    record("pids")
if mode == "crash":
    print(f"{name} crashing", flush=True)
    sys.exit(3)
if mode == "stubborn":
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
if mode == "family":
    # A child in the same process group, holding the same output pipe, as a gunicorn worker would.
    subprocess.Popen([sys.executable, __file__, "kid", name, folder])
deadline = time.monotonic() + (1.5 if mode == "slowcrash" else 120)
while time.monotonic() < deadline:
    print(f"{name} alive {os.getpid()}", flush=True)
    time.sleep(0.3)
sys.exit(1)
"""

# A program's line, as devstack.logprefix prints it.
LINE = re.compile(r"^\d\d:\d\d:\d\d (?P<name>\S+)( *)\| (?P<text>.*)$")


def alive(pid: int) -> bool:
    """Whether `pid` still runs; a zombie (dead, waiting for whoever adopted it to reap it) does not."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"


def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.05)


@dataclass
class Supervised:
    """`python -m devstack processes` running a scratch Procfile, and what its programs recorded."""

    folder: Path
    proc: subprocess.Popen[bytes] | None = None
    programs: dict[str, str] = field(default_factory=dict)

    def start(self, programs: dict[str, str], *, grace: float = 2.0, **options: float) -> None:
        """`programs` maps a process name to a CHILD mode; `options` are the command's (stable_after...)."""
        self.programs = programs
        script = self.folder / "child.py"
        script.write_text(CHILD)
        lines = [
            f"{name}: {shlex.join([sys.executable, str(script), mode, name, str(self.folder)])}"
            for name, mode in programs.items()
        ]
        procfile = self.folder / "Procfile"
        procfile.write_text("# scratch processes\n\n" + "\n".join(lines) + "\n")
        args = [sys.executable, "-m", "devstack", "processes", "-f", str(procfile), "--grace", str(grace)]
        for option, value in options.items():
            args += [f"--{option.replace('_', '-')}", str(value)]
        env = dict(os.environ, INSTANCE_PATH=str(self.folder / "instance"))
        # Appending: supervisord writes the programs' lines through a file of its own opened on our stdout.
        with (self.folder / "out.log").open("ab") as out:
            self.proc = subprocess.Popen(args, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)

    def output(self) -> str:
        return (self.folder / "out.log").read_text(errors="replace")

    def records(self, name: str, kind: str = "pids") -> list[tuple[int, float]]:
        try:
            text = (self.folder / f"{name}.{kind}").read_text()
        except FileNotFoundError:
            return []
        return [(int(pid), float(at)) for pid, at in (line.split() for line in text.splitlines())]

    def pids(self, name: str, kind: str = "pids") -> list[int]:
        return [pid for pid, _ in self.records(name, kind)]

    def all_pids(self) -> list[int]:
        return [pid for name in self.programs for kind in ("pids", "kids") for pid in self.pids(name, kind)]

    def wait_started(self, timeout: float = 30.0) -> None:
        wait_until(lambda: all(self.pids(name) for name in self.programs), timeout, "every program to start")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> float:
        """Signal the command and return how long it took to exit (it must exit with 0)."""
        assert self.proc is not None
        began = time.monotonic()
        self.proc.send_signal(sig)
        assert self.proc.wait(timeout=timeout) == 0, self.output()
        return time.monotonic() - began


@pytest.fixture
def supervised(tmp_path: Path) -> Iterator[Supervised]:
    run = Supervised(tmp_path)
    yield run
    # Whatever a failed test left behind.
    if run.proc is not None and run.proc.poll() is None:
        run.proc.send_signal(signal.SIGINT)
        run.proc.send_signal(signal.SIGINT)
        try:
            run.proc.wait(20)
        except subprocess.TimeoutExpired:
            run.proc.kill()
            run.proc.wait()
    for pid in run.all_pids():
        if alive(pid):
            os.kill(pid, signal.SIGKILL)


def test_procfile_parsing(tmp_path: Path) -> None:
    procfile = tmp_path / "Procfile"
    procfile.write_text('# c\n\nweb: gunicorn --bind 127.0.0.1:$PORT "app:create()"\nworker:celery -A w\n')
    processes = read_procfile(procfile)
    assert list(processes) == ["web", "worker"]
    assert command_args(processes["web"], port=8123) == [
        "gunicorn",
        "--bind",
        "127.0.0.1:8123",
        "app:create()",
    ]
    assert command_args(processes["worker"]) == ["celery", "-A", "w"]
    procfile.write_text("web gunicorn\n")
    with pytest.raises(ValueError, match="expected `name: command`"):
        read_procfile(procfile)
    # The project's own Procfile parses, and its web line gets the port.
    web = command_args(read_procfile(ROOT / "Procfile")["web"], port=8123)
    assert "127.0.0.1:8123" in web


def test_prefixed_output_and_a_killed_process_restarted(supervised: Supervised) -> None:
    supervised.start({"ticker": "family", "long_named_one": "loop"}, stable_after=1)
    supervised.wait_started()
    wait_until(lambda: len(supervised.pids("ticker", "kids")) == 1, 20, "the ticker's child")
    [leader] = supervised.pids("ticker")
    [kid] = supervised.pids("ticker", "kids")
    wait_until(lambda: "long_named_one | long_named_one alive" in supervised.output(), 20, "both outputs")
    time.sleep(1.5)  # past --stable-after: a run that counts as stable

    os.kill(leader, signal.SIGKILL)
    wait_until(lambda: len(supervised.pids("ticker")) == 2, 15, "the killed program to be started again")
    assert supervised.pids("ticker")[1] != leader
    # What the dead leader left (a gunicorn worker keeping the port, a Celery pool process) went too.
    wait_until(lambda: not alive(kid), 5, "the dead leader's child to be killed")
    assert not alive(leader)
    assert "exited: ticker (terminated by SIGKILL; not expected)" in supervised.output()
    # The other program was left alone.
    assert len(supervised.pids("long_named_one")) == 1

    supervised.stop()
    program_lines = [line for line in supervised.output().splitlines() if LINE.match(line)]
    # Every name padded to the longest, so the bars line up.
    assert {line.index("|") for line in program_lines} == {len("00:00:00 ") + len("long_named_one") + 1}
    # (A blank line a program prints as it is stopped comes out prefixed too, with no words.)
    by_name = {
        (m["name"], m["text"].split()[0]) for m in map(LINE.match, program_lines) if m and m["text"].strip()
    }
    assert by_name == {("ticker", "ticker"), ("long_named_one", "long_named_one")}
    for pid in supervised.all_pids():
        assert not alive(pid), pid


def test_a_crashing_process_is_restarted_with_growing_delays(supervised: Supervised) -> None:
    # `slowcrash` stays up longer than --stable-after each time, so it is started again at once.
    supervised.start(
        {"crasher": "crash", "slowcrash": "slowcrash", "steady": "loop"}, stable_after=1, retries=3
    )
    supervised.wait_started()
    wait_until(lambda: "gave up: crasher entered FATAL state" in supervised.output(), 40, "giving up")
    wait_until(lambda: len(supervised.pids("slowcrash")) >= 4, 30, "four starts of the slow one")
    supervised.stop()

    # The first start and three retries, each after a longer wait (supervisord: 1 s, 2 s, 3 s).
    starts = [at for _, at in supervised.records("crasher")]
    assert len(starts) == 4, supervised.output()
    gaps = [later - earlier for earlier, later in itertools.pairwise(starts)]
    assert all(gap >= wait for gap, wait in zip(gaps, (1, 2, 3), strict=True)), gaps
    # Restarted at once after each stable run: no delay grows (it runs 1.5 s, supervisord ticks each s).
    slow = [at for _, at in supervised.records("slowcrash")]
    assert all(later - earlier < 1.5 + 2.5 for earlier, later in itertools.pairwise(slow)), slow
    # The others kept running through all of it.
    assert len(supervised.pids("steady")) == 1


def test_sigterm_stops_all_and_sigkills_what_ignores_it(supervised: Supervised) -> None:
    grace = 2.0
    supervised.start({"polite": "loop", "family": "family", "stubborn": "stubborn"}, grace=grace)
    supervised.wait_started()
    wait_until(lambda: supervised.pids("family", "kids"), 20, "the family's child")
    wait_until(lambda: "stubborn | stubborn alive" in supervised.output(), 20, "the stubborn one's output")
    pids = supervised.all_pids()
    assert len(pids) == 4

    elapsed = supervised.stop(signal.SIGTERM)

    # The stubborn one held the stop for the grace period, and not much longer.
    assert grace - 0.1 <= elapsed < grace + 8, elapsed
    for pid in pids:
        assert not alive(pid), pid
    output = supervised.output()
    [stubborn] = supervised.pids("stubborn")
    assert f"killing 'stubborn' ({stubborn}) with SIGKILL" in output
    assert "stopped: stubborn (terminated by SIGKILL)" in output
    assert "stopped: polite (terminated by SIGTERM)" in output
    # Nothing was started again while stopping.
    assert "spawned" not in output[output.index("stopping (") :]


def test_ctrl_c_stops_at_once_when_everything_exits(supervised: Supervised) -> None:
    supervised.start({"one": "loop", "two": "family"}, grace=20.0)
    supervised.wait_started()
    wait_until(lambda: supervised.pids("two", "kids"), 20, "the child")
    elapsed = supervised.stop(signal.SIGINT)
    assert elapsed < 10, elapsed  # well before the grace period
    for pid in supervised.all_pids():
        assert not alive(pid), pid
    assert "with SIGKILL" not in supervised.output()


def test_a_second_signal_skips_the_grace_period(supervised: Supervised) -> None:
    supervised.start({"stubborn": "stubborn"}, grace=60.0)
    supervised.wait_started()
    wait_until(lambda: "stubborn | stubborn alive" in supervised.output(), 20, "the program's output")
    assert supervised.proc is not None
    began = time.monotonic()
    supervised.proc.send_signal(signal.SIGINT)
    wait_until(
        lambda: "Ctrl-C again to kill now" in supervised.output(), 10, "the first signal to be handled"
    )
    # supervisord itself has begun stopping (on a loaded machine it may take a moment to get there;
    # a program killed before that would read as an unexpected exit).
    wait_until(
        lambda: "received SIGTERM indicating exit request" in supervised.output(), 10, "supervisord to stop"
    )
    elapsed = supervised.stop(signal.SIGINT)
    assert time.monotonic() - began < 15, elapsed
    [pid] = supervised.pids("stubborn")
    assert not alive(pid)
    assert "stopped: stubborn (terminated by SIGKILL)" in supervised.output()
