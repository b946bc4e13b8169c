"""Tickets API: writes append the right events in one transaction; bad input is a clear 400."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select, text

from tests.integration import rollup_cells
from webapp.core.vocabulary import DERIVED_EVENT_TYPES
from webapp.models import TicketEvent


def _events(db_session, ticket_id):
    """The ticket's events as its writes append them (derived events are tested in test_support_metrics)."""
    rows = db_session.scalars(
        select(TicketEvent)
        .where(TicketEvent.ticket_id == ticket_id, TicketEvent.event_type.not_in(DERIVED_EVENT_TYPES))
        .order_by(TicketEvent.id)
    ).all()
    return rows


def test_create_get_and_events(tenant, db_session):
    response = tenant.agent.post(
        "/api/v1/tickets",
        json={"subject": "Printer on fire", "priority": "high", "channel": "email", "category": "hardware"},
    )
    assert response.status_code == 201, response.get_json()
    ticket = response.get_json()
    assert ticket["status"] == "open"
    assert ticket["priority"] == "high"
    assert response.headers["Location"].endswith(f"/api/v1/tickets/{ticket['id']}")

    fetched = tenant.viewer.get(f"/api/v1/tickets/{ticket['id']}")
    assert fetched.status_code == 200
    assert fetched.get_json() == ticket

    events = _events(db_session, ticket["id"])
    assert [e.event_type for e in events] == ["created"]
    created = events[0]
    assert (created.status, created.priority, created.channel, created.category) == (
        "open",
        "high",
        "email",
        "hardware",
    )
    assert created.occurred_at == datetime.fromisoformat(ticket["created_at"])


def test_backfill_writes_events_at_their_times(tenant, db_session):
    created = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
    answered = created + timedelta(hours=2, minutes=30)
    resolved = created + timedelta(hours=26)
    response = tenant.agent.post(
        "/api/v1/tickets",
        json={
            "status": "closed",
            "priority": "urgent",
            "channel": "chat",
            "category": "billing",
            "created_at": created.isoformat(),
            "first_response_at": answered.isoformat(),
            "resolved_at": resolved.isoformat(),
        },
    )
    assert response.status_code == 201, response.get_json()
    events = _events(db_session, response.get_json()["id"])
    by_type = {e.event_type: e for e in events}
    assert set(by_type) == {"created", "first_response", "resolved"}
    assert by_type["created"].occurred_at == created
    assert by_type["created"].status == "open"
    assert by_type["first_response"].occurred_at == answered
    assert by_type["first_response"].value == pytest.approx(2.5)
    assert by_type["resolved"].occurred_at == resolved
    assert by_type["resolved"].value == pytest.approx(26.0)
    assert by_type["resolved"].status == "closed"


@pytest.mark.parametrize("status", ["resolved", "closed"])
def test_a_backfill_solved_at_its_creation_or_first_response_was_open_there(tenant, db_session, status):
    """Open at creation and first response, the imported status at resolution: also where those
    instants are the resolution's own."""
    at = datetime(2016, 2, 10, 12, 0, tzinfo=UTC)
    answered_then = tenant.agent.post(
        "/api/v1/tickets",
        json={
            "status": status,
            "created_at": at.isoformat(),
            "first_response_at": at.isoformat(),
            "resolved_at": at.isoformat(),
        },
    )
    later = at + timedelta(hours=2)
    answered_at_solve = tenant.agent.post(
        "/api/v1/tickets",
        json={
            "status": status,
            "created_at": at.isoformat(),
            "first_response_at": later.isoformat(),
            "resolved_at": later.isoformat(),
        },
    )
    for response in (answered_then, answered_at_solve):
        assert response.status_code == 201, response.get_json()
        by_type = {e.event_type: e.status for e in _events(db_session, response.get_json()["id"])}
        assert by_type == {"created": "open", "first_response": "open", "resolved": status}


