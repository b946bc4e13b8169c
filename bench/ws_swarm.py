"""Thousands of WebSocket clients in one asyncio process, cheap enough to leave the CPU to the server.

It speaks only what the platform's socket needs of RFC 6455: the upgrade with a bearer token, the
server's unmasked frames (text, ping, close; the server sends each message as one frame), and masked
frames of its own (text, pong). No compression is offered. Every socket sends `{"type": "ping"}` every
--ping-every seconds (at a random phase) and answers the server's pings.

Run by bench_ws as a child process, one per share of the sockets: it connects --count sockets, prints
one JSON line `{"event": "connected", ...}` on stdout, then waits for lines on stdin:
`report` prints what every socket received (receipt times are time.perf_counter(), the system's
monotonic clock, comparable across processes), `close` closes every socket and exits.

    BENCH_TOKEN=... python -m bench.ws_swarm --port 8000 --org 1 --count 5000
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import random
import re
import resource
import sys
import time
from collections import Counter
from typing import Any

OP_TEXT, OP_CLOSE, OP_PING, OP_PONG = 0x1, 0x8, 0x9, 0xA
# Handshakes in flight at once: the server's listen backlog is not flooded.
CONNECTING = 200


def client_frame(opcode: int, payload: bytes) -> bytes:
    """One final, masked frame from a client."""
    n = len(payload)
    if n < 126:
        head = bytes((0x80 | opcode, 0x80 | n))
    else:
        head = bytes((0x80 | opcode, 0x80 | 126)) + n.to_bytes(2, "big")
    mask = os.urandom(4)
    if not n:
        return head + mask
    key = int.from_bytes((mask * (n // 4 + 1))[:n], "big")
    return head + mask + (int.from_bytes(payload, "big") ^ key).to_bytes(n, "big")


PING = client_frame(OP_TEXT, b'{"type": "ping"}')
# The fields of the events the benchmark publishes (json.dumps keeps their order), and of the
# metric_update a ticket write publishes.
BENCH_FIELDS = re.compile(rb'"bench_phase": "(\w+)", "bench_seq": (\d+), "sent_at": ([0-9.e+-]+)')
TICKET_UPDATE = re.compile(rb'"ticket_id": (\d+)')


class Swarm:
    """Every socket's receipts, pongs and closes, for one report."""

    def __init__(self, port: int, org_id: int, token: str) -> None:
        key = base64.b64encode(os.urandom(16)).decode()
        self.request = (
            f"GET /api/v1/ws/analytics/{org_id} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
            "Upgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
            f"Authorization: Bearer {token}\r\n\r\n"
        ).encode()
        self.port = port
        self.sockets: list[Socket] = []
        # (source, key) -> receipt times; the relay's events carry their own send time instead.
        self.receipts: dict[str, list[float]] = {}
        self.relay_ms: dict[str, list[float]] = {}
        self.pongs = 0
        self.server_pings = 0
        self.close_codes: Counter[str] = Counter()
        self.failures: Counter[str] = Counter()

    def message(self, payload: bytes, received: float) -> None:
        # Ten thousand of these per event: a look for the few fields needed, not a JSON parse.
        if (bench := BENCH_FIELDS.search(payload)) is not None:
            phase, seq, sent_at = bench.group(1).decode(), bench.group(2).decode(), float(bench.group(3))
            self.relay_ms.setdefault(phase, []).append((received - sent_at) * 1000)
            self.receipts.setdefault(f"{phase}:{seq}", []).append(received)
        elif (ticket := TICKET_UPDATE.search(payload)) is not None and b'"metric_update"' in payload:
            self.receipts.setdefault(f"rest:{ticket.group(1).decode()}", []).append(received)
        elif b'"type": "pong"' in payload:
            self.pongs += 1

    def report(self) -> dict[str, Any]:
        return {
            "event": "report",
            "open": sum(1 for s in self.sockets if s.open and not s.closed),
            "receipts": self.receipts,
            "relay_ms": self.relay_ms,
            "pongs": self.pongs,
            "server_pings": self.server_pings,
            "close_codes": dict(self.close_codes),
            "failures": dict(self.failures),
        }


