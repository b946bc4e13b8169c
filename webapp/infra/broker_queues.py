"""What the Redis broker holds for the job platform: messages still waiting in a queue, and those a
lost worker took and never acknowledged.

kombu has no public call that lists the messages of a queue without taking them, so this module is
the one place that knows how its Redis transport lays a queue out: a list per priority step, named
from the channel's `sep` and `priority_steps` transport options (both documented).
"""

from __future__ import annotations

from collections.abc import Iterable

from celery import Celery


class WaitingMessages:
    """The raw messages waiting in some queues; `task_id in waiting` asks whether one is among them.

    A task id is a UUID, which occurs in no other part of a message: a substring test needs no parse.
    """

    def __init__(self, raw: Iterable[bytes]) -> None:
        self._raw = b"\n".join(raw)

    def __contains__(self, task_id: object) -> bool:
        return isinstance(task_id, str) and task_id.encode() in self._raw


def restore_unacknowledged(celery: Celery) -> None:
    """Put back in their queues the messages unacknowledged for longer than the visibility timeout.

    kombu's own sweep, run now: workers run it only every 100 s by default, and a killed worker's
    message would wait for it.
    """
    with celery.connection_for_write() as connection:
        connection.default_channel.qos.restore_visible(num=None, interval=1)


def waiting_messages(celery: Celery, queues: Iterable[str]) -> WaitingMessages:
    """Every message waiting in `queues` (not yet taken by a worker)."""
    with celery.connection_for_write() as connection:
        channel = connection.default_channel
        pipe = channel.client.pipeline(transaction=False)
        for queue in sorted(set(queues)):
            # Step 0 is the queue's own name; the others append the separator and the step.
            for step in channel.priority_steps:
                pipe.lrange(f"{queue}{channel.sep}{step}" if step else queue, 0, -1)
        return WaitingMessages(message for reply in pipe.execute() for message in reply)