def test_a_first_reply_back_dated_onto_a_solved_ticket_carries_the_status_of_its_instant(tenant, db_session):
    """Answered while open, though written once the ticket was solved: by a reply or by a PATCH, on a
    ticket created resolved or resolved by a later PATCH; a reply after the solve was made solved."""
    created = datetime(2026, 5, 5, 10, 0, tzinfo=UTC)
    solved = created + timedelta(days=1)

    def first_response_status(ticket_id: int) -> str:
        [status] = [e.status for e in _events(db_session, ticket_id) if e.event_type == "first_response"]
        return status

    def resolved_ticket() -> int:
        body = {"status": "resolved", "created_at": created.isoformat(), "resolved_at": solved.isoformat()}
        response = tenant.agent.post("/api/v1/tickets", json=body)
        assert response.status_code == 201, response.get_json()
        return response.get_json()["id"]

    by_reply = resolved_ticket()
    reply = {"author": "agent", "at": (created + timedelta(hours=2)).isoformat()}
    assert tenant.agent.post(f"/api/v1/tickets/{by_reply}/replies", json=reply).status_code == 201
    assert first_response_status(by_reply) == "open"

    by_patch = resolved_ticket()
    patch = {"first_response_at": (created + timedelta(hours=3)).isoformat()}
    assert tenant.agent.patch(f"/api/v1/tickets/{by_patch}", json=patch).status_code == 200
    assert first_response_status(by_patch) == "open"

    pending_then_solved = tenant.agent.post(
        "/api/v1/tickets", json={"status": "pending", "created_at": created.isoformat()}
    ).get_json()["id"]
    assert (
        tenant.agent.patch(f"/api/v1/tickets/{pending_then_solved}", json={"status": "resolved"}).status_code
        == 200
    )
    reply = {"author": "agent", "at": (created + timedelta(hours=1)).isoformat()}
    assert tenant.agent.post(f"/api/v1/tickets/{pending_then_solved}/replies", json=reply).status_code == 201
    assert first_response_status(pending_then_solved) == "pending"

    after_the_solve = resolved_ticket()
    reply = {"author": "agent", "at": (solved + timedelta(hours=1)).isoformat()}
    assert tenant.agent.post(f"/api/v1/tickets/{after_the_solve}/replies", json=reply).status_code == 201
    assert first_response_status(after_the_solve) == "resolved"


def test_a_resolution_back_filled_before_the_last_status_change_is_refused(tenant, db_session):
    created = datetime(2017, 11, 1, 12, 0, tzinfo=UTC)
    ticket = tenant.agent.post("/api/v1/tickets", json={"created_at": created.isoformat()}).get_json()
    path = f"/api/v1/tickets/{ticket['id']}"
    assert tenant.agent.patch(path, json={"status": "pending"}).status_code == 200  # now
    refused = tenant.agent.patch(
        path, json={"status": "resolved", "resolved_at": (created + timedelta(days=2)).isoformat()}
    )
    assert refused.status_code == 400
    assert refused.get_json()["error"]["details"]["field"] == "resolved_at"
    assert "last status change (pending" in refused.get_json()["error"]["message"]
    # Nothing was written: still pending, no solve among its events.
    assert tenant.agent.get(path).get_json()["status"] == "pending"
    assert "resolved" not in {e.event_type for e in _events(db_session, ticket["id"])}
    # Resolved now (or at a back-filled instant after the change), it is solved.
    assert tenant.agent.patch(path, json={"status": "resolved"}).status_code == 200


