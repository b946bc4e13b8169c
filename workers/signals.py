"""Process hooks: fresh connections after fork, config checks, and worker heartbeats."""

from __future__ import annotations

import contextlib
import logging
import threading

from celery import Celery
from celery.signals import worker_init, worker_process_init, worker_ready, worker_shutdown
from flask import Flask

from webapp.infra import heartbeat
from webapp.jobs import claim

log = logging.getLogger(__name__)
HEARTBEAT_SECONDS = 10


class ConfigurationError(RuntimeError):
    pass


def check_time_limits(conf: object, *, soft: float | None = None, hard: float | None = None) -> None:
    """Refuse soft >= hard limit or hard limit >= visibility timeout: either loses or doubles tasks.

    `soft` and `hard` are the worker's effective limits (its command line may override the config).
    """
    soft = soft if soft is not None else conf.task_soft_time_limit  # type: ignore[attr-defined]
    hard = hard if hard is not None else conf.task_time_limit  # type: ignore[attr-defined]
    visibility = conf.broker_transport_options["visibility_timeout"]  # type: ignore[attr-defined]
    if not (soft and hard and soft < hard < visibility):
        raise ConfigurationError(
            f"time limits must satisfy soft < hard < broker visibility timeout, got soft={soft} "
            f"hard={hard} visibility_timeout={visibility}: set TASK_SOFT_TIME_LIMIT, TASK_TIME_LIMIT "
            "and BROKER_VISIBILITY_TIMEOUT accordingly"
        )


def connect(app: Flask, celery_app: Celery) -> None:
    """Wire the signal handlers for this Flask app."""
    stop = threading.Event()

    @worker_init.connect(weak=False)
    def refuse_bad_time_limits(sender: object = None, **_: object) -> None:
        # At worker start, not at import, so `celery inspect` and beat still load with any limits.
        try:
            check_time_limits(
                celery_app.conf,
                soft=getattr(sender, "soft_time_limit", None),
                hard=getattr(sender, "time_limit", None),
            )
        except ConfigurationError as exc:
            log.critical("the worker refuses to start: %s", exc)
            # SystemExit passes through Celery's signal dispatch, which swallows ordinary exceptions.
            raise SystemExit(1) from exc

    @worker_init.connect(weak=False)
    def share_of_the_slots(sender: object = None, **_: object) -> None:
        # Before the pool forks, so every pool process reads it.
        app.config["JOB_MAX_RUNNING_PER_ORG"] = claim.running_share(
            app.config.get("JOB_MAX_RUNNING_PER_ORG"),
            claim.worker_slots(sender, celery_app.conf.worker_concurrency),
        )

    @worker_process_init.connect(weak=False)
    def dispose_inherited_pool(**_: object) -> None:
        # Connections opened before fork must not be shared with the parent.
        app.extensions["db_engine"].dispose(close=False)
        app.extensions["redis"].connection_pool.reset()

    @worker_ready.connect(weak=False)
    def start_heartbeat(sender: object = None, **_: object) -> None:
        hostname = getattr(sender, "hostname", "worker")
        # The queues this worker was started on (`--queues`), so health can name the ones nobody takes.
        queues = sorted(celery_app.amqp.queues.consume_from or celery_app.amqp.queues)

        def beat() -> None:
            while not stop.is_set():
                try:
                    heartbeat.worker_beat(app.extensions["redis"], hostname, queues)
                except Exception as exc:
                    log.warning("heartbeat failed: %s", exc)
                stop.wait(HEARTBEAT_SECONDS)

        threading.Thread(target=beat, name="heartbeat", daemon=True).start()

    @worker_ready.connect(weak=False)
    def recover_lost_jobs(sender: object = None, **_: object) -> None:
        # A worker starting is often a killed one coming back: its running jobs need not wait for
        # beat's next sweep (maintenance.requeue_lost_jobs).
        try:
            celery_app.send_task("maintenance.requeue_lost_jobs", expires=60)
        except Exception as exc:
            log.warning("could not ask for lost jobs to be sent again: %s", exc)

    @worker_shutdown.connect(weak=False)
    def stop_heartbeat(sender: object = None, **_: object) -> None:
        stop.set()
        with contextlib.suppress(Exception):
            heartbeat.worker_gone(app.extensions["redis"], getattr(sender, "hostname", "worker"))
