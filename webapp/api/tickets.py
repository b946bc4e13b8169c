"""Tickets: the event source analytics is computed from."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable, Iterable
from typing import Any

from flask import Blueprint, Response, jsonify, url_for

from webapp import models
from webapp.analytics import generations
from webapp.api.plumbing.errors import ApiError, not_found
from webapp.api.plumbing.idempotency import answer_before_commit, idempotent
from webapp.api.plumbing.organization import current_organization
from webapp.api.plumbing.spec import document, parse_body, parse_query
from webapp.api.schemas.common import Reply, Satisfaction, Ticket, TicketList, TicketListQuery
from webapp.core.filters import FilterError, parse_filters
from webapp.infra.db import get_session
from webapp.infra.redis_client import get_redis
from webapp.models import Organization
from webapp.models.base import MAX_ID
from webapp.security.admission import current_principal, require_role
from webapp.tickets import reads, writes
from webapp.tickets.effects import after_ticket_change
from webapp.tickets.fields import ReplyFields, SatisfactionFields, TicketCreate, TicketUpdate
from webapp.tickets.rules import TicketError

bp = Blueprint("tickets", __name__, url_prefix="/tickets")


def _encode_cursor(ticket_id: int) -> str:
    return base64.urlsafe_b64encode(f"t:{ticket_id}".encode()).decode().rstrip("=")


def _decode_cursor(cursor: str) -> int:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        prefix, _, value = raw.partition(":")
        after_id = int(value)
        if prefix != "t" or not 0 < after_id <= MAX_ID:
            raise ValueError(raw)
        return after_id
    except (ValueError, binascii.Error, UnicodeDecodeError) as exc:
        raise ApiError(400, "cursor is not valid; use next_cursor from the previous page") from exc


def _refused(exc: TicketError) -> ApiError:
    """The answer to a change the domain refused; nothing of it stays in the session."""
    get_session().rollback()
    return ApiError(exc.status, str(exc), details={"field": exc.field})


def _committed(
    org_id: int,
    change: writes.Change,
    fields: Iterable[str],
    *,
    status: int = 200,
    answer: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
    headers: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Commit the change (with the route's answer, for an Idempotency-Key), then what follows it
    (rollups, cache, live clients); the answer: `answer(ticket)`, or the ticket as JSON."""
    session = get_session()
    ticket = change.ticket.to_dict()
    body = answer(ticket) if answer is not None else ticket
    answer_before_commit(status, body, headers)
    session.commit()
    after_ticket_change(session, get_redis(), org_id, change, tuple(fields))
    return body


def _filters(query: TicketListQuery) -> dict[str, list[str | None]]:
    try:
        return parse_filters(query.model_dump())
    except FilterError as exc:
        raise ApiError(400, str(exc), details={"field": exc.field}) from exc


@bp.post("")
@document(
    "Create a ticket (back-fills may carry created_at, first_response_at, resolved_at)",
    tag="tickets",
    body=TicketCreate,
    responses={201: Ticket},
    headers={201: ("Location",)},
)
@require_role("agent")
@idempotent
def create() -> tuple[Response, int, dict[str, str]]:
    """Create a ticket with its events; 201 with its Location."""
    fields = parse_body(TicketCreate).model_dump(exclude_unset=True)
    org = current_organization()
    try:
        change = writes.create_ticket(get_session(), org, fields)
    except TicketError as exc:
        raise _refused(exc) from exc
    location = {"Location": url_for("api.tickets.get", ticket_id=change.ticket.id)}
    body = _committed(org.id, change, fields, status=201, headers=location)
    return jsonify(body), 201, location


@bp.get("/<int:ticket_id>")
@document("One ticket", tag="tickets", responses={200: Ticket})
@require_role("viewer")
def get(ticket_id: int) -> Response:
    """One ticket of the caller's organization."""
    ticket = reads.get_ticket(get_session(), current_principal().org_id, ticket_id)
    if ticket is None:
        raise not_found("ticket")
    return jsonify(ticket.to_dict())