@pytest.mark.parametrize(
    ("history", "answered_in"),
    [
        ([("open", "09:00"), ("resolved", "10:00")], "open"),
        ([("open", "09:00"), ("pending", "09:30"), ("resolved", "10:00")], "pending"),
    ],
)
def test_an_imported_history_solved_at_the_first_response_was_answered_before_the_solve(
    tenant, db_session, history, answered_in
):
    from webapp.models import Organization
    from webapp.tickets.imports import import_rows

    def at(hhmm: str) -> str:
        return f"2026-11-16T{hhmm}:00Z"

    row = {
        "subject": "history",
        "status": "resolved",
        "created_at": at("09:00"),
        "first_response_at": at("10:00"),
        "resolved_at": at("10:00"),
        "status_history": [{"status": status, "at": at(hhmm)} for status, hhmm in history],
    }
    report, _, _ = import_rows(db_session, db_session.get(Organization, tenant.org_id), [row])
    assert report.imported == 1
    ticket_id = db_session.scalar(text("SELECT max(id) FROM tickets WHERE org_id = :o"), {"o": tenant.org_id})
    by_type = {e.event_type: e.status for e in _events(db_session, ticket_id)}
    assert (by_type["created"], by_type["first_response"], by_type["resolved"]) == (
        "open",
        answered_in,
        "resolved",
    )


def test_naive_timestamps_are_read_in_the_org_time_zone(make_tenant, db_session):
    tenant = make_tenant(timezone="America/New_York")
    response = tenant.agent.post("/api/v1/tickets", json={"created_at": "2026-01-15T09:00:00"})
    assert response.status_code == 201
    assert datetime.fromisoformat(response.get_json()["created_at"]) == datetime(
        2026, 1, 15, 14, 0, tzinfo=UTC
    )
    ambiguous = tenant.agent.post("/api/v1/tickets", json={"created_at": "2025-11-02T01:30:00"})
    assert ambiguous.status_code == 400
    assert "ambiguous" in ambiguous.get_json()["error"]["message"]
    skipped = tenant.agent.post("/api/v1/tickets", json={"created_at": "2026-03-08T02:30:00"})
    assert skipped.status_code == 400
    assert "does not exist" in skipped.get_json()["error"]["message"]


def test_patch_lifecycle_with_reopen(tenant, db_session):
    ticket = tenant.agent.post("/api/v1/tickets", json={"priority": "low"}).get_json()
    tid = ticket["id"]
    created = datetime.fromisoformat(ticket["created_at"])

    answered = tenant.agent.patch(f"/api/v1/tickets/{tid}", json={"first_response_at": created.isoformat()})
    assert answered.status_code == 200, answered.get_json()

    assert tenant.agent.patch(f"/api/v1/tickets/{tid}", json={"priority": "urgent"}).status_code == 200
    assert tenant.agent.patch(f"/api/v1/tickets/{tid}", json={"assigned_to": "ana"}).status_code == 200

    resolved = tenant.agent.patch(f"/api/v1/tickets/{tid}", json={"status": "resolved"}).get_json()
    assert resolved["resolved_at"] is not None

    reopened = tenant.agent.patch(f"/api/v1/tickets/{tid}", json={"status": "open"}).get_json()
    assert reopened["reopen_count"] == 1
    assert reopened["resolved_at"] is None

    again = tenant.agent.patch(f"/api/v1/tickets/{tid}", json={"status": "closed"}).get_json()
    assert again["status"] == "closed"

    events = _events(db_session, tid)
    types = [e.event_type for e in events]
    assert types == [
        "created",
        "first_response",
        "priority_changed",
        "assigned",
        "status_changed",
        "resolved",
        "reopened",
        "status_changed",
        "status_changed",
        "resolved",
    ]
    priority_change = events[2]
    assert priority_change.priority == "urgent"
    assert priority_change.detail == {"from": "low", "to": "urgent"}
    assert events[3].assigned_to == "ana"
    resolutions = [e for e in events if e.event_type == "resolved"]
    assert len(resolutions) == 2
    for event in resolutions:
        assert event.value == pytest.approx((event.occurred_at - created).total_seconds() / 3600)
        assert event.priority == "urgent"
        assert event.assigned_to == "ana"


