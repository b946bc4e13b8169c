"""Celery settings (lowercase), queues, routes and the beat schedule."""

from kombu import Queue

from webapp import config as settings

_instance = settings.instance_path()
_redis = settings.redis_url(_instance)

broker_url = settings.env("BROKER_URL", _redis)
result_backend = _redis
result_expires = settings.env_int("CELERY_RESULT_EXPIRES", 24 * 3600)

task_serializer = "json"
result_serializer = "json"
accept_content = ["json"]
timezone = "UTC"
enable_utc = True

# A task is acknowledged only once it finished, and a worker that dies mid-task gives it back.
task_acks_late = True
task_reject_on_worker_lost = True
worker_prefetch_multiplier = 1
task_track_started = True

task_soft_time_limit = settings.env_int("TASK_SOFT_TIME_LIMIT", 1800)
task_time_limit = settings.env_int("TASK_TIME_LIMIT", 1900)
# Must exceed the hard time limit, or the broker redelivers tasks that are still running.
broker_transport_options = {"visibility_timeout": settings.env_int("BROKER_VISIBILITY_TIMEOUT", 3600)}
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

beat_schedule = {
    "beat-heartbeat": {"task": "ops.beat_heartbeat", "schedule": 30.0},
}
