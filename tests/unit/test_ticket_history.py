"""tickets.history: the derived events of one ticket, worked out by hand."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from webapp.clocks.evaluation import Reply
from webapp.tickets.history import Facts, Rating, derive, solves, time_in_statuses

T0 = datetime(2026, 3, 7, 22, 0, tzinfo=UTC)
H = timedelta(hours=1)
DIMS = {"priority": "high", "channel": "email", "category": "billing", "assigned_to": "ana"}
HISTORY = [
    (T0, "open"),
    (T0 + 2 * H, "pending"),  # waiting on the customer
    (T0 + 5 * H, "on_hold"),
    (T0 + 6 * H, "resolved"),
    (T0 + 8 * H, "closed"),  # no new solve
    (T0 + 10 * H, "open"),  # a reopen
    (T0 + 11 * H, "resolved"),
]


def _facts(**extra):
    return Facts(org_id=1, created_at=T0, first_response_at=None, dimensions=DIMS, statuses=HISTORY, **extra)


def test_solves_and_the_hours_before_each():
    assert solves(HISTORY) == [(T0 + 6 * H, "resolved"), (T0 + 11 * H, "resolved")]
    assert time_in_statuses(HISTORY, T0 + 6 * H) == {"open": 2.0, "pending": 3.0, "on_hold": 1.0}
    # Cumulative from creation: the reopened hour adds to open.
    assert time_in_statuses(HISTORY, T0 + 11 * H) == {"open": 3.0, "pending": 3.0, "on_hold": 1.0}


def test_backlog_steps_follow_each_unsolved_span():
    steps = [
        (e["occurred_at"], e["status"], e["value"]) for e in derive(_facts()) if e["event_type"] == "backlog"
    ]
    assert steps == [
        (T0, "open", 1.0),
        (T0 + 2 * H, "open", -1.0),
        (T0 + 2 * H, "pending", 1.0),
        (T0 + 5 * H, "pending", -1.0),
        (T0 + 5 * H, "on_hold", 1.0),
        (T0 + 6 * H, "on_hold", -1.0),
        (T0 + 10 * H, "open", 1.0),
        (T0 + 11 * H, "open", -1.0),
    ]
    assert sum(value for _, _, value in steps) == 0


def test_replies_make_next_replies_and_decide_one_touch():
    replies = (
        Reply("customer", T0 + 0.5 * H),  # before any agent reply: starts nothing
        Reply("agent", T0 + H),
        Reply("customer", T0 + 1.5 * H),  # starts a pair
        Reply("customer", T0 + 1.75 * H),  # starts no other
        Reply("agent", T0 + 4 * H, public=False),  # private: stops nothing
        Reply("agent", T0 + 4.5 * H),  # stops it: 3 hours
        Reply("agent", T0 + 10.5 * H),
    )
    events = derive(_facts(replies=replies, rating=Rating(4, T0 + 7 * H)))
    by_type = {}
    for event in events:
        by_type.setdefault(event["event_type"], []).append(event)
    assert [(e["occurred_at"], e["value"]) for e in by_type["next_reply"]] == [(T0 + 4.5 * H, 3.0)]
    # Two public agent replies by the first solve: not one-touch; three by the second.
    assert [e["value"] for e in by_type["solved"]] == [0.0, 0.0]
    # The hours per status, and the spans themselves (microseconds since the Unix epoch), cut at the
    # solve, so another clock can count them again; the second solve's reach back to creation.
    us = int(T0.timestamp()) * 10**6
    hour = 3600 * 10**6
    assert by_type["solved"][0]["detail"] == {
        "open": 2.0,
        "pending": 3.0,
        "on_hold": 1.0,
        "spans": [
            ["open", us, us + 2 * hour],
            ["pending", us + 2 * hour, us + 5 * hour],
            ["on_hold", us + 5 * hour, us + 6 * hour],
        ],
    }
    assert by_type["solved"][1]["detail"]["spans"][-1] == ["open", us + 10 * hour, us + 11 * hour]
    assert len(by_type["solved"][1]["detail"]["spans"]) == 4
    assert [(e["occurred_at"], e["status"], e["value"]) for e in by_type["rated"]] == [
        (T0 + 7 * H, "resolved", 100.0)
    ]
    assert all(e[d] == v for e in events for d, v in DIMS.items())


def test_a_first_response_without_a_reply_counts_as_one_agent_reply():
    facts = Facts(org_id=1, created_at=T0, first_response_at=T0 + H, dimensions=DIMS, statuses=HISTORY[:4])
    assert [e["value"] for e in derive(facts) if e["event_type"] == "solved"] == [100.0]
