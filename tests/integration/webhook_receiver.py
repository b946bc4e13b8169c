"""A webhook receiver for tests: a small threaded HTTP server on 127.0.0.1 that checks every
signature with the webhook's secret (its own HMAC, not the platform's code) and records each request."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Received:
    """One POST as the receiver saw it."""

    body: dict[str, Any]
    raw: bytes
    timestamp: int
    signature_ok: bool
    headers: dict[str, str]
    status: int

    @property
    def id(self) -> str:
        return self.body["id"]

    @property
    def type(self) -> str:
        return self.body["type"]


class Receiver:
    """Answers each POST with the next entry of `script` (a status, or seconds to stay silent before a
    200), then 200; checks signatures against `secret`."""

    def __init__(self) -> None:
        self.secret = ""
        self.script: list[int | float] = []
        self.received: list[Received] = []
        self._changed = threading.Condition()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                with receiver._changed:
                    action = receiver.script.pop(0) if receiver.script else 200
                status = 200 if isinstance(action, float) else action
                receiver._record(raw, dict(self.headers.items()), status)
                if isinstance(action, float):
                    time.sleep(action)
                self.send_response(status)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hooks/in?source=tests"

    def _record(self, raw: bytes, headers: dict[str, str], status: int) -> None:
        fields = dict(
            part.split("=", 1) for part in headers.get("Webhook-Signature", "").split(",") if "=" in part
        )
        stamp = int(fields.get("t", "0"))
        expected = hmac.new(self.secret.encode(), f"{stamp}.".encode() + raw, hashlib.sha256).hexdigest()
        ok = hmac.compare_digest(expected, fields.get("v1", ""))
        with self._changed:
            self.received.append(Received(json.loads(raw), raw, stamp, ok, headers, status))
            self._changed.notify_all()

    def wait_for(self, count: int, timeout: float = 30) -> list[Received]:
        """The requests received, once there are at least `count` (AssertionError after `timeout`)."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while len(self.received) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"{len(self.received)} of {count} deliveries arrived")
                self._changed.wait(left)
            return list(self.received)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
