"""kombu resolves the Redis schemes to the platform's transport once the Celery app is made."""

from __future__ import annotations

import kombu
import pytest
import redis

from webapp.infra import broker_transport


def test_redis_schemes_resolve_to_the_transport_that_survives_a_dropped_connection():
    kombu.Connection("redis://127.0.0.1:1/0").transport_cls  # noqa: B018 (resolved once before)
    broker_transport.install()
    plain = kombu.Connection("redis://:secret@127.0.0.1:6390/2")
    assert isinstance(plain.transport, broker_transport.Transport)
    assert plain.as_uri().startswith("redis://")  # logs and banners keep the scheme's name
    secure = kombu.Connection("rediss://127.0.0.1:6390/0")
    assert isinstance(secure.transport, broker_transport.Transport)
    assert secure.ssl  # kombu's TLS defaults for rediss still apply
    assert not isinstance(kombu.Connection("memory://").transport, broker_transport.Transport)


def test_a_channel_of_a_released_connection_raises_a_connection_error():
    broker_transport.install()
    connection = kombu.Connection("redis://127.0.0.1:1/0")
    channel = broker_transport.Channel.__new__(broker_transport.Channel)
    channel.connection = connection.transport
    connection.transport.client = None  # what kombu's close leaves behind
    with pytest.raises(redis.ConnectionError):
        channel._connparams()
