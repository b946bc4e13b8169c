"""Celery's settings (its lowercase names), queues, routes and beat's schedule, made from the
application's settings (webapp/config.py) when the Celery app is built; nothing is read at import."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from kombu import Queue

from webapp.core import vocabulary

# Queues and routes derive from the job kinds of the vocabulary: a new kind names its task and queue there.
QUEUES = vocabulary.QUEUES
TASK_ROUTES = vocabulary.task_routes()


def celery_settings(settings: Mapping[str, Any]) -> dict[str, Any]:
    """Celery's settings for an application with `settings` (webapp.config.load())."""
    return {
        "broker_url": settings["BROKER_URL"],
        "result_backend": settings["REDIS_URL"],
        "result_expires": settings["CELERY_RESULT_EXPIRES"],
        # Beat's record of when each entry last ran lives with the rest of the instance's state, so two
        # instances on one machine (INSTANCE_PATH) never share it. Whatever starts beat makes the folder.
        "beat_schedule_filename": str(Path(settings["INSTANCE_PATH"]) / "celerybeat-schedule"),
        # The persistent scheduler, writing beat's heartbeat from its loop (workers/beat.py).
        "beat_scheduler": "workers.beat:HeartbeatScheduler",
        "task_serializer": "json",
        "result_serializer": "json",
        "accept_content": ["json"],
        "timezone": "UTC",
        "enable_utc": True,
        # A task is acknowledged only once it finished, and a worker that dies mid-task gives it back.
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        # Prefetch is per worker, not per queue, in Celery: with a multiplier of 1 and acks_late a
        # process holds at most the one task it runs (running tasks count as unacknowledged), so a long
        # export never sits reserved behind another on a busy process. Give exports their own workers
        # to isolate them: `celery -A workers worker -Q exports --prefetch-multiplier 1`.
        "worker_prefetch_multiplier": 1,
        # A job's state lives in its row and its events; Celery's own record of it (STARTED, then the
        # return value) would be two more Redis writes per job that nothing reads. Jobs ignore their
        # results (ignore_result on their tasks); maintenance tasks keep theirs for whoever awaits them.
        "task_track_started": False,
        "task_soft_time_limit": settings["TASK_SOFT_TIME_LIMIT"],
        "task_time_limit": settings["TASK_TIME_LIMIT"],
        "broker_transport_options": {
            # Must exceed the hard time limit, or the broker redelivers tasks that are still running.
            "visibility_timeout": settings["BROKER_VISIBILITY_TIMEOUT"],
            "unacked_restore_interval": settings["BROKER_RESTORE_INTERVAL"],
            "unacked_restore_throttle": 1,
        },
        "result_backend_transport_options": {"retry_policy": {"timeout": 5.0}},
        "broker_connection_retry_on_startup": True,
        "broker_connection_timeout": 3,
        "task_default_queue": "default",
        "task_queues": tuple(Queue(name) for name in QUEUES),
        "task_routes": TASK_ROUTES,
        "worker_hijack_root_logger": False,
        "worker_send_task_events": False,
        "beat_schedule": beat_schedule(settings),
    }


def _every(task: str, seconds: float) -> dict[str, Any]:
    # Each entry expires before its next run: runs piled up while workers were down are dropped, not replayed.
    return {"task": task, "schedule": float(seconds), "options": {"expires": seconds}}


def beat_schedule(settings: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Beat's periodic tasks."""
    return {
        "snapshots-schedule-due": _every("snapshots.schedule_due", settings["SNAPSHOT_SCHEDULE_SECONDS"]),
        "exports-cleanup": _every("maintenance.cleanup_exports", settings["EXPORT_CLEANUP_SECONDS"]),
        "rollups-refresh-pending": _every("rollups.refresh_pending", 60),
        "rollups-build-business": _every("rollups.build_business", 60),
        "rollups-build-agents": _every("rollups.build_agents", 300),
        # Settled days' SLA verdicts are counted ahead within a minute of a write or a deadline.
        "rollups-count-sla-days": _every("rollups.count_sla_days", 60),
        "rollups-sum-metric-days": _every("rollups.sum_metric_days", 60),
        "rollups-reconcile-recent": _every("rollups.reconcile_recent", settings["ROLLUP_RECONCILE_SECONDS"]),
        "revoked-tokens-cleanup": _every("maintenance.cleanup_revoked_tokens", 3600),
        "jobs-purge": _every("maintenance.purge_jobs", 3600),
        "idempotency-keys-cleanup": _every("maintenance.cleanup_idempotency_keys", 3600),
        "jobs-requeue-lost": _every("maintenance.requeue_lost_jobs", 60),
        "cache-warm": _every("cache.warm", settings["CACHE_WARM_SECONDS"]),
        # SLA breaches are recorded within a minute of their instant.
        "sla-record-breaches": _every("sla.record_breaches", 15),
        # Every closed bucket of every alert rule is evaluated within a minute of its close.
        "alerts-evaluate-due": _every("alerts.evaluate_due", 15),
        # Due report schedules run, and runs whose export finished are delivered.
        "reports-tick": _every("reports.tick", 15),
        # Webhook deliveries whose message was lost, whose worker died, or whose retry is due.
        "deliveries-send-due": _every("deliveries.send_due", 15),
    }
