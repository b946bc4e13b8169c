"""The request hot path's round trip and the near cache's connection against real Redis: replies in
order, error replies returned, a restart survived, a silent server timed out, the URL's user and
database honoured, TLS left to redis-py alone."""

from __future__ import annotations

import secrets
import socket
import threading
import time
from urllib.parse import urlsplit, urlunsplit

import pytest
import redis

from tests.conftest import wait_redis
from webapp.infra.near_cache import MISSING, NearCache
from webapp.infra.redis_client import make_redis, round_trip


@pytest.fixture
def client(services):
    return redis.Redis.from_url(services.redis_url)


def test_replies_in_order_with_error_replies_returned_not_raised(app):
    key = f"rt:{secrets.token_hex(4)}"
    with app.app_context():
        replies = round_trip(
            [("SET", key, "v"), ("GET", key), ("EVALSHA", "0" * 40, 0), ("INCR", key + ":n"), ("DEL", key)]
        )
    assert replies[:2] == [True, b"v"]
    assert isinstance(replies[2], redis.ResponseError)
    assert str(replies[2]).startswith("No matching script")
    assert replies[3:] == [1, 1]


def test_survives_a_redis_restart_and_fails_fast_while_it_is_down(app, services, stoppable_redis):
    with app.app_context():
        assert round_trip([("PING",)]) == [True]
        stoppable_redis.stop()
        try:
            started = time.monotonic()
            with pytest.raises(redis.ConnectionError):
                round_trip([("PING",)])
            assert time.monotonic() - started < 1.0
        finally:
            stoppable_redis.start()
        wait_redis(services.redis_url)
        # The pooled connection from before the restart is stale; the round trip goes through on a new one.
        assert round_trip([("PING",)]) == [True]


def test_a_silent_server_times_out(app, monkeypatch):
    listener = socket.create_server(("127.0.0.1", 0))
    accepted: list[socket.socket] = []
    threading.Thread(target=lambda: accepted.append(listener.accept()[0]), daemon=True).start()
    try:
        silent = make_redis(f"redis://127.0.0.1:{listener.getsockname()[1]}/0", socket_timeout=0.3)
        monkeypatch.setitem(app.extensions, "redis", silent)
        with app.app_context():
            started = time.monotonic()
            with pytest.raises(redis.TimeoutError):
                round_trip([("PING",)])
        assert 0.25 < time.monotonic() - started < 2.0
    finally:
        for conn in accepted:
            conn.close()
        listener.close()


def _with(url: str, *, db: int | None = None, user: str | None = None, password: str | None = None) -> str:
    parts = urlsplit(url)
    if db is not None:
        parts = parts._replace(path=f"/{db}")
    if user is not None:
        parts = parts._replace(netloc=f"{user}:{password}@{parts.hostname}:{parts.port}")
    return urlunsplit(parts)


def _near(url: str) -> NearCache:
    near = NearCache(url, prefixes=("rttest:",), timeout=1.0, max_bytes=1 << 20)
    assert near.begin() is None  # connects
    return near


def test_the_near_cache_connects_as_the_urls_user_on_its_database(services, client):
    user, password = f"near{secrets.token_hex(3)}", secrets.token_urlsafe(12)
    commands = ["+client", "+subscribe", "+ping", "+select"]
    client.acl_setuser(user, enabled=True, passwords=[f"+{password}"], commands=commands, keys=[])
    near = _near(_with(services.redis_url, db=3, user=user, password=password))
    try:
        view = near.begin()
        assert view is not None
        key = f"rttest:{secrets.token_hex(4)}"
        view.put(key, "v1", ttl=60)
        assert near.begin().get(key) == "v1"
        redis.Redis.from_url(_with(services.redis_url, db=3)).set(key, "v2")
        time.sleep(0.05)
        assert near.begin().get(key) is MISSING
        refused = _near(_with(services.redis_url, user=user, password="wrong"))
        assert refused.begin() is None
        refused.close()
    finally:
        near.close()
        client.acl_deluser(user)


def test_tls_urls_turn_the_near_cache_off():
    assert NearCache.for_url("rediss://127.0.0.1:6380/0", prefixes=("p:",), timeout=1.0, max_bytes=1) is None
    assert (
        NearCache.for_url("redis://127.0.0.1:6379/0", prefixes=("p:",), timeout=1.0, max_bytes=1) is not None
    )
