"""SLA verdicts counted ahead per UTC day (sla_days, migration 0024) answer as the live read does,
and stop standing for it the moment they would not: a write to a day's tickets, a deadline passing,
another policy, an instant before they were counted.

Every expected answer comes from compliance summed from the tickets' steps and replies themselves
(from_steps), which tests in test_sla_compliance hold to a plain Python count; the live facts read
(counted_days off) must agree too. Windows start and end at local midnights of zones with odd offsets
and DST (so their ends cut UTC days), and at arbitrary instants.
"""

from __future__ import annotations

import random
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from flask import Flask
from sqlalchemy import select, text
from sqlalchemy.orm import Session

from tests.conftest import committed_tenant
from webapp.analytics import sla_days
from webapp.analytics.sla_compliance import compliance
from webapp.clocks.policy import policy_for, put_policy
from webapp.clocks.schedules import create_schedule
from webapp.models import Organization, Ticket
from webapp.tickets import seeding
from webapp.tickets.writes import add_reply, create_ticket, update_ticket

TARGETS = {
    "urgent": {"first_reply_hours": 1, "resolution_hours": 8, "next_reply_hours": None},
    "high": {"first_reply_hours": 4, "resolution_hours": 24, "next_reply_hours": None},
    # Long targets: some tickets of counted days are still pending when counted, so days keep the
    # instants their verdicts turn.
    "normal": {"first_reply_hours": 60, "resolution_hours": 400, "next_reply_hours": None},
    "low": {"first_reply_hours": None, "resolution_hours": 900, "next_reply_hours": None},
}
ZONES = ("UTC", "Asia/Kathmandu", "America/St_Johns", "Australia/Lord_Howe")
SHAPES = [
    (None, {}),
    ("priority", {}),
    ("channel", {}),
    ("assigned_to", {}),
    (None, {"channel": ["email", "chat"], "priority": ["high", "urgent", "normal"]}),
    ("assigned_to", {"assigned_to": ["agent-1", "agent-2", None]}),
]


def _policy(session: Session, org_id: int, pauses: list[str]) -> None:
    put_policy(session, org_id, schedule_id=None, pause_statuses=pauses, targets=TARGETS)
    session.commit()


@pytest.fixture(scope="module")
def org(base_app: Flask) -> Iterator[Organization]:
    """An organization with 45 days of seeded tickets, some changed since through the domain."""
    with committed_tenant(base_app, "SLA days", "America/St_Johns") as (_, org, session):
        raw = session.connection().connection.driver_connection
        seeding.seed_tickets(raw, org_id=org.id, tickets=2500, days=45, seed=11, tz=org.timezone)
        session.commit()
        rng = random.Random(4)
        now = datetime.now(UTC)
        ids = list(
            session.scalars(text("SELECT id FROM tickets WHERE org_id = :o ORDER BY id"), {"o": org.id})
        )
        for ticket in session.scalars(select(Ticket).where(Ticket.id.in_(rng.sample(ids, 120)))):
            at = max(ticket.created_at, ticket.first_response_at or ticket.created_at) + timedelta(hours=1)
            if at >= now:
                continue
            update_ticket(session, org, ticket, {"status": "on_hold"}, now=at)
            add_reply(
                session, ticket, org, {"author": "agent", "at": ticket.created_at + timedelta(minutes=3)}
            )
        session.execute(text("ANALYZE tickets, ticket_events, ticket_replies, ticket_sla_facts"))
        _policy(session, org.id, ["on_hold"])
        yield org


def _windows(now: datetime) -> list[tuple[datetime, datetime]]:
    """Local-midnight windows in each zone (30 days to today's midnight, and 10 days ending at an odd
    instant), and the last 30 days to `now`."""
    out = []
    for name in ZONES:
        tz = ZoneInfo(name)
        today = datetime.combine(now.astimezone(tz).date(), datetime.min.time(), tz)
        out.append((today - timedelta(days=30), today))
        out.append((today - timedelta(days=19), today - timedelta(days=9, hours=5, minutes=17)))
    out.append((now - timedelta(days=30), now))
    return out


