"""Beat's scheduler: the persistent one, writing beat's heartbeat from its own loop."""

from __future__ import annotations

import logging
import time
from typing import Any

from celery.beat import PersistentScheduler

from webapp.infra import heartbeat

log = logging.getLogger(__name__)

# How often the loop writes its heartbeat (health calls beat silent after 90 s without one).
HEARTBEAT_SECONDS = 10.0


class HeartbeatScheduler(PersistentScheduler):
    """Each pass of beat's loop (it wakes at least every HEARTBEAT_SECONDS) records, at most that
    often, that beat runs. From the loop itself, not a thread beside it, so a loop stuck sending is called
    silent; and not through a task a worker runs, so beat is not called silent while the workers
    are down."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._beaten = 0.0
        super().__init__(*args, **kwargs)

    def tick(self, *args: Any, **kwargs: Any) -> float:
        now = time.monotonic()
        if now - self._beaten >= HEARTBEAT_SECONDS:
            try:
                from workers import flask_app  # the beat process's app (workers imports this module late)

                heartbeat.beat_ran(flask_app.extensions["redis"])
                self._beaten = now
            except Exception as exc:
                log.warning("beat's heartbeat failed: %s", exc)
        # Never sleep past the next heartbeat, whatever the schedule holds.
        return min(super().tick(*args, **kwargs), HEARTBEAT_SECONDS)
