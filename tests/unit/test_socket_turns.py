"""Sockets of one organization take turns computing values in a process; other organizations don't
wait for them, and a socket whose turn does not come in time is refused before any session opens."""

from __future__ import annotations

import threading
import time

import pytest

from webapp.api.ws import messages, subscriptions
from webapp.api.ws.subscriptions import Stores, Turns


def test_one_computation_of_an_organization_at_a_time_and_none_of_anothers_waits():
    turns = Turns()
    assert turns.of(1) is turns.of(1)
    assert turns.of(1) is not turns.of(2)
    held = turns.of(1)
    held.acquire()
    try:
        assert not turns.of(1).acquire(timeout=0.05)
        assert turns.of(2).acquire(timeout=0.05)
        turns.of(2).release()
    finally:
        held.release()


def test_a_socket_whose_turn_does_not_come_is_refused_without_opening_a_session(monkeypatch):
    monkeypatch.setattr(subscriptions, "TURNS", Turns())
    monkeypatch.setattr(subscriptions, "TURN_WAIT_SECONDS", 0.1)

    def no_session():
        raise AssertionError("a session was opened before the turn came")

    stores = Stores(client=None, sessions=no_session)  # type: ignore[arg-type]
    holder = threading.Thread(target=lambda: _hold(subscriptions.TURNS.of(7), 0.5))
    holder.start()
    time.sleep(0.05)
    started = time.monotonic()
    with pytest.raises(messages.MessageError, match="computing values"):
        stores.values(7, ["ticket_count"], {})
    assert time.monotonic() - started < 0.4
    holder.join()


def _hold(lock: threading.Lock, seconds: float) -> None:
    with lock:
        time.sleep(seconds)