class Socket(asyncio.Protocol):
    """One client socket: the upgrade, then frames as they arrive."""

    def __init__(self, swarm: Swarm, ready: asyncio.Future[bool]) -> None:
        self.swarm = swarm
        self.ready = ready
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()
        self.open = False
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        transport.write(self.swarm.request)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if not self.ready.done():
            self.ready.set_result(False)
            self.swarm.failures[f"lost before connected: {exc!r}"] += 1

    def send(self, frame: bytes) -> None:
        if self.transport is not None and not self.closed:
            self.transport.write(frame)

    def data_received(self, data: bytes) -> None:
        received = time.perf_counter()
        buf = self.buf
        buf += data
        if not self.open:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                return
            status = bytes(buf[: buf.find(b"\r\n")])
            del buf[: end + 4]
            if not status.startswith(b"HTTP/1.1 101"):
                self.swarm.failures[status.decode(errors="replace")] += 1
                self.ready.set_result(False)
                self.closed = True
                assert self.transport is not None
                self.transport.close()
                return
            self.open = True
        while True:
            n = len(buf)
            if n < 2:
                return
            opcode, length, start = buf[0] & 0x0F, buf[1] & 0x7F, 2
            if length == 126:
                if n < 4:
                    return
                length, start = int.from_bytes(buf[2:4], "big"), 4
            elif length == 127:
                if n < 10:
                    return
                length, start = int.from_bytes(buf[2:10], "big"), 10
            end = start + length
            if n < end:
                return
            payload = bytes(buf[start:end])
            del buf[:end]
            self.frame(opcode, payload, received)

    def frame(self, opcode: int, payload: bytes, received: float) -> None:
        if opcode == OP_TEXT:
            if not self.ready.done():
                self.ready.set_result(json.loads(payload)["type"] == "connected")
                return
            self.swarm.message(payload, received)
        elif opcode == OP_PING:
            self.swarm.server_pings += 1
            self.send(client_frame(OP_PONG, payload))
        elif opcode == OP_CLOSE:
            code = int.from_bytes(payload[:2], "big") if len(payload) >= 2 else 1005
            self.swarm.close_codes[str(code)] += 1
            self.send(client_frame(OP_CLOSE, payload[:2]))
            self.closed = True
            assert self.transport is not None
            self.transport.close()


async def connect(swarm: Swarm, gate: asyncio.Semaphore) -> None:
    loop = asyncio.get_running_loop()
    async with gate:
        ready: asyncio.Future[bool] = loop.create_future()
        try:
            _, sock = await loop.create_connection(lambda: Socket(swarm, ready), "127.0.0.1", swarm.port)
            ok = await asyncio.wait_for(ready, 60)
        except (OSError, TimeoutError) as exc:
            swarm.failures[repr(exc)] += 1
            return
    if ok:
        swarm.sockets.append(sock)


async def pinger(swarm: Swarm, every: float) -> None:
    """Each socket sends a ping every `every` seconds, at a phase of its own."""
    due = {id(s): time.monotonic() + random.uniform(0, every) for s in swarm.sockets}
    while True:
        await asyncio.sleep(0.5)
        now = time.monotonic()
        for sock in swarm.sockets:
            if due[id(sock)] <= now:
                due[id(sock)] = now + every
                sock.send(PING)


def emit(payload: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(payload) + "\n")
    sys.stdout.flush()


async def main_async(args: argparse.Namespace) -> None:
    swarm = Swarm(args.port, args.org, os.environ["BENCH_TOKEN"])
    gate = asyncio.Semaphore(CONNECTING)
    started = time.perf_counter()
    await asyncio.gather(*(connect(swarm, gate) for _ in range(args.count)))
    emit(
        {
            "event": "connected",
            "count": len(swarm.sockets),
            "seconds": time.perf_counter() - started,
            "failures": dict(swarm.failures),
        }
    )
    ping_task = asyncio.create_task(pinger(swarm, args.ping_every))
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while line := (await reader.readline()).strip():
        if line == b"report":
            emit(swarm.report())
        elif line == b"close":
            break
    ping_task.cancel()
    for sock in swarm.sockets:
        if not sock.closed:
            sock.send(client_frame(OP_CLOSE, (1000).to_bytes(2, "big")))
    await asyncio.sleep(1.0)
    for sock in swarm.sockets:
        if sock.transport is not None:
            sock.transport.close()
    emit({"event": "closed"})


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--org", type=int, required=True)
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--ping-every", type=float, default=20.0, help="seconds between a socket's pings")
    args = parser.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    asyncio.run(main_async(args))


if __name__ == "__main__":
    main()