def _same_three_ways(session: Session, org_id: int, now: datetime, start: datetime, end: datetime) -> int:
    """Assert counted == live == from the steps for every shape; the days the counts stood for."""
    return len(_plan_checked(session, org_id, now, start, end).counted)


def _plan_checked(
    session: Session, org_id: int, now: datetime, start: datetime, end: datetime
) -> sla_days.Plan:
    """_same_three_ways's check; the plan the counted reads followed."""
    policy = policy_for(session, org_id)
    plan = sla_days.plan(session, org_id=org_id, start=start, end=end, policy=policy, now=now)
    for group_by, filters in SHAPES:
        args = {"org_id": org_id, "start": start, "end": end, "filters": filters, "policy": policy}
        args.update(now=now, group_by=group_by)
        counted = compliance(session, **args)
        assert counted == compliance(session, counted_days=False, **args), (start, end, group_by, filters)
        assert counted == compliance(session, from_steps=True, **args), (start, end, group_by, filters)
    return plan


def test_counted_days_answer_as_the_live_read(org, real_session):
    now = datetime.now(UTC)
    assert sla_days.count_days(real_session, org_id=org.id, now=now) >= 40
    judged = real_session.execute(
        text(
            "SELECT sum(first_reply_achieved + first_reply_breached + resolution_breached)"
            " FROM sla_verdict_days WHERE org_id = :o"
        ),
        {"o": org.id},
    ).scalar()
    assert judged > 1500
    plans = [_plan_checked(real_session, org.id, now + timedelta(seconds=1), s, e) for s, e in _windows(now)]
    used = [len(p.counted) for p in plans]
    # Every window but the short odd one far back takes most of its days from the counts; windows
    # between local midnights take the UTC days they cut at their ends from the counts, less the
    # tickets outside them.
    assert min(used) >= 8, used
    assert max(used) >= 27, used
    assert sum(1 for p in plans if p.outside) >= 4, [p.outside for p in plans]
    # A filter on a dimension the counts do not keep: the whole range is read live, and agrees.
    policy = policy_for(real_session, org.id)
    args = {"org_id": org.id, "start": now - timedelta(days=30), "end": now, "policy": policy, "now": now}
    assert not sla_days.applies({"category": ["billing"]}, None)
    assert compliance(real_session, filters={"category": ["billing"]}, **args) == compliance(
        real_session, filters={"category": ["billing"]}, from_steps=True, **args
    )


def _counted_day(session: Session, org_id: int) -> datetime:
    day = session.execute(
        text("SELECT min(day) FROM sla_verdict_day_builds WHERE org_id = :o"),
        {"o": org_id},
    ).scalar()
    assert day is not None
    return datetime.combine(day, datetime.min.time(), UTC)


@pytest.mark.worker
def test_a_write_keeps_its_day_live_until_counted_again(org, real_session, celery_worker, live_app):
    now = datetime.now(UTC)
    sla_days.count_days(real_session, org_id=org.id, now=now)
    midnight = _counted_day(real_session, org.id)
    start, end = midnight - timedelta(days=3), midnight + timedelta(days=4)
    policy = policy_for(real_session, org.id)
    before = sla_days.plan(real_session, org_id=org.id, start=start, end=end, policy=policy, now=now)
    assert midnight.date() in before.counted
    # Reopen a solved ticket of that day: its resolution turns pending again.
    ticket = real_session.scalars(
        select(Ticket).where(
            Ticket.org_id == org.id,
            Ticket.created_at >= midnight,
            Ticket.created_at < midnight + timedelta(days=1),
            Ticket.status.in_(["resolved", "closed"]),
        )
    ).first()
    assert ticket is not None
    update_ticket(real_session, org, ticket, {"status": "open"}, now=now)
    real_session.commit()
    later = datetime.now(UTC)
    after = sla_days.plan(real_session, org_id=org.id, start=start, end=end, policy=policy, now=later)
    assert midnight.date() not in after.counted
    assert set(after.counted) == set(before.counted) - {midnight.date()}
    _same_three_ways(real_session, org.id, later, start, end)
    # Counted again by beat's task on a worker, the day stands for the live read once more.
    live_app.extensions["celery"].send_task("rollups.count_sla_days")
    deadline = time.monotonic() + 60
    while True:
        real_session.rollback()
        again = datetime.now(UTC)
        plan = sla_days.plan(real_session, org_id=org.id, start=start, end=end, policy=policy, now=again)
        if midnight.date() in plan.counted:
            break
        assert time.monotonic() < deadline, "the worker did not count the day again"
        time.sleep(0.3)
    _same_three_ways(real_session, org.id, again, start, end)


