"""kombu's Redis transport, with a closed connection failing as a lost connection.

When Redis goes away while a task runs, Celery's consumer closes its broker connection and starts
again. Closing a channel gives the channel's unacknowledged messages back to Redis, and with kombu
5.7 that runs after the transport has let go of its connection: building a client then fails with an
AttributeError (no host to read). kombu ignores connection errors while it closes, not that one, so
the consumer stopped for good ("Unrecoverable error") while the worker process lived on, taking no
task again.

Here a channel of a released connection raises redis's ConnectionError instead, which the closing
code ignores. The unacknowledged messages stay in Redis's unacked set, where the transport's restore
(on the visibility timeout, or the next channel's restore) finds them, as after any lost connection.

`install()` (called where the Celery app is made) points kombu's `redis` and `rediss` schemes at this
transport, so it is used whatever sets the broker's URL (BROKER_URL, CELERY_BROKER_URL, `celery -b`,
a failover URL); the scheme's name is kept, and with it kombu's TLS defaults for `rediss`.
"""

from __future__ import annotations

from typing import Any

import kombu.transport
import redis
from kombu.transport import redis as kombu_redis


class Channel(kombu_redis.Channel):
    def _connparams(self, asynchronous: bool = False) -> dict[str, Any]:
        if self.connection is None or self.connection.client is None:
            raise redis.ConnectionError("the broker connection was released")
        return super()._connparams(asynchronous=asynchronous)  # type: ignore[no-any-return]


class Transport(kombu_redis.Transport):
    Channel = Channel


PATH = f"{__name__}:Transport"
SCHEMES = ("redis", "rediss")


def install() -> None:
    """Make kombu resolve the `redis` and `rediss` schemes to this transport (again: no harm)."""
    for scheme in SCHEMES:
        kombu.transport.TRANSPORT_ALIASES[scheme] = PATH
        # kombu caches what a name resolved to; a name resolved before this would keep its class.
        kombu.transport._transport_cache.pop(scheme, None)
