"""A caller refused again and again within a second has its further refusals held a little before
they are sent (api/plumbing/refusal_pace.py); the answers are the same, and other callers are not held."""

from __future__ import annotations

import time

from webapp.api.plumbing.refusal_pace import Pace

BAD_SERIES = "/api/v1/analytics/time-series/ticket_count?granularity=fortnightly"


def test_past_the_free_refusals_of_a_second_each_is_held():
    pace = Pace(free=3, hold_seconds=0.05)
    assert [pace.hold_for("org:1", now=100.2) for _ in range(5)] == [0, 0, 0, 0.05, 0.05]
    assert pace.hold_for("org:2", now=100.3) == 0  # another caller has its own count
    assert pace.hold_for("org:1", now=101.0) == 0  # a new second starts every count again


def test_no_hold_when_pacing_is_off():
    pace = Pace(free=0, hold_seconds=0)
    assert [pace.hold_for("org:1", now=5.0) for _ in range(3)] == [0, 0, 0]


def _timed(call):
    started = time.perf_counter()
    response = call()
    return response, time.perf_counter() - started


def test_a_tight_loop_of_refusals_is_slowed_and_answered_the_same(app, make_tenant, monkeypatch):
    hold = 0.2
    # One second throughout (a fixed clock): exactly the first two refusals go at once.
    monkeypatch.setitem(app.extensions, "refusal_pace", Pace(free=2, hold_seconds=hold, clock=lambda: 100.0))
    alpha, beta = make_tenant("Alpha"), make_tenant("Beta")
    answers = [_timed(lambda: alpha.viewer.get(BAD_SERIES)) for _ in range(8)]
    assert {response.status_code for response, _ in answers} == {400}
    assert len({response.get_data() for response, _ in answers}) == 1
    assert answers[0][1] < hold  # the first refusals of a second go at once
    assert [seconds >= hold for _, seconds in answers] == [False] * 2 + [True] * 6
    # Another organization's first refusal, and alpha's own accepted requests, are not held.
    _, seconds = _timed(lambda: beta.viewer.get(BAD_SERIES))
    assert seconds < hold
    response, seconds = _timed(lambda: alpha.viewer.get("/api/v1/tickets"))
    assert response.status_code == 200
    assert seconds < hold


def test_callers_without_a_token_are_paced_by_address(app, client, monkeypatch):
    hold = 0.2
    monkeypatch.setitem(app.extensions, "refusal_pace", Pace(free=1, hold_seconds=hold, clock=lambda: 100.0))
    answers = [_timed(lambda: client.post("/api/v1/auth/login", json={"email": "x"})) for _ in range(5)]
    assert {response.status_code for response, _ in answers} == {400}
    assert [seconds >= hold for _, seconds in answers] == [False] + [True] * 4


def test_a_held_refusal_gives_its_database_connection_back_before_it_waits(app, make_tenant, monkeypatch):
    # A refusal that read the database (another organization's ticket: 404) waits without its
    # connection: a flood of held refusals cannot take the pool's connections.
    from webapp.api.plumbing import refusal_pace

    alpha, beta = make_tenant("Alpha"), make_tenant("Beta")
    ticket = beta.agent.post("/api/v1/tickets", json={"subject": "theirs"}).get_json()
    monkeypatch.setitem(app.extensions, "refusal_pace", Pace(free=0, hold_seconds=0.01, clock=lambda: 100.0))
    sessions_at_wait = []

    def sleep(seconds: float) -> None:
        from flask import g

        sessions_at_wait.append("db" in g)

    monkeypatch.setattr(refusal_pace.time, "sleep", sleep)
    response = alpha.viewer.get(f"/api/v1/tickets/{ticket['id']}")
    assert response.status_code == 404
    assert sessions_at_wait == [False]