def test_counts_stand_from_their_count_on_while_pending_verdicts_turn(org, real_session):
    """A day's counts hold every ticket as it stood when counted, and the instants its pending
    verdicts turn breached by time alone (a first reply waiting, a running status open): they stand
    from the instant they were counted at, however many deadlines pass after it."""
    now = datetime.now(UTC)
    sla_days.count_days(real_session, org_id=org.id, now=now)
    day, counted_at, turns = real_session.execute(
        text(
            "SELECT b.day, b.counted_at,"
            " sum(coalesce(cardinality(d.first_reply_turns), 0)"
            " + coalesce(cardinality(d.resolution_turns), 0))"
            " FROM sla_verdict_day_builds b JOIN sla_verdict_days d ON d.org_id = b.org_id AND d.day = b.day"
            " WHERE b.org_id = :o GROUP BY 1, 2 ORDER BY 3 DESC, 1 LIMIT 1"
        ),
        {"o": org.id},
    ).one()
    assert turns > 0
    # Every ticket of the day is counted once.
    counted = real_session.execute(
        text(
            "SELECT sum(resolution_achieved + resolution_breached + resolution_pending)"
            " FROM sla_verdict_days WHERE org_id = :o AND day = :d"
        ),
        {"o": org.id, "d": day},
    ).scalar()
    midnight = datetime.combine(day, datetime.min.time(), UTC)
    created = real_session.execute(
        text("SELECT count(*) FROM tickets WHERE org_id = :o AND created_at >= :lo AND created_at < :hi"),
        {"o": org.id, "lo": midnight, "hi": midnight + timedelta(days=1)},
    ).scalar()
    assert counted == created
    start, end = midnight - timedelta(hours=7), midnight + timedelta(days=2, hours=3)
    policy = policy_for(real_session, org.id)

    def stands(at: datetime) -> bool:
        return (
            day
            in sla_days.plan(real_session, org_id=org.id, start=start, end=end, policy=policy, now=at).counted
        )

    assert stands(counted_at)
    assert stands(counted_at + timedelta(days=40))
    assert not stands(counted_at - timedelta(microseconds=1))
    # Deadlines of the day's pending tickets pass between these instants: answers move, and each is
    # the live one at its instant.
    answers = []
    for at in (counted_at, counted_at + timedelta(hours=30), counted_at + timedelta(days=40)):
        _same_three_ways(real_session, org.id, at, start, end)
        args = {"org_id": org.id, "start": start, "end": end, "filters": {}, "policy": policy, "now": at}
        answers.append(compliance(real_session, **args))
    assert answers[0] != answers[-1]
    assert _same_three_ways(real_session, org.id, counted_at - timedelta(hours=2), start, end) == 0


