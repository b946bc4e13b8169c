"""The values a metric_update carries are read once per event and subscription in a process: sockets
subscribed alike share the read, and get the same values."""

from __future__ import annotations

import threading
import time

import pytest

from webapp.api.ws.subscriptions import EventValues


def test_sockets_asking_for_one_events_values_share_one_read():
    memo = EventValues()
    reads: list[int] = []

    def read() -> dict[str, int]:
        reads.append(1)
        time.sleep(0.1)  # the others ask meanwhile
        return {"ticket_count": len(reads)}

    got: list[dict[str, int]] = []
    threads = [
        threading.Thread(target=lambda: got.append(memo.get(("1-0", 7, "{}", ("ticket_count",)), read)))
        for _ in range(20)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(reads) == 1
    assert got == [{"ticket_count": 1}] * 20
    # Another event (or subscription) is a read of its own.
    assert memo.get(("2-0", 7, "{}", ("ticket_count",)), read) == {"ticket_count": 2}


def test_a_failed_read_fails_every_socket_asking_for_that_events_values():
    memo = EventValues()
    key = ("1-0", 7, "{}", ("ticket_count",))
    reads: list[int] = []

    def broken() -> dict[str, int]:
        reads.append(1)
        raise RuntimeError("read time spent")

    for _ in range(3):
        with pytest.raises(RuntimeError):
            memo.get(key, broken)
    assert len(reads) == 1  # not read again by each socket
    assert memo.get(("2-0", 7, "{}", ("ticket_count",)), lambda: {"ticket_count": 3}) == {"ticket_count": 3}


def test_only_the_latest_entries_are_kept():
    memo = EventValues(keep=2)
    for n in range(3):
        memo.get((f"{n}-0",), lambda n=n: {"n": n})
    assert memo.get(("0-0",), lambda: {"n": "again"}) == {"n": "again"}