def test_list_with_filters_and_cursor(tenant):
    for priority in ["low", "high", "high", "urgent", "high"]:
        tenant.agent.post("/api/v1/tickets", json={"priority": priority})
    first = tenant.viewer.get("/api/v1/tickets?priority=high,urgent&limit=2").get_json()
    assert len(first["items"]) == 2
    assert first["next_cursor"]
    second = tenant.viewer.get(f"/api/v1/tickets?priority=high,urgent&limit=2&cursor={first['next_cursor']}")
    second = second.get_json()
    assert len(second["items"]) == 2
    assert second["next_cursor"] is None
    ids = [t["id"] for t in first["items"] + second["items"]]
    assert ids == sorted(ids, reverse=True)
    assert {t["priority"] for t in first["items"] + second["items"]} <= {"high", "urgent"}


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        ({"status": "done"}, "status"),
        ({"priority": "critical"}, "priority"),
        ({"channel": "fax"}, "channel"),
        ({"color": "red"}, "color"),
        ({"sentiment_score": 1.5}, "sentiment_score"),
        ({"sentiment_score": -2}, "sentiment_score"),
        ({"created_at": "yesterday"}, "created_at"),
        ({"created_at": "2026-02-30T10:00:00Z"}, "created_at"),
        (
            {"created_at": "2026-01-10T10:00:00Z", "first_response_at": "2026-01-10T09:00:00Z"},
            "first_response_at",
        ),
        ({"created_at": "2026-01-10T10:00:00Z", "resolved_at": "2026-01-09T10:00:00Z"}, "resolved_at"),
        ({"status": "open", "resolved_at": "2026-01-10T10:00:00Z"}, "status"),
        ({"created_at": "2099-01-01T00:00:00Z"}, "future"),
        ({"category": "   "}, "category"),
    ],
)
def test_create_validation(tenant, body, needle):
    response = tenant.agent.post("/api/v1/tickets", json=body)
    assert response.status_code == 400, response.get_json()
    error = response.get_json()["error"]
    assert needle in (error["message"] + str(error["details"]))


def test_enum_errors_name_the_allowed_values(tenant):
    message = tenant.agent.post("/api/v1/tickets", json={"priority": "critical"}).get_json()["error"][
        "message"
    ]
    for allowed in ("low", "normal", "high", "urgent"):
        assert allowed in message


def test_patch_validation(tenant):
    tid = tenant.agent.post("/api/v1/tickets", json={}).get_json()["id"]
    assert tenant.agent.patch(f"/api/v1/tickets/{tid}", json={}).status_code == 400
    assert tenant.agent.patch(f"/api/v1/tickets/{tid}", json={"status": None}).status_code == 400
    moved = tenant.agent.patch(f"/api/v1/tickets/{tid}", json={"created_at": "2020-01-01T00:00:00Z"})
    assert moved.status_code == 400
    early = tenant.agent.patch(f"/api/v1/tickets/{tid}", json={"first_response_at": "2020-01-01T00:00:00Z"})
    assert early.status_code == 400
    assert tenant.agent.patch(f"/api/v1/tickets/{tid}", json={"bogus": 1}).status_code == 400
    assert tenant.agent.patch("/api/v1/tickets/999999999", json={"priority": "low"}).status_code == 404


def test_list_validation(tenant):
    assert tenant.viewer.get("/api/v1/tickets?status=nope").status_code == 400
    assert tenant.viewer.get("/api/v1/tickets?limit=0").status_code == 400
    assert tenant.viewer.get("/api/v1/tickets?limit=100000").status_code == 400
    assert tenant.viewer.get("/api/v1/tickets?cursor=%%%").status_code == 400
    assert tenant.viewer.get("/api/v1/tickets?unknown=1").status_code == 400


def test_roles(tenant):
    assert tenant.viewer.post("/api/v1/tickets", json={}).status_code == 403
    tid = tenant.agent.post("/api/v1/tickets", json={}).get_json()["id"]
    assert tenant.viewer.patch(f"/api/v1/tickets/{tid}", json={"priority": "low"}).status_code == 403