@bp.patch("/<int:ticket_id>")
@document(
    "Change a ticket; each change appends its events (409: a first response or resolution that is "
    "already set cannot change)",
    tag="tickets",
    body=TicketUpdate,
    responses={200: Ticket},
    errors=(400, 401, 403, 404, 409, 429),
)
@require_role("agent")
def patch(ticket_id: int) -> tuple[Response, int]:
    """Change a ticket (its row locked meanwhile) and append its events."""
    fields = parse_body(TicketUpdate).model_dump(exclude_unset=True)
    if not fields:
        raise ApiError(400, "nothing to change: give at least one field")
    org = current_organization()
    ticket = reads.get_ticket(get_session(), org.id, ticket_id, for_update=True)
    if ticket is None:
        raise not_found("ticket")
    try:
        change = writes.update_ticket(get_session(), org, ticket, fields)
    except TicketError as exc:
        raise _refused(exc) from exc
    return jsonify(_committed(org.id, change, fields)), 200


@bp.get("")
@document(
    "Tickets, newest first, filtered and paginated by cursor",
    tag="tickets",
    query=TicketListQuery,
    responses={200: TicketList},
)
@require_role("viewer")
def list_() -> Response:
    """A page of the organization's tickets, newest first."""
    query = parse_query(TicketListQuery)
    rows = reads.list_tickets(
        get_session(),
        current_principal().org_id,
        filters=_filters(query),
        limit=query.limit + 1,
        after_id=_decode_cursor(query.cursor) if query.cursor else None,
    )
    page = rows[: query.limit]
    next_cursor = _encode_cursor(page[-1].id) if len(rows) > query.limit else None
    return jsonify({"items": [t.to_dict() for t in page], "next_cursor": next_cursor})


def _locked_ticket(org: Organization, ticket_id: int) -> models.Ticket:
    """The organization's ticket, its row locked until the commit, or 404."""
    ticket = reads.get_ticket(get_session(), org.id, ticket_id, for_update=True)
    if ticket is None:
        raise not_found("ticket")
    return ticket


@bp.post("/<int:ticket_id>/replies")
@document(
    "Add a reply (now, or at `at` for back-fills); the first public agent reply sets first_response_at",
    tag="tickets",
    body=ReplyFields,
    responses={201: Reply},
)
@require_role("agent")
@idempotent
def add_reply(ticket_id: int) -> tuple[Response, int]:
    """Record a reply on a ticket; it changes no status."""
    fields = parse_body(ReplyFields).model_dump(exclude_unset=True)
    org = current_organization()
    ticket = _locked_ticket(org, ticket_id)
    try:
        reply, change = writes.add_reply(get_session(), ticket, org, fields)
    except TicketError as exc:
        raise _refused(exc) from exc
    get_session().flush()
    reply_body = reply.to_dict()
    moved = (generations.PUBLIC_REPLY,) if reply.public else ()
    body = _committed(
        org.id, change, moved, status=201, answer=lambda ticket: {**reply_body, "ticket": ticket}
    )
    return jsonify(body), 201


@bp.put("/<int:ticket_id>/satisfaction")
@document(
    "Rate a ticket 1 to 5 (4 and 5 are good); the rating with the latest `at` stands",
    tag="tickets",
    body=SatisfactionFields,
    responses={200: Satisfaction},
)
@require_role("agent")
def rate(ticket_id: int) -> tuple[Response, int]:
    """Set the ticket's satisfaction rating (an older `at` than the standing one changes nothing)."""
    fields = parse_body(SatisfactionFields).model_dump(exclude_unset=True)
    org = current_organization()
    ticket = _locked_ticket(org, ticket_id)
    try:
        rating, change = writes.set_rating(get_session(), ticket, org, fields)
    except TicketError as exc:
        raise _refused(exc) from exc
    body = rating.to_dict()
    _committed(org.id, change, ())
    return jsonify(body), 200
