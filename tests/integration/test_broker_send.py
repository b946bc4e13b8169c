"""A job's queued event and its task in one round trip (infra.broker.JobQueue): the event lands in the
stream ahead of the task's message, the message is the one Celery's own send pushes (made on the spot
or ahead, on a helper thread), and a broker elsewhere falls back to the usual send."""

from __future__ import annotations

import base64
import json
import uuid

import pytest
import redis
from celery import Celery
from kombu.exceptions import OperationalError

from tests.integration.redis_monitor import Monitor
from webapp.infra.broker import JobQueue, same_server
from webapp.live import events

QUEUE = "an:test:broker-send"


def _celery(url: str) -> Celery:
    app = Celery("broker-send", broker=url)
    app.conf.update(task_serializer="json", accept_content=["json"], task_default_queue="default")
    return app


def _message(raw: bytes) -> dict:
    message = json.loads(raw)
    message["decoded"] = json.loads(base64.b64decode(message["body"]))
    return message


def test_the_event_and_the_task_go_in_one_pipeline_the_event_first(services):
    client = redis.Redis.from_url(services.redis_url)
    celery = _celery(services.redis_url)
    queue = JobQueue(celery, client)
    assert queue.together
    org_id, task_id = 91_101, str(uuid.uuid4())
    client.delete(events.stream_key(org_id), QUEUE)
    monitor = Monitor(services.redis_url)
    try:
        monitor.lines()
        replies = queue.send_task_after(
            [events.xadd_command(org_id, "job_update", {"job_id": task_id, "state": "queued"})],
            "cache.refresh",
            args=[task_id],
            task_id=task_id,
            queue=QUEUE,
            ignore_result=True,
        )
        ran = [line for line in monitor.lines() if '"XADD"' in line or '"LPUSH"' in line]
    finally:
        monitor.close()
    assert replies is not None
    assert len(replies) == 1
    event_id = events.event_id(replies[0], org_id, "job_update")
    assert [e["id"] for e in events.read_since(client, org_id, "0-0")] == [event_id]
    # One connection, the event first, and nothing else of ours around the task's LPUSH.
    assert ['"XADD"' in ran[0], '"LPUSH"' in ran[1], len(ran)] == [True, True, 2], ran
    assert ran[0].split("[", 1)[1].split("]")[0] == ran[1].split("[", 1)[1].split("]")[0]  # one client

    # The message is what Celery's own send pushes (but for the delivery tag, new for each message).
    celery.send_task("cache.refresh", args=[task_id], task_id=task_id, queue=QUEUE, ignore_result=True)
    usual, ours = (_message(raw) for raw in client.lrange(QUEUE, 0, -1))  # LPUSH: newest first
    for message in (usual, ours):
        del message["properties"]["delivery_tag"]
    assert ours == usual
    assert ours["headers"]["id"] == task_id
    assert ours["headers"]["task"] == "cache.refresh"
    assert ours["decoded"][0] == [task_id]
    client.delete(events.stream_key(org_id), QUEUE)
    celery.close()


def test_a_message_made_ahead_is_the_one_made_on_the_spot(services):
    client = redis.Redis.from_url(services.redis_url)
    celery = _celery(services.redis_url)
    queue = JobQueue(celery, client)
    task_id = str(uuid.uuid4())
    options = {"args": [task_id], "task_id": task_id, "queue": QUEUE, "ignore_result": True}
    client.delete(QUEUE)
    prepared = queue.prepare("cache.refresh", **options)
    assert prepared is not None
    assert queue.send_task_after([["PING"]], "cache.refresh", prepared=prepared, **options) == [True]
    assert queue.send_task_after([["PING"]], "cache.refresh", **options) == [True]
    on_the_spot, ahead = (_message(raw) for raw in client.lrange(QUEUE, 0, -1))  # LPUSH: newest first
    # But for the delivery tag, and reply_to: the sending thread's own id, which no job reads (jobs
    # keep no Celery result).
    for message in (on_the_spot, ahead):
        del message["properties"]["delivery_tag"], message["properties"]["reply_to"]
    assert ahead == on_the_spot
    assert ahead["headers"]["id"] == task_id
    # No message is made ahead for a broker the pipeline cannot reach.
    assert JobQueue(_celery("memory://"), client).prepare("cache.refresh", **options) is None
    client.delete(QUEUE)
    celery.close()


def test_a_broker_elsewhere_sends_the_usual_way(services):
    client = redis.Redis.from_url(services.redis_url)
    elsewhere = _celery("redis://127.0.0.1:1/0")
    assert not same_server(elsewhere, client)
    assert JobQueue(elsewhere, client).send_task_after([["PING"]], "cache.refresh") is None
    assert JobQueue(_celery("memory://"), client).send_task_after([["PING"]], "cache.refresh") is None
    assert JobQueue(_celery(services.redis_url), None).send_task_after([["PING"]], "x") is None
    other_db = services.redis_url.rsplit("/", 1)[0] + "/5"
    assert not same_server(_celery(other_db), client)


def test_a_redis_that_is_away_raises(services):
    url = "redis://127.0.0.1:1/0"
    client = redis.Redis.from_url(url, socket_connect_timeout=0.2)
    queue = JobQueue(_celery(url), client)
    # kombu's when its producer's channel cannot connect, redis-py's when the pipeline cannot.
    with pytest.raises((redis.ConnectionError, OperationalError)):
        queue.send_task_after([["PING"]], "cache.refresh", args=["x"], queue=QUEUE, ignore_result=True)