def test_a_turn_counts_from_the_microsecond_after_it(org, real_session):
    """At a first reply's deadline the verdict is still pending, a microsecond later breached (the
    live read's `now > deadline`); the same for a resolution's turn. Counted, live and from the steps
    agree at both instants."""
    # A normal ticket waiting for its first reply (60 h), open (running) toward its resolution (400 h),
    # created on the youngest day old enough to count, in its last minute: both turns lie ahead.
    now = datetime.now(UTC)
    youngest = datetime.combine(now.date() - timedelta(days=sla_days.SETTLE_DAYS), datetime.min.time(), UTC)
    fields = {"created_at": youngest + timedelta(hours=23, minutes=59), "priority": "normal"}
    fields.update(channel="email", category="general", status="open")
    ticket = create_ticket(real_session, org, fields, now=now).ticket
    real_session.commit()
    sla_days.count_days(real_session, org_id=org.id, now=datetime.now(UTC))
    for column in ("first_reply_turns", "resolution_turns"):
        day, turn = real_session.execute(
            text(
                f"SELECT d.day, d.{column}[1] FROM sla_verdict_days d"
                " JOIN sla_verdict_day_builds b ON b.org_id = d.org_id AND b.day = d.day"
                f" WHERE d.org_id = :o AND d.{column} IS NOT NULL ORDER BY d.{column}[1] DESC LIMIT 1"
            ),
            {"o": org.id},
        ).one()
        midnight = datetime.combine(day, datetime.min.time(), UTC)
        start, end = midnight - timedelta(hours=3), midnight + timedelta(days=1, hours=3)
        at = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=turn)
        policy = policy_for(real_session, org.id)
        answers = []
        for instant in (at, at + timedelta(microseconds=1)):
            assert _same_three_ways(real_session, org.id, instant, start, end) >= 1
            args = {"org_id": org.id, "start": start, "end": end, "filters": {}, "policy": policy}
            answers.append(compliance(real_session, now=instant, **args)[0])
        metric = column.removesuffix("_turns")
        before, after = answers[0][metric], answers[1][metric]
        moved = before["pending"] - after["pending"]
        assert moved >= 1, (column, before, after)
        assert after["breached"] - before["breached"] == moved
    real_session.delete(ticket)
    real_session.commit()


def test_another_policy_reads_live_until_counted_under_it(org, real_session):
    now = datetime.now(UTC)
    sla_days.count_days(real_session, org_id=org.id, now=now)
    start, end = now - timedelta(days=20), now
    _policy(real_session, org.id, ["pending", "on_hold"])
    try:
        policy = policy_for(real_session, org.id)
        later = datetime.now(UTC)
        assert (
            sla_days.plan(real_session, org_id=org.id, start=start, end=end, policy=policy, now=later).counted
            == []
        )
        _same_three_ways(real_session, org.id, later, start, end)
        assert sla_days.count_days(real_session, org_id=org.id, now=later) >= 17
        assert _same_three_ways(real_session, org.id, datetime.now(UTC), start, end) >= 17
    finally:
        _policy(real_session, org.id, ["on_hold"])
        sla_days.count_days(real_session, org_id=org.id, now=datetime.now(UTC))


