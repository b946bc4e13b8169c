"""Celery settings (lowercase), queues, routes and the beat schedule."""

from kombu import Queue

from webapp import config as settings

_instance = settings.instance_path()
_redis = settings.redis_url(_instance)

broker_url = settings.env("BROKER_URL", _redis)
result_backend = _redis
result_expires = settings.env_int("CELERY_RESULT_EXPIRES", 24 * 3600)
# Beat's record of when each entry last ran lives with the rest of the instance's state, so two
# instances on one machine (INSTANCE_PATH) never share it.
_instance.mkdir(parents=True, exist_ok=True)
beat_schedule_filename = str(_instance / "celerybeat-schedule")

task_serializer = "json"
result_serializer = "json"
accept_content = ["json"]
timezone = "UTC"
enable_utc = True

# A task is acknowledged only once it finished, and a worker that dies mid-task gives it back.
task_acks_late = True
task_reject_on_worker_lost = True
# Prefetch is per worker, not per queue, in Celery: with a multiplier of 1 and acks_late a process
# holds at most the one task it runs (running tasks count as unacknowledged), so a long export never
# sits reserved behind another on a busy process. Give exports their own workers to isolate them:
# `celery -A workers worker -Q exports --prefetch-multiplier 1`.
worker_prefetch_multiplier = 1
task_track_started = True

task_soft_time_limit = settings.env_int("TASK_SOFT_TIME_LIMIT", 1800)
task_time_limit = settings.env_int("TASK_TIME_LIMIT", 1900)
# Must exceed the hard time limit, or the broker redelivers tasks that are still running.
broker_transport_options = {
    "visibility_timeout": settings.env_int("BROKER_VISIBILITY_TIMEOUT", 3600),
    # How often a worker looks for messages a dead worker left unacknowledged (default 100 s).
    "unacked_restore_interval": settings.env_int("BROKER_RESTORE_INTERVAL", 10),
    "unacked_restore_throttle": 1,
}
result_backend_transport_options = {"retry_policy": {"timeout": 5.0}}
broker_connection_retry_on_startup = True
broker_connection_timeout = 3

task_default_queue = "default"
task_queues = (Queue("default"), Queue("exports"), Queue("refresh"))
task_routes = {
    "exports.*": {"queue": "exports"},
    "cache.*": {"queue": "refresh"},
    "rollups.*": {"queue": "refresh"},
}

worker_hijack_root_logger = False
worker_send_task_events = False

_SNAPSHOT_EVERY = settings.env_int("SNAPSHOT_SCHEDULE_SECONDS", 300)
_EXPORT_CLEANUP_EVERY = settings.env_int("EXPORT_CLEANUP_SECONDS", 3600)
_CACHE_WARM_EVERY = settings.env_int("CACHE_WARM_SECONDS", 900)

# Each entry expires before its next run: runs piled up while workers were down are dropped, not replayed.
beat_schedule = {
    "beat-heartbeat": {"task": "ops.beat_heartbeat", "schedule": 30.0, "options": {"expires": 30}},
    "snapshots-schedule-due": {
        "task": "snapshots.schedule_due",
        "schedule": float(_SNAPSHOT_EVERY),
        "options": {"expires": _SNAPSHOT_EVERY},
    },
    "exports-cleanup": {
        "task": "maintenance.cleanup_exports",
        "schedule": float(_EXPORT_CLEANUP_EVERY),
        "options": {"expires": _EXPORT_CLEANUP_EVERY},
    },
    "rollups-refresh-pending": {
        "task": "rollups.refresh_pending",
        "schedule": 60.0,
        "options": {"expires": 60},
    },
    "rollups-reconcile-recent": {
        "task": "rollups.reconcile_recent",
        "schedule": float(settings.env_int("ROLLUP_RECONCILE_SECONDS", 900)),
        "options": {"expires": 900},
    },
    "revoked-tokens-cleanup": {
        "task": "maintenance.cleanup_revoked_tokens",
        "schedule": 3600.0,
        "options": {"expires": 3600},
    },
    "jobs-requeue-lost": {
        "task": "maintenance.requeue_lost_jobs",
        "schedule": 60.0,
        "options": {"expires": 60},
    },
    # Breaches are recorded within a tick (plus the sweep) of their instant: well inside a minute.
    "sla-record-breaches": {"task": "sla.record_breaches", "schedule": 15.0, "options": {"expires": 15}},
    "cache-warm": {
        "task": "cache.warm",
        "schedule": float(_CACHE_WARM_EVERY),
        "options": {"expires": _CACHE_WARM_EVERY},
    },
}
