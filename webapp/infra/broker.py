"""Sending a task together with Redis commands of our own, in one round trip to the broker's Redis.

Celery publishes a task to a Redis broker as an LPUSH of the message onto its queue's list. When the
broker is the Redis the application writes its events to, a job's `queued` event and its task can go
in one pipeline, the event first: one write to the socket and one reply to wait for, instead of a
round trip on each of two connections (and kombu's own connection handling around its LPUSH).

Celery still builds and routes the message (its signals, headers and routing apply as for any send):
kombu's Redis transport hands the final command of a message to the publish batch in force on the
producer (`Producer.batch`), and `Commands` is such a batch that keeps the command instead of sending
it. Any other broker, or a kombu that gives no command to keep, sends the usual way.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import redis
from celery import Celery
from kombu.transport import redis as kombu_redis

from webapp.infra.redis_client import Command


class Commands:
    """A stand-in for kombu's Redis publish batch that keeps each message's final commands."""

    def __init__(self) -> None:
        self.commands: list[tuple[str, tuple[Any, ...]]] = []

    def publish(self, channel: Any, message: Any, **kwargs: Any) -> Any:
        """Route one prepared message (kombu calls this in place of sending it)."""
        return channel.basic_publish(message, _publish_batch=self, **kwargs)

    def add(self, name: str, *args: Any) -> None:
        """Keep one final Redis command of the message being routed (kombu's transport calls this)."""
        self.commands.append((name, args))


def same_server(app: Celery, client: redis.Redis) -> bool:
    """Whether `app`'s broker is the Redis server `client` talks to, through a kombu whose Redis
    transport hands its commands to a publish batch (a pipeline on `client` can then carry both)."""
    url = str(app.conf.broker_url or "")
    if not url.startswith(("redis://", "rediss://", "unix://")):
        return False
    if not hasattr(kombu_redis.Channel, "create_publish_batch"):
        return False
    broker = redis.connection.parse_url(url)
    kwargs = client.connection_pool.connection_kwargs
    return all(broker.get(key, default) == kwargs.get(key, default) for key, default in _DEFAULTS.items())


_DEFAULTS: dict[str, Any] = {"host": "localhost", "port": 6379, "db": 0, "path": None, "username": None}


def task_commands(app: Celery, name: str, **options: Any) -> list[tuple[str, tuple[Any, ...]]] | None:
    """The Redis commands that publish the task `name` with `options` (send_task's), sending nothing.

    Only for a Redis broker (same_server); None when the producer is already in a batch of its own.
    """
    kept = Commands()
    with app.producer_or_acquire() as producer:
        local = producer._batch_local  # kombu's per-thread batch of this producer (Producer.batch)
        if getattr(local, "current", None) is not None:
            return None
        local.current = kept
        try:
            app.send_task(name, producer=producer, **options)
        finally:
            del local.current
    if not kept.commands:
        raise RuntimeError(f"kombu's Redis transport gave no command for the task {name}")
    return kept.commands


def send_with(
    client: redis.Redis, before: Sequence[Command], commands: Sequence[tuple[str, tuple[Any, ...]]]
) -> list[Any]:
    """Run `before`, then the task's `commands` (task_commands), in one pipeline on `client`.

    The replies of `before` (an error reply is an exception in the list); raises RedisError when a
    command of the task failed or Redis could not be reached.
    """
    for attempt in (1, 2):
        pipe = client.pipeline(transaction=False)
        for command in before:
            pipe.execute_command(*command)
        for name, args in commands:
            getattr(pipe, name)(*args)
        try:
            replies = pipe.execute(raise_on_error=False)
            break
        except redis.ConnectionError:
            # A connection the server dropped as it was used: once more on a fresh one (a task sent
            # twice is run once: its job's run lock and state decide).
            if attempt == 2:
                raise
    for reply in replies[len(before) :]:
        if isinstance(reply, Exception):
            raise reply
    return replies[: len(before)]


# The threads that make task messages ahead (JobQueue.prepare), per process: a forked child (a
# gunicorn or Celery worker) starts its own.
_MAKERS: tuple[int, ThreadPoolExecutor] | None = None
_MAKERS_LOCK = threading.Lock()


def _makers() -> ThreadPoolExecutor:
    global _MAKERS
    with _MAKERS_LOCK:
        if _MAKERS is None or _MAKERS[0] != os.getpid():
            _MAKERS = (os.getpid(), ThreadPoolExecutor(max_workers=2, thread_name_prefix="task-messages"))
        return _MAKERS[1]


class JobQueue:
    """The Celery app as the job platform's task queue (jobs.transitions.TaskQueue), which also sends
    Redis commands and a task in one round trip when the broker is the application's Redis."""

    def __init__(self, app: Celery, client: redis.Redis | None) -> None:
        self.app = app
        self.client = client
        self.together = client is not None and same_server(app, client)

    @property
    def control(self) -> Any:
        """Celery's remote control of the workers."""
        return self.app.control

    def send_task(self, name: str, **options: Any) -> Any:
        """Celery's send_task."""
        return self.app.send_task(name, **options)

    def prepare(self, name: str, **options: Any) -> Future[list[tuple[str, tuple[Any, ...]]] | None] | None:
        """Start making the task's commands (task_commands) on a helper thread, so that Celery's
        building of the message (about 0.8 ms of Python) runs while the caller waits for the
        database; None when the broker is elsewhere."""
        if not self.together or self.client is None:
            return None
        return _makers().submit(task_commands, self.app, name, **options)

    def send_task_after(
        self,
        before: Sequence[Command],
        name: str,
        *,
        prepared: Future[list[tuple[str, tuple[Any, ...]]] | None] | None = None,
        **options: Any,
    ) -> list[Any] | None:
        """The replies of the Redis commands `before`, run with the task's own in one pipeline, the
        task's last; None when the broker is elsewhere (nothing sent). `prepared`: the same task's
        commands from `prepare`. Raises when the task's own commands failed or Redis could not be
        reached (redis-py's retries of a lost connection apply)."""
        if not self.together or self.client is None:
            return None
        commands = prepared.result() if prepared is not None else task_commands(self.app, name, **options)
        if commands is None:
            return None
        return send_with(self.client, before, commands)