def test_a_write_committed_after_the_counts_snapshot_keeps_its_mark(org, base_app, real_session):
    """The count deletes only the marks its snapshot sees: a write that commits while it counts keeps
    its day live."""
    now = datetime.now(UTC)
    sla_days.count_days(real_session, org_id=org.id, now=now)
    midnight = _counted_day(real_session, org.id)
    policy = policy_for(real_session, org.id)
    ticket_id = real_session.scalar(
        select(Ticket.id).where(
            Ticket.org_id == org.id,
            Ticket.created_at >= midnight,
            Ticket.created_at < midnight + timedelta(days=1),
        )
    )
    # Mark the day, then count it in a REPEATABLE READ transaction whose snapshot is taken before a
    # second write commits.
    real_session.execute(text("UPDATE tickets SET priority = 'low' WHERE id = :t"), {"t": ticket_id})
    real_session.commit()
    counting = base_app.extensions["db_sessionmaker"]()
    writer = base_app.extensions["db_sessionmaker"]()
    try:
        counting.connection(execution_options={"isolation_level": "REPEATABLE READ"})
        counting.execute(text("SELECT 1"))  # the snapshot
        writer.execute(text("UPDATE tickets SET priority = 'urgent' WHERE id = :t"), {"t": ticket_id})
        writer.commit()
        key = sla_days.policy_key(policy)
        assert key is not None
        sla_days._count_chunk(
            counting, org_id=org.id, days=[midnight.date()], policy=policy, key=key, now=now
        )
        counting.commit()
    finally:
        counting.close()
        writer.close()
    later = datetime.now(UTC)
    window = {"start": midnight - timedelta(hours=1), "end": midnight + timedelta(days=1, hours=1)}
    assert sla_days.plan(real_session, org_id=org.id, policy=policy, now=later, **window).counted == []
    _same_three_ways(real_session, org.id, later, **window)
    sla_days.count_days(real_session, org_id=org.id, now=later)
    assert sla_days.plan(real_session, org_id=org.id, policy=policy, now=later, **window).counted == [
        midnight.date()
    ]
    _same_three_ways(real_session, org.id, later, **window)


def test_young_days_are_left_live_and_a_business_clock_drops_the_counts(org, real_session):
    now = datetime.now(UTC)
    sla_days.count_days(real_session, org_id=org.id, now=now)
    youngest = real_session.execute(
        text("SELECT max(day) FROM sla_verdict_day_builds WHERE org_id = :o"), {"o": org.id}
    ).scalar()
    assert youngest == now.date() - timedelta(days=sla_days.SETTLE_DAYS)
    schedule = create_schedule(
        real_session,
        org.id,
        {
            "name": "Office",
            "timezone": "UTC",
            "intervals": [{"day": "mon", "start": "09:00", "end": "17:00"}],
        },
    ).id
    real_session.commit()
    try:
        put_policy(real_session, org.id, schedule_id=schedule, pause_statuses=[], targets=TARGETS)
        real_session.commit()
        assert sla_days.count_days(real_session, org_id=org.id, now=now) is None
        left = real_session.execute(
            text("SELECT count(*) FROM sla_verdict_day_builds WHERE org_id = :o"), {"o": org.id}
        ).scalar()
        assert left == 0
    finally:
        _policy(real_session, org.id, ["on_hold"])


def test_the_marks_of_days_too_young_to_count_fold_into_one_a_day(org, real_session):
    now = datetime.now(UTC)
    today = now.date()
    # Five minutes ago, or this UTC day's first second (right after midnight).
    at = max(now - timedelta(minutes=5), datetime.combine(today, datetime.min.time(), UTC))
    for _ in range(5):  # five statements, each marking today
        real_session.execute(
            text(
                "INSERT INTO tickets (org_id, subject, status, priority, channel, category, created_at,"
                " updated_at, reopen_count) VALUES (:o, 'young', 'open', 'high', 'email', 'x', :at, :at, 0)"
            ),
            {"o": org.id, "at": at},
        )
        real_session.commit()

    def marks(day) -> int:
        return real_session.execute(
            text("SELECT count(*) FROM sla_verdict_day_marks WHERE org_id = :o AND day = :d"),
            {"o": org.id, "d": day},
        ).scalar()

    assert marks(today) >= 5
    assert org.id in sla_days.due_orgs(real_session)
    sla_days.count_days(real_session, org_id=org.id, now=now)
    assert marks(today) == 1
    # Still found due once the day is old enough, and counted then.
    later = now + timedelta(days=sla_days.SETTLE_DAYS)
    assert today in sla_days.due_days(
        real_session, org_id=org.id, key=sla_days.policy_key(policy_for(real_session, org.id)), now=later
    )
    real_session.execute(text("DELETE FROM tickets WHERE org_id = :o AND subject = 'young'"), {"o": org.id})
    real_session.commit()
