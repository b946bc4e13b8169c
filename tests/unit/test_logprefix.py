"""The log relay of `make run` (devstack.logprefix) reads supervisord's events whatever their text."""

from __future__ import annotations

import io

from devstack.logprefix import Printer, listen


def _event(name: str, text: str) -> bytes:
    """A PROCESS_LOG_STDOUT event as supervisord writes it: `len` counts the payload's characters."""
    payload = f"processname:{name} groupname:{name} pid:7 channel:stdout\n{text}"
    header = (
        "ver:3.0 server:supervisor serial:1 pool:output poolserial:1"
        f" eventname:PROCESS_LOG_STDOUT len:{len(payload)}\n"
    )
    return (header + payload).encode()


def test_lines_with_characters_past_ascii_are_printed_and_the_next_event_read():
    out = io.BytesIO()
    events = io.BytesIO(
        _event("web", 'GET /%C3%A9 -> "/é" 404 ünïcödé 😀\n') + _event("worker", "after it\n")
    )
    listen(Printer(["web", "worker"], out, color=False), events, io.BytesIO())
    lines = out.getvalue().decode().splitlines()
    assert [line.split(" ", 1)[1] for line in lines] == [
        'web    | GET /%C3%A9 -> "/é" 404 ünïcödé 😀',
        "worker | after it",
    ]
