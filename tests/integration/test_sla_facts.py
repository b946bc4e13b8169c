"""ticket_sla_facts (migrations 0020 and 0022) equal a recount from each ticket's events and replies
whoever wrote them, every ticket has its row with its own columns copied, and SLA compliance read
from them alone equals compliance summed from the steps themselves.

Tickets come through every writer: an import with status histories and replies, the domain functions
(priority changes, resolutions, reopens, pauses, back-filled replies earlier than the first response,
private and customer replies, ratings), a COPY seed, and SQL behind the application's back (replies
made private, moved and deleted, tickets deleted). The expected facts are recounted in plain Python
from the rows of ticket_events and ticket_replies.
"""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import select, text
from sqlalchemy.orm import Session

from tests.conftest import committed_tenant
from tests.integration.test_rollups import _populate
from tests.integration.test_support_metrics import generate, row_of
from webapp.analytics.sla_compliance import GROUPS, compliance
from webapp.analytics.sql import parallel_costs
from webapp.clocks.policy import Policy
from webapp.core.vocabulary import PRIORITIES, UNSOLVED_STATUSES
from webapp.models import Organization, Ticket
from webapp.tickets import seeding
from webapp.tickets.imports import import_rows
from webapp.tickets.writes import add_reply, set_rating, update_ticket

TARGETS = {
    "urgent": {"first_reply_hours": 1, "resolution_hours": 8},
    "high": {"first_reply_hours": 4, "resolution_hours": 24},
    "normal": {"first_reply_hours": 8, "resolution_hours": None},
    "low": {"first_reply_hours": None, "resolution_hours": 60},
}
FILTERS = {"channel": ["email", "chat"], "priority": list(PRIORITIES[1:])}
POLICIES = [
    Policy(schedule_id=None, pause_statuses=pauses, targets=TARGETS)
    for pauses in ((), ("pending",), ("pending", "on_hold"), ("open", "pending", "on_hold"))
]


def _us(instant: datetime) -> int:
    # As the SQL positions an instant: whole microseconds since the epoch.
    return round(instant.timestamp() * 1_000_000)


def _recount(session: Session, org_id: int) -> dict[int, tuple[Any, ...]]:
    """Per ticket: (first public agent reply, latest step into an unsolved status, then per unsolved
    status the sum of -step x its instant and the sum of its steps), from the rows themselves."""
    first_reply: dict[int, datetime] = {}
    for ticket_id, author, public, at in session.execute(
        text("SELECT ticket_id, author, public, at FROM ticket_replies WHERE org_id = :o"), {"o": org_id}
    ):
        if author == "agent" and public and (ticket_id not in first_reply or at < first_reply[ticket_id]):
            first_reply[ticket_id] = at
    entered: dict[int, int] = {}
    sums: dict[int, dict[str, list[int]]] = defaultdict(lambda: {s: [0, 0] for s in UNSOLVED_STATUSES})
    for ticket_id, status, at, value in session.execute(
        text(
            "SELECT ticket_id, status, occurred_at, value FROM ticket_events"
            " WHERE org_id = :o AND event_type = 'backlog'"
        ),
        {"o": org_id},
    ):
        step = int(value)
        sums[ticket_id][status][0] -= step * _us(at)
        sums[ticket_id][status][1] += step
        if step > 0 and (ticket_id not in entered or _us(at) > entered[ticket_id]):
            entered[ticket_id] = _us(at)
    out = {}
    for ticket_id in set(first_reply) | set(sums) | set(entered):
        per_status = tuple(n for s in UNSOLVED_STATUSES for n in sums[ticket_id][s])
        out[ticket_id] = (first_reply.get(ticket_id), entered.get(ticket_id), *per_status)
    return out


def _kept(session: Session, org_id: int) -> dict[int, tuple[Any, ...]]:
    columns = ", ".join(f"f.{s}_us, f.{s}_open" for s in UNSOLVED_STATUSES)
    rows = session.execute(
        text(
            f"SELECT f.ticket_id, f.first_agent_reply_at, f.entered_us, {columns} FROM ticket_sla_facts f"
            " JOIN tickets t ON t.id = f.ticket_id WHERE t.org_id = :o"
        ),
        {"o": org_id},
    )
    # A row whose steps and replies were all taken away again says what no row says.
    empty = (None, None, *(0,) * (2 * len(UNSOLVED_STATUSES)))
    return {row[0]: tuple(row[1:]) for row in rows if tuple(row[1:]) != empty}


