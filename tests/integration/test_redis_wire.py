"""The raw round-trip wire against real Redis: replies, errors, databases, users, outages, timeouts."""

from __future__ import annotations

import secrets
import socket
import threading
import time
from urllib.parse import urlsplit, urlunsplit

import pytest
import redis

from tests.conftest import wait_redis
from webapp.infra.redis_wire import Wire, round_trip


@pytest.fixture
def client(services):
    return redis.Redis.from_url(services.redis_url)


def _with_db(url: str, db: int) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{db}"))


def test_replies_match_redis_py(services, client):
    key = f"wire:{secrets.token_hex(4)}"
    wire = Wire(services.redis_url, timeout=1.0)
    commands = [("SET", key, "v"), ("GET", key), ("INCR", key + ":n"), ("GET", "wire:missing"), ("DEL", key)]
    assert wire.execute(commands) == [b"OK", b"v", 1, None, 1]
    assert round_trip(client, None, [("INCR", key + ":n"), ("DEL", key + ":n")]) == [2, 1]


def test_error_replies_are_returned_not_raised(services):
    wire = Wire(services.redis_url, timeout=1.0)
    replies = wire.execute([("EVALSHA", "0" * 40, 0), ("PING",)])
    assert isinstance(replies[0], redis.ResponseError)
    assert str(replies[0]).startswith("NOSCRIPT")
    assert replies[1] == b"PONG"


def test_selects_the_urls_database(services):
    key = f"wire:{secrets.token_hex(4)}"
    Wire(_with_db(services.redis_url, 3), timeout=1.0).execute([("SET", key, "in-3", "EX", 60)])
    assert redis.Redis.from_url(_with_db(services.redis_url, 3)).get(key) == b"in-3"
    assert redis.Redis.from_url(_with_db(services.redis_url, 0)).get(key) is None


def test_authenticates_as_the_urls_user(services, client):
    user, password = f"wire{secrets.token_hex(3)}", secrets.token_urlsafe(12)
    client.acl_setuser(user, enabled=True, passwords=[f"+{password}"], commands=["+ping"], keys=[])
    try:
        parts = urlsplit(services.redis_url)
        url = urlunsplit(parts._replace(netloc=f"{user}:{password}@{parts.hostname}:{parts.port}"))
        assert Wire(url, timeout=1.0).execute([("PING",)]) == [b"PONG"]
        bad = urlunsplit(parts._replace(netloc=f"{user}:wrong@{parts.hostname}:{parts.port}"))
        with pytest.raises(redis.AuthenticationError):
            Wire(bad, timeout=1.0).execute([("PING",)])
    finally:
        client.acl_deluser(user)


def test_each_thread_has_its_own_connection(services):
    wire = Wire(services.redis_url, timeout=1.0)
    ids: list[int] = []

    def work() -> None:
        ids.append(wire.execute([("CLIENT", "ID")])[0])

    threads = [threading.Thread(target=work) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(set(ids)) == 4
    # A thread keeps its connection from one round trip to the next.
    assert wire.execute([("CLIENT", "ID")]) == wire.execute([("CLIENT", "ID")])


def test_survives_a_redis_restart_and_fails_fast_while_it_is_down(services, stoppable_redis):
    wire = Wire(services.redis_url, timeout=1.0)
    assert wire.execute([("PING",)]) == [b"PONG"]
    stoppable_redis.stop()
    try:
        started = time.monotonic()
        with pytest.raises(redis.ConnectionError):
            wire.execute([("PING",)])
        assert time.monotonic() - started < 1.0
    finally:
        stoppable_redis.start()
    wait_redis(services.redis_url)
    # The connection from before the restart is stale; the round trip goes through on a new one.
    assert wire.execute([("PING",)]) == [b"PONG"]


def test_a_silent_server_times_out():
    listener = socket.create_server(("127.0.0.1", 0))
    accepted: list[socket.socket] = []
    threading.Thread(target=lambda: accepted.append(listener.accept()[0]), daemon=True).start()
    try:
        wire = Wire(f"redis://127.0.0.1:{listener.getsockname()[1]}/0", timeout=0.3)
        started = time.monotonic()
        with pytest.raises(redis.TimeoutError):
            wire.execute([("PING",)])
        assert 0.25 < time.monotonic() - started < 2.0
    finally:
        for conn in accepted:
            conn.close()
        listener.close()


def test_tls_urls_are_left_to_redis_py():
    assert Wire.for_url("rediss://127.0.0.1:6380/0", timeout=1.0) is None
    assert Wire.for_url("redis://127.0.0.1:6379/0", timeout=1.0) is not None
