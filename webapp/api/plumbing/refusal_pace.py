"""A client refused again and again in a tight loop gets its refusals paced: each is held a little.

A refusal is cheap, but a client that retries at once on every 4xx (a script gone wrong, a flood)
keeps a web process busy with them all the same, and every other organization's request waits for
the CPU behind them. Past `REFUSAL_PACE_FREE` refusals within one second in this process, each
further refusal of the same caller (its organization when its token was read, else its address) is
held `REFUSAL_PACE_MS` before it is sent. The wait costs no CPU (the worker's event loop serves other
requests meanwhile), the answer is the same, and a client that waits between tries, as Retry-After
asks, never meets it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from flask import Flask, Response, current_app, g, request

from webapp.infra.db import release_session

REFUSALS = range(400, 500)


class Pace:
    """Refusals per caller in the current second, in this process."""

    def __init__(self, free: int, hold_seconds: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.free = free
        self.hold_seconds = hold_seconds
        self.clock = clock
        self._second = 0
        self._counts: dict[str, int] = {}
        self._lock = threading.Lock()

    def hold_for(self, caller: str, now: float | None = None) -> float:
        """Count one refusal of `caller`; the seconds to hold it (0 within the free ones)."""
        if self.hold_seconds <= 0:
            return 0.0
        second = int(self.clock() if now is None else now)
        with self._lock:
            if second != self._second:
                self._second, self._counts = second, {}
            count = self._counts[caller] = self._counts.get(caller, 0) + 1
        return self.hold_seconds if count > self.free else 0.0


def _caller() -> str:
    principal = g.get("principal")
    if principal is not None:
        return f"org:{principal.org_id}"
    return f"addr:{request.remote_addr}"


def init_app(app: Flask) -> None:
    app.extensions["refusal_pace"] = Pace(
        app.config["REFUSAL_PACE_FREE"], app.config["REFUSAL_PACE_MS"] / 1000
    )

    @app.after_request
    def pace_refusals(response: Response) -> Response:
        if response.status_code in REFUSALS:
            hold = current_app.extensions["refusal_pace"].hold_for(_caller())
            if hold:
                # The request's database connection goes back to the pool first: a flood of held
                # refusals must not hold the pool's connections while they wait.
                release_session()
                time.sleep(hold)  # under gevent, a wait of this greenlet alone
        return response
