"""Which recorded breaches the sweep pushes to live clients (clocks.tracking.Batch.to_push)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from webapp.clocks.tracking import LATE_PUSHES, PUSH_WINDOW, Batch, Recorded

NOW = datetime(2026, 12, 6, 12, tzinfo=UTC)


def _breach(
    org_id: int, ticket_id: int, ago: timedelta, running: bool, seen_ago: timedelta | None = None
) -> Recorded:
    seen = None if seen_ago is None else NOW - seen_ago
    return Recorded(org_id, ticket_id, "first_reply", NOW - ago, 1.0, "urgent", "calendar", running, seen)


def test_fresh_breaches_and_late_ones_of_running_targets_are_pushed():
    batch = Batch(
        recorded=[
            _breach(1, 1, PUSH_WINDOW, running=False),  # fresh, at the window's edge
            _breach(1, 2, PUSH_WINDOW + timedelta(seconds=1), running=False),  # history
            _breach(1, 3, timedelta(days=3), running=True),  # still waiting: news
        ]
    )
    assert [r.ticket_id for r in batch.to_push(NOW)] == [1, 3]


def test_late_pushes_are_capped_per_organization_but_fresh_ones_are_not():
    late = [
        _breach(org, n, timedelta(hours=2), running=True) for org in (1, 2) for n in range(LATE_PUSHES + 5)
    ]
    fresh = [_breach(1, 10_000 + n, timedelta(minutes=1), running=False) for n in range(LATE_PUSHES + 5)]
    pushed = Batch(recorded=late + fresh).to_push(NOW)
    assert sum(1 for r in pushed if r.org_id == 2) == LATE_PUSHES
    assert sum(1 for r in pushed if r.org_id == 1 and r.ticket_id < 10_000) == LATE_PUSHES
    assert sum(1 for r in pushed if r.ticket_id >= 10_000) == LATE_PUSHES + 5


def test_a_business_breach_dated_at_closing_is_news_when_the_office_opens():
    """A target that ran out at closing time is past it only from the next opening: found a minute
    after that, its breach (dated 16 hours earlier) is fresh, whether the ticket still waits or was
    answered in between, and is not held to the late cap."""
    overnight = timedelta(hours=16)
    batch = Batch(
        recorded=[
            _breach(1, n, overnight, running=n % 2 == 0, seen_ago=timedelta(minutes=1))
            for n in range(LATE_PUSHES + 10)
        ]
    )
    assert len(batch.to_push(NOW)) == LATE_PUSHES + 10