def _write_everything(session: Session, org: Organization) -> None:
    rng = random.Random(20)
    report, _, _ = import_rows(session, org, [row_of(m) for m in generate(rng, 90)])
    assert report.imported == 90
    ids = _populate(session, org, rng, 90)
    now = datetime.now(UTC)
    tickets = session.scalars(select(Ticket).where(Ticket.id.in_(ids)).order_by(Ticket.id)).all()
    for i, ticket in enumerate(tickets):
        at = max(ticket.created_at, ticket.first_response_at or ticket.created_at) + timedelta(minutes=5)
        if at >= now:
            continue
        if i % 3 == 0:  # paused, then running again
            update_ticket(session, org, ticket, {"status": "on_hold"}, now=at)
            update_ticket(session, org, ticket, {"status": "pending"}, now=at + timedelta(hours=2))
        if i % 4 == 0:  # a back-filled public agent reply before the first response
            add_reply(
                session, ticket, org, {"author": "agent", "at": ticket.created_at + timedelta(seconds=7)}
            )
        if i % 5 == 0:
            add_reply(session, ticket, org, {"author": "agent", "public": False, "at": ticket.created_at})
            add_reply(session, ticket, org, {"author": "customer", "at": ticket.created_at})
        if i % 6 == 0:
            set_rating(session, ticket, org, {"rating": 1 + i % 5})
        if i % 7 == 0:
            update_ticket(session, org, ticket, {"priority": "urgent"}, now=now)
    session.flush()
    # Behind the application's back.
    replies = list(
        session.scalars(text("SELECT id FROM ticket_replies WHERE org_id = :o ORDER BY id"), {"o": org.id})
    )
    session.execute(
        text("UPDATE ticket_replies SET public = false WHERE id = ANY(:ids)"), {"ids": replies[::5]}
    )
    session.execute(
        text("UPDATE ticket_replies SET at = at + interval '3 hours' WHERE id = ANY(:ids)"),
        {"ids": replies[1::6]},
    )
    session.execute(text("DELETE FROM ticket_replies WHERE id = ANY(:ids)"), {"ids": replies[2::7]})
    session.execute(text("DELETE FROM tickets WHERE id = ANY(:ids)"), {"ids": ids[::11]})
    session.execute(
        text("UPDATE tickets SET created_at = created_at - interval '95 minutes' WHERE id = ANY(:ids)"),
        {"ids": ids[1::4]},
    )
    session.execute(
        text(
            "UPDATE tickets SET channel = 'phone', category = 'moved', assigned_to = NULL,"
            " first_response_at = created_at + interval '30 minutes' WHERE id = ANY(:ids)"
        ),
        {"ids": ids[2::5]},
    )
    # Tickets written already solved, with no step and no reply: counted all the same.
    session.execute(
        text(
            "INSERT INTO tickets (org_id, subject, status, priority, channel, category, created_at,"
            " updated_at, first_response_at, reopen_count)"
            " SELECT :o, 'written solved', 'closed', p, 'email', 'bare', now() - n * interval '1 day',"
            " now(), CASE WHEN n % 2 = 0 THEN now() - n * interval '1 day' + interval '3 hours' END, 0"
            " FROM unnest(CAST(:priorities AS text[])) AS p, generate_series(1, 8) AS n"
        ),
        {"o": org.id, "priorities": list(PRIORITIES)},
    )
    session.flush()
    raw = session.connection().connection.driver_connection
    seeding.seed_tickets(raw, org_id=org.id, tickets=1500, days=40, seed=3, tz=org.timezone)
    # Statistics of what was just written: without them a plan of the steps' reads can take seconds.
    session.execute(text("ANALYZE tickets, ticket_events, ticket_replies, ticket_sla_facts"))


@pytest.fixture(scope="module")
def written(base_app: Flask) -> Iterator[Organization]:
    """One organization written through every writer, committed once for the module's tests."""
    with committed_tenant(base_app, "SLA facts", "Australia/Lord_Howe") as (_, org, session):
        _write_everything(session, org)
        session.commit()
        yield org


def test_the_facts_equal_a_recount_after_every_kind_of_write(written, real_session):
    expected = _recount(real_session, written.id)
    assert len(expected) > 1500
    assert _kept(real_session, written.id) == expected
    # Each ticket's facts carry its organization and creation instant (moved with it).
    moved = real_session.execute(
        text(
            "SELECT count(*) FROM ticket_sla_facts f JOIN tickets t ON t.id = f.ticket_id"
            " WHERE t.org_id = :o AND (f.org_id <> t.org_id OR f.created_at <> t.created_at)"
        ),
        {"o": written.id},
    ).scalar()
    assert moved == 0


