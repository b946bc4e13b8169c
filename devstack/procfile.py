"""The Procfile: one `name: command` line per process, read the same way by `devstack run` and bench/."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

# A process name as foreman and honcho accept it; the command is the rest of the line.
_LINE = re.compile(r"^(?P<name>[A-Za-z0-9_-]+):\s*(?P<command>\S.*)$")
# `$PORT` and `${PORT}`, the one variable a Procfile line may use (commands are not run by a shell).
_PORT = re.compile(r"\$(?:PORT\b|\{PORT\})")


def read_procfile(path: Path) -> dict[str, str]:
    """Process names to their command lines, in file order; blank lines and `#` comments are skipped."""
    processes: dict[str, str] = {}
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        match = _LINE.match(stripped)
        if match is None:
            raise ValueError(f"{path}:{number}: expected `name: command`, found {line!r}")
        name = match["name"]
        if name in processes:
            raise ValueError(f"{path}:{number}: process {name!r} is defined twice")
        processes[name] = match["command"].strip()
    return processes


def command_args(command: str, *, port: int | None = None, bin_dir: Path | None = None) -> list[str]:
    """A Procfile command as an argument list.

    `$PORT` (or `${PORT}`) becomes `port` when one is given, the line is split into words as a shell
    would split it (quotes, no expansion), and the program is taken from `bin_dir` (the venv's) when it
    is there, so that `gunicorn` means this project's gunicorn whatever PATH says.
    """
    if port is not None:
        command = _PORT.sub(str(port), command)
    args = shlex.split(command)
    if not args:
        raise ValueError(f"empty command: {command!r}")
    if bin_dir is not None and (bin_dir / args[0]).exists():
        args[0] = str(bin_dir / args[0])
    return args
