"""The near cache against real Redis: copies dropped by Redis's invalidation messages, a fetch racing a
change never kept, everything dropped on a flush, a restart or a silent server, and analytics hits
that make no round trip yet see every ticket change at once."""

from __future__ import annotations

import secrets
import socket
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit, urlunsplit

import pytest
import redis

from tests.conftest import wait_redis
from tests.integration.redis_monitor import Monitor, lookups, warm
from webapp.infra import near_cache
from webapp.infra.near_cache import MISSING, NearCache, NearView

PREFIX = "nctest:"


@pytest.fixture
def client(services) -> redis.Redis:
    return redis.Redis.from_url(services.redis_url)


def _open(url: str, max_bytes: int = 1 << 20) -> NearCache:
    cache = NearCache(url, prefixes=(PREFIX,), timeout=1.0, max_bytes=max_bytes)
    assert cache.begin() is None  # the first call connects; that request asks Redis itself
    return cache


def _view(cache: NearCache) -> NearView:
    view = cache.begin()
    assert view is not None
    return view


@pytest.fixture
def near(services) -> Iterator[NearCache]:
    cache = _open(services.redis_url)
    yield cache
    cache.close()


def _key() -> str:
    return f"{PREFIX}{secrets.token_hex(6)}"


def test_a_copy_is_served_until_another_client_changes_the_key(near, client):
    key, other = _key(), _key()
    view = _view(near)
    view.put_many([(key, "v1"), (other, "o1")], ttl=60)
    assert _view(near).get(key) == "v1"
    client.set(key, "v2")
    # The message is read before the next view begins: the copy is gone, the other one stays.
    after = _view(near)
    assert after.get(key) is MISSING
    assert after.get(other) == "o1"
    assert after.get_many([key, other]) is None


def test_every_kind_of_change_drops_the_copy(near, client):
    changes = {
        "incr": lambda k: client.incr(k),
        "delete": lambda k: client.delete(k),
        "expire": lambda k: client.expire(k, 100),
        "overwrite": lambda k: client.set(k, "x"),
    }
    for name, change in changes.items():
        key = _key()
        client.set(key, "0")
        _view(near).put(key, name, ttl=60)
        assert _view(near).get(key) == name
        change(key)
        assert _view(near).get(key) is MISSING, name


def test_keys_outside_the_prefixes_are_not_reported(near, client):
    key = _key()
    _view(near).put(key, "kept", ttl=60)
    client.set(f"other:{secrets.token_hex(4)}", "1")
    assert _view(near).get(key) == "kept"


def test_a_fetch_that_races_a_change_is_not_kept(near, client):
    key = _key()
    client.set(key, "old")
    view = _view(near)  # the request begins
    fetched = client.get(key)  # its round trip reads the value...
    client.set(key, "new")  # ...and another client changes it before the copy is stored
    view.put(key, fetched, ttl=60)
    assert _view(near).get(key) is MISSING
    # A view begun after the change keeps what it fetches.
    later = _view(near)
    later.put(key, client.get(key), ttl=60)
    assert _view(near).get(key) == b"new"


def test_copies_expire_after_their_ttl(near):
    key = _key()
    _view(near).put(key, "short", ttl=0.2)
    assert _view(near).get(key) == "short"
    time.sleep(0.3)
    assert _view(near).get(key) is MISSING


def test_the_least_recently_used_copies_go_beyond_max_bytes(services):
    cache = _open(services.redis_url, max_bytes=1000)
    try:
        keys = [_key() for _ in range(4)]
        for key in keys[:3]:
            _view(cache).put(key, key, ttl=60, size=300)
        assert _view(cache).get(keys[0]) == keys[0]  # now the most recently used
        _view(cache).put(keys[3], keys[3], ttl=60, size=300)
        view = _view(cache)
        assert [view.get(k) is MISSING for k in keys] == [False, True, False, False]
        assert cache.size() == (3, 900)
        _view(cache).put(_key(), "too big", ttl=60, size=1001)
        assert cache.size() == (3, 900)
    finally:
        cache.close()


def test_a_flush_drops_every_copy(services):
    parts = urlsplit(services.redis_url)
    url = urlunsplit(parts._replace(path="/9"))  # a database of its own: FLUSHDB clears only it
    cache = _open(url)
    try:
        key = _key()
        _view(cache).put(key, "v", ttl=60)
        redis.Redis.from_url(url).flushdb()
        # Redis may write the flusher's reply before the invalidation message: a moment later at most.
        deadline = time.monotonic() + 2
        while _view(cache).get(key) is not MISSING:
            assert time.monotonic() < deadline, "the flush's invalidation message never came"
            time.sleep(0.005)
    finally:
        cache.close()


def test_a_redis_restart_drops_every_copy_and_the_cache_comes_back(services, stoppable_redis):
    cache = _open(services.redis_url)
    try:
        key = _key()
        view = _view(cache)
        view.put(key, "before", ttl=60)
        stoppable_redis.stop()
        try:
            # Redis removes its pid file (which stop() watches) before it closes its connections.
            deadline = time.monotonic() + 5
            while cache.begin() is not None:
                assert time.monotonic() < deadline, "the closed connection went unnoticed"
                time.sleep(0.02)
            assert view.get(key) is MISSING  # nothing is trusted, nor served to a request begun before
        finally:
            stoppable_redis.start()
        wait_redis(services.redis_url)
        deadline = time.monotonic() + 5
        while (view := cache.begin()) is None:
            assert time.monotonic() < deadline, "the near cache did not reconnect"
            time.sleep(0.1)
        assert view.get(key) is MISSING
        view.put(key, "after", ttl=60)
        assert _view(cache).get(key) == "after"
    finally:
        cache.close()


