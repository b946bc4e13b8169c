"""Operational tasks: beat's heartbeat, and a no-op that measures the bare Celery round trip."""

from celery import shared_task

from webapp.infra import heartbeat
from webapp.infra.redis_client import get_redis


@shared_task(name="ops.beat_heartbeat", ignore_result=True)
def beat_heartbeat() -> None:
    """Record that beat is alive. Beat now writes its heartbeat from its scheduler's loop
    (workers/beat.py); the task stays for messages an older beat queued."""
    heartbeat.beat_ran(get_redis())


@shared_task(name="ops.noop")
def noop() -> bool:
    """Do nothing and say so: the broker, a worker and the result backend, without a job."""
    return True