def test_every_ticket_has_one_facts_row_with_its_columns(written, real_session):
    """Whoever wrote the ticket (and changed it since), its row holds what a compliance read filters
    and counts on, so the read needs no join to tickets (migration 0022)."""
    copied = ("org_id", "created_at", "status", "priority", "channel", "category", "assigned_to")
    rows = real_session.execute(
        text(
            f"SELECT t.id, {', '.join(f't.{c}' for c in (*copied, 'first_response_at'))},"
            f" {', '.join(f'f.{c}' for c in (*copied, 'first_response_at'))}"
            " FROM tickets t LEFT JOIN ticket_sla_facts f ON f.ticket_id = t.id WHERE t.org_id = :o"
        ),
        {"o": written.id},
    ).all()
    width = len(copied) + 1
    differing = [row[0] for row in rows if tuple(row[1 : 1 + width]) != tuple(row[1 + width :])]
    assert len(rows) > 1500
    assert differing == []
    orphans = real_session.execute(
        text(
            "SELECT count(*) FROM ticket_sla_facts f WHERE f.org_id = :o"
            " AND NOT EXISTS (SELECT 1 FROM tickets t WHERE t.id = f.ticket_id)"
        ),
        {"o": written.id},
    ).scalar()
    assert orphans == 0
    bare = real_session.execute(
        text("SELECT count(*) FROM tickets WHERE org_id = :o AND category = 'bare'"), {"o": written.id}
    ).scalar()
    assert bare == 8 * len(PRIORITIES)


def test_compliance_from_the_facts_equals_compliance_from_the_steps(written, real_session):
    first, last = real_session.execute(
        text("SELECT min(created_at), max(created_at) FROM tickets WHERE org_id = :o"), {"o": written.id}
    ).one()
    windows = [(first, last + timedelta(seconds=1)), (last - timedelta(days=9), last - timedelta(days=2))]
    # Now, and an instant inside the tickets' lives: some steps then lie after it.
    instants = [datetime.now(UTC), last - timedelta(days=5)]
    compared = 0
    shapes = [(None, {}), *((g, {}) for g in GROUPS), (None, FILTERS), ("assigned_to", FILTERS)]
    for i, policy in enumerate(POLICIES):
        for j, (start, end) in enumerate(windows):
            for k, now in enumerate(instants):
                group_by, filters = shapes[(4 * i + 2 * j + k) % len(shapes)]
                window = {"org_id": written.id, "start": start, "end": end, "filters": filters}
                args = {"policy": policy, "now": now, "group_by": group_by, **window}
                facts = compliance(real_session, **args)
                steps = compliance(real_session, from_steps=True, **args)
                assert facts == steps, (policy.pause_statuses, start, now, group_by, filters)
                compared += sum(r["all"]["achieved"] + r["all"]["breached"] for r in facts)
    assert compared > 10_000
    # Filters on every column the facts copy, changed behind the application's back included.
    for group_by, filters in [
        ("channel", {"category": ["moved", "bare"]}),
        ("priority", {"assigned_to": [None]}),
        ("assigned_to", {"status": ["closed", "open"], "channel": ["phone"]}),
    ]:
        args = {"policy": POLICIES[1], "now": instants[0], "group_by": group_by, "filters": filters}
        window = {"org_id": written.id, "start": first, "end": last + timedelta(seconds=1)}
        facts = compliance(real_session, **args, **window)
        assert facts == compliance(real_session, from_steps=True, **args, **window), filters
        assert sum(r["all"]["achieved"] + r["all"]["breached"] + r["all"]["pending"] for r in facts) > 0


def test_the_parallel_costs_last_for_the_compliance_statement_only(written, real_session):
    before = real_session.execute(text("SELECT current_setting('parallel_setup_cost')")).scalar()
    now = datetime.now(UTC)
    window = {"org_id": written.id, "start": now - timedelta(days=30), "end": now, "filters": {}}
    compliance(real_session, policy=POLICIES[0], now=now, **window)
    assert real_session.execute(text("SELECT current_setting('parallel_setup_cost')")).scalar() == before
    with parallel_costs(real_session):
        assert real_session.execute(text("SELECT current_setting('parallel_setup_cost')")).scalar() == "10"
    assert real_session.execute(text("SELECT current_setting('parallel_setup_cost')")).scalar() == before