class FakeRedis:
    """A server that completes the near cache's handshake, then never answers (or refuses tracking)."""

    def __init__(self, *, tracking: bool = True, loading: int = 0) -> None:
        self.tracking = tracking
        self.loading = loading  # how many connections are told LOADING first, as a starting Redis does
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.connections: list[socket.socket] = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            self.connections.append(conn)
            threading.Thread(target=self._talk, args=(conn,), daemon=True).start()

    def _talk(self, conn: socket.socket) -> None:
        try:
            conn.recv(4096)  # CLIENT ID
            if self.loading:
                self.loading -= 1
                conn.sendall(b"-LOADING Redis is loading the dataset in memory\r\n")
                conn.recv(4096)
                return
            conn.sendall(b":7\r\n")
            conn.recv(4096)  # CLIENT TRACKING ... and SUBSCRIBE
            if self.tracking:
                conn.sendall(b"+OK\r\n*3\r\n$9\r\nsubscribe\r\n$20\r\n__redis__:invalidate\r\n:1\r\n")
            else:
                conn.sendall(b"-ERR unknown command 'CLIENT'\r\n-ERR unknown command 'SUBSCRIBE'\r\n")
            while conn.recv(4096):  # PINGs, never answered
                pass
        except OSError:
            return

    def close(self) -> None:
        self.listener.close()
        for conn in self.connections:
            conn.close()


def test_a_server_that_stops_answering_pings_turns_the_cache_off(monkeypatch):
    monkeypatch.setattr(near_cache, "HEARTBEAT_SECONDS", 0.05)
    monkeypatch.setattr(near_cache, "DEAD_AFTER_SECONDS", 0.3)
    server = FakeRedis()
    cache = _open(f"redis://127.0.0.1:{server.port}/0")
    try:
        view = _view(cache)
        view.put(f"{PREFIX}k", "v", ttl=60)
        time.sleep(0.1)
        assert _view(cache).get(f"{PREFIX}k") == "v"  # a ping is now out, unanswered
        time.sleep(0.4)
        assert cache.begin() is None
        assert cache.size() == (0, 0)
    finally:
        cache.close()
        server.close()


def test_a_server_without_tracking_leaves_the_cache_off():
    server = FakeRedis(tracking=False)
    cache = _open(f"redis://127.0.0.1:{server.port}/0")
    try:
        assert cache.begin() is None
        time.sleep(near_cache.RETRY_SECONDS + 0.1)
        assert cache.begin() is None  # refused tracking: not asked again for minutes
        assert len(server.connections) == 1
    finally:
        cache.close()
        server.close()


def test_a_redis_still_loading_its_data_is_asked_again_a_second_later():
    server = FakeRedis(loading=1)
    cache = _open(f"redis://127.0.0.1:{server.port}/0")
    try:
        assert cache.begin() is None
        time.sleep(near_cache.RETRY_SECONDS + 0.1)
        assert cache.begin() is None  # connects now
        assert cache.begin() is not None
        assert len(server.connections) == 2
    finally:
        cache.close()
        server.close()


def test_an_unreachable_server_costs_no_wait():
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    listener.close()
    cache = NearCache(f"redis://127.0.0.1:{port}/0", prefixes=(PREFIX,), timeout=1.0, max_bytes=1000)
    started = time.monotonic()
    assert [cache.begin() for _ in range(100)] == [None] * 100
    assert time.monotonic() - started < 0.5


# --- through the API ------------------------------------------------------------------------------

SERIES = "/api/v1/analytics/time-series/ticket_count?granularity=daily&start={start}&end={end}"


def _series_path() -> str:
    today = datetime.now(UTC).date()
    return SERIES.format(start=today - timedelta(days=3), end=today + timedelta(days=2))


@pytest.fixture
def monitor(services) -> Iterator[Monitor]:
    watching = Monitor(services.redis_url)
    yield watching
    watching.close()


def test_cache_hits_make_no_round_trip(tenant, monitor):
    path = _series_path()
    warm(tenant.viewer, path, monitor, tenant.org_id)
    answers = [tenant.viewer.get(path) for _ in range(20)]
    assert {a.status_code for a in answers} == {200}
    assert {a.get_json()["meta"]["cache"] for a in answers} == {"hit"}
    assert lookups(monitor.lines(), tenant.org_id) == []


def test_a_ticket_change_is_seen_at_once(tenant, monitor):
    path = _series_path()
    warm(tenant.viewer, path, monitor)
    total = tenant.viewer.get(path).get_json()["summary"]["total_count"]
    for n in range(1, 6):
        created = tenant.agent.post("/api/v1/tickets", json={"subject": f"near {n}", "priority": "high"})
        assert created.status_code == 201
        answer = tenant.viewer.get(path).get_json()
        assert answer["summary"]["total_count"] == total + n
        assert answer["meta"]["cache"] == "miss"
        assert tenant.viewer.get(path).get_json()["meta"]["cache"] == "hit"


def test_a_logout_is_refused_at_once(client, tenant, app):
    flask_client = app.test_client()
    user = tenant.users["viewer"]
    tokens = flask_client.post(
        "/api/v1/auth/login", json={"email": user["email"], "password": user["password"]}
    ).get_json()
    headers = {"Authorization": f"Bearer {tokens['access_token']}"}
    path = _series_path()
    for _ in range(5):
        assert flask_client.get(path, headers=headers).status_code == 200
    assert flask_client.post("/api/v1/auth/logout", headers=headers).status_code == 200
    assert flask_client.get(path, headers=headers).status_code == 401