def test_organizations_never_see_each_other(make_tenant):
    alpha = make_tenant("Alpha")
    beta = make_tenant("Beta")
    tid = alpha.agent.post("/api/v1/tickets", json={"subject": "secret"}).get_json()["id"]
    assert beta.admin.get(f"/api/v1/tickets/{tid}").status_code == 404
    assert beta.admin.patch(f"/api/v1/tickets/{tid}", json={"priority": "low"}).status_code == 404
    assert beta.admin.get("/api/v1/tickets").get_json()["items"] == []
    assert alpha.viewer.get(f"/api/v1/tickets/{tid}").status_code == 200


# --- bulk create --------------------------------------------------------------

BULK_NOW = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)
BULK_ROWS = [
    {},
    {"subject": "tab\there, newline\nthere, back\\slash, ünïcode", "priority": "high", "channel": "email"},
    {"status": "pending", "assigned_to": "ana", "sentiment_score": -0.5, "category": "billing"},
    {"status": "closed"},
    {"status": "resolved", "created_at": "2026-03-10T12:03:00+00:00"},
    {"created_at": "2026-03-01T09:30:00", "first_response_at": "2026-03-01T10:00:00"},
    {
        "status": "closed",
        "created_at": "2026-03-01T09:00:00+00:00",
        "first_response_at": "2026-03-01T11:30:00+00:00",
        "resolved_at": "2026-03-02T11:00:00+00:00",
        "assigned_to": "ben",
        "sentiment_score": 0.25,
    },
    {"created_at": "2026-02-01T00:00:00Z", "resolved_at": "2026-02-03T00:00:00Z", "channel": "chat"},
    {"created_at": "2026-02-01T00:00:00Z", "first_response_at": "2026-02-01T00:00:00Z", "status": "on_hold"},
]
TICKET_SAME = (
    "subject",
    "status",
    "priority",
    "channel",
    "category",
    "assigned_to",
    "sentiment_score",
    "created_at",
    "updated_at",
    "first_response_at",
    "resolved_at",
    "reopen_count",
)
EVENT_SAME = (
    "event_type",
    "occurred_at",
    "status",
    "priority",
    "channel",
    "category",
    "assigned_to",
    "value",
    "detail",
)


def _written(db_session, org_id):
    tickets = db_session.execute(
        text(f"SELECT id, {', '.join(TICKET_SAME)} FROM tickets WHERE org_id = :o ORDER BY id"), {"o": org_id}
    ).all()
    ordinal = {row[0]: i for i, row in enumerate(tickets)}
    events = db_session.execute(
        text(f"SELECT ticket_id, {', '.join(EVENT_SAME)} FROM ticket_events WHERE org_id = :o ORDER BY id"),
        {"o": org_id},
    ).all()
    return [tuple(row[1:]) for row in tickets], [(ordinal[row[0]], *row[1:]) for row in events]


def test_bulk_create_writes_what_create_ticket_writes(make_tenant, db_session):
    from webapp.models import Organization
    from webapp.tickets.bulk import create_tickets_bulk
    from webapp.tickets.imports import validate_row
    from webapp.tickets.writes import create_ticket

    one_by_one = db_session.get(Organization, make_tenant(timezone="Europe/Berlin").org_id)
    in_bulk = db_session.get(Organization, make_tenant(timezone="Europe/Berlin").org_id)
    rows = []
    for raw in BULK_ROWS:
        fields, problems = validate_row(raw)
        assert not problems, (raw, problems)
        rows.append(fields)

    changes = [create_ticket(db_session, one_by_one, fields, now=BULK_NOW) for fields in rows]
    result = create_tickets_bulk(db_session, in_bulk, rows, now=BULK_NOW)
    db_session.flush()

    expected_tickets, expected_events = _written(db_session, one_by_one.id)
    tickets, events = _written(db_session, in_bulk.id)
    assert len(expected_tickets) == len(rows)
    assert tickets == expected_tickets
    assert events == expected_events
    assert result.ticket_ids == sorted(result.ticket_ids)
    assert len(result.ticket_ids) == len(rows)
    assert result.events == sum(len(c.events) for c in changes) == len(events)
    assert result.event_types == {e.event_type for c in changes for e in c.events}
    # A later resolution leaves the earlier events open; the resolved event carries the final status.
    closed = 6
    base = [e for e in events if e[1] not in DERIVED_EVENT_TYPES]
    assert [e[3] for e in base if e[0] == closed] == ["open", "open", "closed"]
    # One by one, the writes mark their hours for a refresh; in bulk, the rollups are added in the
    # same transaction and nothing is marked. They are the rollups a build from the raw events of
    # the one-by-one organization writes.
    assert rollup_cells.marked(db_session, one_by_one.id)
    assert rollup_cells.marked(db_session, in_bulk.id) == []
    built = rollup_cells.built_from_raw(
        db_session, one_by_one.id, datetime(2026, 1, 31, tzinfo=UTC), BULK_NOW + timedelta(hours=1)
    )
    compared = rollup_cells.assert_same_cells(rollup_cells.answered(db_session, in_bulk.id), built)
    assert compared > 9 * 6  # every ticket's created hour, at every grain


