"""Operational tasks: beat's heartbeat."""

from celery import shared_task

from webapp import heartbeat
from webapp.redis_client import get_redis


@shared_task(name="ops.beat_heartbeat", ignore_result=True)
def beat_heartbeat() -> None:
    """Record that beat is alive (it schedules this every 30 seconds)."""
    heartbeat.beat_ran(get_redis())
