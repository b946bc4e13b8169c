"""A background thread paying what a process owes Redis while Redis is away (cache bumps, live events
it could not send): it calls `pay(client)` every `every` seconds for as long as `owed()` says
something is owed, stops when nothing is, and is started again by the next `wake`."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import redis


class PayLater:
    """One owner's paying thread; `owed` and `pay` take the owner's own lock (never this one's)."""

    def __init__(
        self, name: str, every: float, owed: Callable[[], bool], pay: Callable[[redis.Redis], object]
    ) -> None:
        self._name = name
        self._every = every
        self._owed = owed
        self._pay = pay
        self._client: redis.Redis | None = None
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def wake(self, client: redis.Redis) -> None:
        """Something was owed (call after the owner recorded it): pay it through `client` until paid."""
        with self._lock:
            self._client = client
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
                self._thread.start()

    def _run(self) -> None:
        while True:
            time.sleep(self._every)
            with self._lock:
                # Checked under this lock: a wake after an owing add finds this thread gone or going on.
                if not self._owed() or self._client is None:
                    self._thread = None
                    return
                client = self._client
            self._pay(client)