def test_bulk_create_rejects_the_whole_batch_naming_rows(make_tenant, db_session):
    from webapp.models import Organization
    from webapp.tickets.bulk import BulkRejected, create_tickets_bulk

    org = db_session.get(Organization, make_tenant().org_id)
    created = BULK_NOW - timedelta(days=1)
    rows = [
        {"created_at": created},
        {"created_at": created, "resolved_at": created - timedelta(hours=1)},
        {"created_at": created, "resolved_at": created, "status": "open"},
        {"created_at": BULK_NOW + timedelta(hours=1)},
    ]
    with pytest.raises(BulkRejected) as caught:
        create_tickets_bulk(db_session, org, rows, now=BULK_NOW)
    assert [(i, e.field) for i, e in caught.value.errors] == [
        (1, "resolved_at"),
        (2, "status"),
        (3, "created_at"),
    ]
    assert db_session.scalar(text("SELECT count(*) FROM tickets WHERE org_id = :o"), {"o": org.id}) == 0
    assert create_tickets_bulk(db_session, org, [], now=BULK_NOW).ticket_ids == []


def test_times_whose_offset_has_seconds_are_read_as_the_platform_writes_them(tenant, db_session):
    """Exports write a local mean time's offset whole (Monrovia's -00:44:30 before 1972): a tester's
    export of such tickets was refused on import, every row, as POST /tickets refused the time."""
    created = datetime(1960, 6, 1, 12, 0, tzinfo=UTC)
    written = "1960-06-01T11:15:30-00:44:30"  # the same instant
    response = tenant.agent.post(
        "/api/v1/tickets",
        json={
            "created_at": written,
            "status": "resolved",
            "first_response_at": "1960-06-01T12:15:30.250000-00:44:30",
            "resolved_at": "1960-06-02T11:15:30-00:44:30",
        },
    )
    assert response.status_code == 201, response.get_json()
    by_type = {e.event_type: e for e in _events(db_session, response.get_json()["id"])}
    assert by_type["created"].occurred_at == created
    assert by_type["first_response"].occurred_at == created + timedelta(hours=1, milliseconds=250)
    assert by_type["resolved"].occurred_at == created + timedelta(days=1)
    reply = tenant.agent.post(
        f"/api/v1/tickets/{response.get_json()['id']}/replies",
        json={"author": "customer", "at": "1960-06-01T11:45:30-00:44:30"},
    )
    assert reply.status_code == 201, reply.get_json()
    # An offset's seconds past 59 are no offset, as an hour past 23 is not.
    for bad in ("1960-06-01T11:15:30-00:44:60", "1960-06-01T11:15:30+24:00:00"):
        refused = tenant.agent.post("/api/v1/tickets", json={"created_at": bad})
        assert refused.status_code == 400, (bad, refused.get_json())
