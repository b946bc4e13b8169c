"""supervisord's event listener that prints every program's output as `HH:MM:SS name | line`.

`python -m devstack.logprefix [--color] NAME...`, started by supervisord (devstack.processes). It
speaks supervisord's event listener protocol on stdin and stdout, and prints on stderr, which
supervisord passes on to its own stdout. Output arrives in chunks that need not end at a line's end:
the unfinished tail of each program's output waits for the rest of its line, or for the program's exit.
"""

from __future__ import annotations

import argparse
import codecs
import sys
import time
from typing import BinaryIO

# A line longer than this is printed in pieces rather than held in memory without bound.
MAX_LINE = 64 * 1024
COLORS = ("36", "33", "32", "35", "34", "31")  # cyan, yellow, green, magenta, blue, red


def _fields(line: bytes) -> dict[str, str]:
    """`key:value key:value` as a dict (the shape of the event header and of the payload's first line)."""
    return dict(field.decode().split(":", 1) for field in line.split())


def _read_characters(stream: BinaryIO, count: int) -> bytes:
    """The next `count` characters of UTF-8 on `stream`, as bytes: supervisord's `len` counts the
    characters of the payload it writes as UTF-8, so a line with an é is longer in bytes than `len`
    (read as bytes, the rest of it was taken for the next header)."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    parts: list[str] = []
    read = 0
    while read < count:
        chunk = stream.read(count - read)  # every character left takes a byte at least
        if not chunk:
            break
        text = decoder.decode(chunk)
        parts.append(text)
        read += len(text)
    return "".join(parts).encode()


class Printer:
    """Prefixes and prints complete lines, keeping each program's unfinished one."""

    def __init__(self, names: list[str], out: BinaryIO, *, color: bool) -> None:
        self.out = out
        self.width = max(len(name) for name in names)
        self.colors = {name: COLORS[i % len(COLORS)] for i, name in enumerate(names)} if color else {}
        self.pending: dict[str, bytes] = {}

    def output(self, name: str, data: bytes) -> None:
        """Print the complete lines of `data`, keeping its unfinished tail for the next chunk."""
        lines = (self.pending.pop(name, b"") + data).split(b"\n")
        tail = lines.pop()
        if len(tail) > MAX_LINE:
            lines.append(tail)
        elif tail:
            self.pending[name] = tail
        for line in lines:
            self._print(name, line.removesuffix(b"\r"))

    def exited(self, name: str) -> None:
        """The program is gone: its unfinished line is all there will be."""
        tail = self.pending.pop(name, b"")
        if tail:
            self._print(name, tail)

    def _print(self, name: str, line: bytes) -> None:
        prefix = f"{time.strftime('%H:%M:%S')} {name:<{self.width}} |"
        if name in self.colors:
            prefix = f"\x1b[{self.colors[name]}m{prefix}\x1b[0m"
        self.out.write(prefix.encode() + b" " + line + b"\n")


def listen(printer: Printer, events: BinaryIO, answers: BinaryIO) -> None:
    """Handle events until supervisord closes our stdin."""
    while True:
        answers.write(b"READY\n")
        answers.flush()
        header = events.readline()
        if not header:
            return
        payload = _read_characters(events, int(_fields(header)["len"]))
        first, _, data = payload.partition(b"\n")
        about = _fields(first)
        if _fields(header)["eventname"].startswith("PROCESS_LOG"):
            printer.output(about["processname"], data)
        else:
            printer.exited(about["processname"])
        printer.out.flush()
        answers.write(b"RESULT 2\nOK")
        answers.flush()


def main() -> None:
    """Entry point: the program names, to pad them all to the same width."""
    parser = argparse.ArgumentParser(prog="python -m devstack.logprefix")
    parser.add_argument("--color", action="store_true")
    parser.add_argument("names", nargs="+")
    args = parser.parse_args()
    listen(Printer(args.names, sys.stderr.buffer, color=args.color), sys.stdin.buffer, sys.stdout.buffer)


if __name__ == "__main__":
    main()
