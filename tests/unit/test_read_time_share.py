"""A computation's share of its process's time: 1/k of what passes while k run (processor sharing)."""

from __future__ import annotations

import pytest

from webapp.analytics import read_time


def test_computations_side_by_side_are_charged_their_shares(monkeypatch):
    now = [100.0]
    monkeypatch.setattr(read_time.time, "monotonic", lambda: now[0])
    clock = read_time.SharedClock()
    first = clock.start()
    now[0] += 1.0  # alone for a second
    second = clock.start()
    now[0] += 2.0  # two side by side for two seconds: one each
    assert clock.end(second) == pytest.approx(1.0)
    now[0] += 0.5  # alone again
    assert clock.end(first) == pytest.approx(2.5)
    # Nothing running: time passes uncharged.
    now[0] += 10.0
    third = clock.start()
    now[0] += 0.25
    assert clock.end(third) == pytest.approx(0.25)
