"""The open sockets' watch hears revocations as they are announced, and keeps its subscription alive."""

from __future__ import annotations

import logging
import time
from typing import Any

import pytest
import redis

from webapp.api.ws import revocations
from webapp.api.ws.revocations import RevocationWatch, Watched
from webapp.security import revocation


def _wait(predicate: Any, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def test_an_announced_revocation_wakes_its_sockets_at_once_and_pings_keep_the_listener(
    services: Any, app: Any, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # A periodic check far off: only the announcement can wake the socket within the wait below.
    monkeypatch.setattr(revocations, "REVOCATION_CHECK_SECONDS", 3600.0)
    monkeypatch.setattr(revocations, "PING_SECONDS", 0.3)
    monkeypatch.setattr(revocations, "LISTEN_SECONDS", 0.1)
    client = redis.Redis.from_url(services.redis_url)
    watch = RevocationWatch(client, app.extensions["db_sessionmaker"], negative_ttl=1)
    woken: list[str] = []
    mine = Watched("jti-mine", time.time() + 600, lambda: woken.append("mine"))
    other = Watched("jti-other", time.time() + 600, lambda: woken.append("other"))
    watch.add(mine)
    watch.add(other)
    assert _wait(lambda: client.pubsub_numsub(revocation.CHANNEL)[0][1] >= 1)
    with caplog.at_level(logging.WARNING, logger=revocations.__name__):
        time.sleep(1.5)  # pings answered: the subscription is kept, nothing said
        assert not [r for r in caplog.records if "unheard" in r.getMessage()]
        started = time.monotonic()
        revocation._announce(client, ["jti-mine", "jti-unknown"])
        assert _wait(lambda: woken == ["mine"], timeout=2.0), woken
        assert time.monotonic() - started < 1.0
    assert mine.revoked
    assert not other.revoked
