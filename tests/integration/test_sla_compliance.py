"""SLA compliance in SQL against a plain Python count over a seeded set of tickets."""

from __future__ import annotations

import random
from collections import Counter
from datetime import UTC, date, datetime, timedelta

import pytest

from tests.integration.sla_tickets import seed_ticket
from tests.unit.test_business_time import Reference
from webapp.analytics.sla_compliance import compliance
from webapp.clocks.business_time import Interval, WeeklySchedule
from webapp.clocks.policy import policy_for

NOW = datetime(2026, 11, 20, 12, tzinfo=UTC)
START = datetime(2026, 11, 2, tzinfo=UTC)
END = datetime(2026, 11, 21, tzinfo=UTC)
PRIORITIES = ("urgent", "high", "normal", "low")
TARGETS = {
    "urgent": {"first_reply_hours": 1, "resolution_hours": 8},
    "high": {"first_reply_hours": 4, "resolution_hours": 24},
    "normal": {"first_reply_hours": 8, "resolution_hours": None},
    "low": {"first_reply_hours": None, "resolution_hours": 60},
}
OFFICE = [{"day": d, "start": "09:00", "end": "17:30"} for d in ("mon", "tue", "wed", "thu", "fri")]


def _history(rng: random.Random, created: datetime) -> list[tuple[datetime, str]]:
    history = [(created, rng.choice(["open", "open", "pending"]))]
    at = created
    for _ in range(rng.randint(0, 5)):
        at += timedelta(minutes=rng.randint(10, 2500))
        if at >= NOW:
            break
        status = rng.choice(
            [s for s in ("open", "pending", "on_hold", "resolved", "closed") if s != history[-1][1]]
        )
        history.append((at, status))
    return history


def _seed(db_session, org_id: int) -> list[dict]:
    rng = random.Random(16)
    tickets = []
    for index in range(70):
        created = START - timedelta(days=2) + timedelta(minutes=rng.randint(0, 60 * 24 * 20 + 600))
        if index >= 65:  # a few just before NOW, still waiting for a reply within their target
            created = NOW - timedelta(minutes=rng.randint(5, 50))
        history = _history(rng, created)
        answered = (
            created + timedelta(minutes=rng.randint(1, 900)) if rng.random() < 0.7 and index < 65 else None
        )
        if answered is not None and answered > NOW:
            answered = None
        ticket = {
            "created": created,
            "history": history,
            "answered": answered,
            "priority": rng.choice(PRIORITIES),
            "channel": rng.choice(["email", "chat", "phone"]),
            "assigned_to": rng.choice(["ana", "bo", None]),
        }
        seed_ticket(
            db_session,
            org_id,
            history,
            priority=ticket["priority"],
            first_response_at=answered,
            channel=ticket["channel"],
            assigned_to=ticket["assigned_to"],
        )
        tickets.append(ticket)
    return tickets


def _expected(tickets, open_seconds, pauses, group_by=None, channels=None):
    """Achieved/breached/pending per group and target, from each ticket's history by hand."""
    out: dict = {}
    for t in tickets:
        if not START <= t["created"] < END or (channels and t["channel"] not in channels):
            continue
        counts = out.setdefault(t[group_by] if group_by else None, Counter())
        first = TARGETS[t["priority"]]["first_reply_hours"]
        if first is not None:
            elapsed = open_seconds(t["created"], t["answered"] or NOW)
            if elapsed > first * 3600:
                counts["first_reply", "breached"] += 1
            else:
                counts["first_reply", "achieved" if t["answered"] else "pending"] += 1
        resolution = TARGETS[t["priority"]]["resolution_hours"]
        if resolution is not None:
            history = t["history"]
            elapsed = sum(
                open_seconds(at, history[i + 1][0] if i + 1 < len(history) else NOW)
                for i, (at, status) in enumerate(history)
                if status in ("open", "pending", "on_hold") and status not in pauses
            )
            solved = history[-1][1] in ("resolved", "closed")
            if elapsed > resolution * 3600:
                counts["resolution", "breached"] += 1
            else:
                counts["resolution", "achieved" if solved else "pending"] += 1
    return out


def _counts(rows, group_by=None):
    return {
        (row["group"][group_by] if group_by else None): Counter(
            {
                (metric, verdict): row[metric][verdict]
                for metric in ("first_reply", "resolution")
                for verdict in ("achieved", "breached", "pending")
                if row[metric][verdict]
            }
        )
        for row in rows
    }


def _calendar(a: datetime, b: datetime) -> float:
    return max(0.0, (b - a).total_seconds())


@pytest.mark.parametrize("group_by", [None, "priority", "channel", "assigned_to"])
def test_calendar_compliance_with_pauses_matches_the_count(tenant, db_session, group_by):
    tickets = _seed(db_session, tenant.org_id)
    body = {"pause_statuses": ["pending", "on_hold"], "targets": TARGETS}
    assert tenant.admin.put("/api/v1/sla-policy", json=body).status_code == 200
    rows = compliance(
        db_session,
        org_id=tenant.org_id,
        start=START,
        end=END,
        filters={},
        policy=policy_for(db_session, tenant.org_id),
        now=NOW,
        group_by=group_by,
    )
    expected = _expected(tickets, _calendar, ("pending", "on_hold"), group_by)
    assert _counts(rows, group_by) == expected
    if group_by is None:
        # The seeded set has every verdict of both targets.
        assert len(expected[None]) == 6
        (row,) = rows
        judged = row["all"]["achieved"] + row["all"]["breached"]
        assert row["all"]["compliance"] == pytest.approx(row["all"]["achieved"] / judged)
        assert row["all"]["achieved"] == row["first_reply"]["achieved"] + row["resolution"]["achieved"]


def test_business_compliance_with_a_filter_matches_the_minute_walk(tenant, db_session):
    tickets = _seed(db_session, tenant.org_id)
    holidays = [{"date": "2026-11-11", "name": "closed"}]
    schedule = tenant.admin.post(
        "/api/v1/schedules",
        json={"name": "NY", "timezone": "America/New_York", "intervals": OFFICE, "holidays": holidays},
    ).get_json()
    body = {"schedule_id": schedule["id"], "pause_statuses": ["on_hold"], "targets": TARGETS}
    assert tenant.admin.put("/api/v1/sla-policy", json=body).status_code == 200
    reference = Reference(
        WeeklySchedule(
            "America/New_York",
            tuple(Interval(d, 9 * 3600, 17 * 3600 + 1800) for d in range(5)),
            frozenset({date(2026, 11, 11)}),
        )
    )
    rows = compliance(
        db_session,
        org_id=tenant.org_id,
        start=START,
        end=END,
        filters={"channel": ["email", "chat"]},
        policy=policy_for(db_session, tenant.org_id),
        now=NOW,
    )
    expected = _expected(tickets, reference.open_seconds, ("on_hold",), channels=("email", "chat"))
    assert _counts(rows) == expected
    assert sum(expected[None].values()) > 30


def test_no_tickets_is_one_row_of_zeros(tenant, db_session):
    rows = compliance(
        db_session,
        org_id=tenant.org_id,
        start=START,
        end=END,
        filters={},
        policy=policy_for(db_session, tenant.org_id),
        now=NOW,
    )
    assert rows == [
        {
            "group": {},
            **{
                key: {"achieved": 0, "breached": 0, "pending": 0, "compliance": None, "compliance_pct": None}
                for key in ("first_reply", "resolution", "all")
            },
        }
    ]
