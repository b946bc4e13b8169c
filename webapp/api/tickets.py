"""Tickets: the event source analytics is computed from."""

from __future__ import annotations

import base64
import binascii

from flask import Blueprint, Response, jsonify, url_for

from webapp.api.plumbing.errors import ApiError, not_found
from webapp.api.plumbing.spec import document, parse_body, parse_query
from webapp.api.schemas.common import Ticket, TicketList, TicketListQuery
from webapp.core.filters import FilterError, parse_filters
from webapp.infra.db import get_session
from webapp.models import Organization
from webapp.security.admission import current_principal, require_role
from webapp.tickets import writes as ticket_domain
from webapp.tickets.effects import after_ticket_change
from webapp.tickets.fields import TicketCreate, TicketUpdate

bp = Blueprint("tickets", __name__, url_prefix="/tickets")


def _org() -> Organization:
    org = get_session().get(Organization, current_principal().org_id)
    if org is None:
        raise ApiError(401, "the token's organization no longer exists")
    return org


def _encode_cursor(ticket_id: int) -> str:
    return base64.urlsafe_b64encode(f"t:{ticket_id}".encode()).decode().rstrip("=")


def _decode_cursor(cursor: str) -> int:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        prefix, _, value = raw.partition(":")
        after_id = int(value)
        if prefix != "t" or not 0 < after_id <= ticket_domain.MAX_ID:
            raise ValueError(raw)
        return after_id
    except (ValueError, binascii.Error, UnicodeDecodeError) as exc:
        raise ApiError(400, "cursor is not valid; use next_cursor from the previous page") from exc


def _apply(fields: dict, creating: bool, ticket_id: int | None = None) -> tuple[dict, int]:
    session = get_session()
    org = _org()
    try:
        if creating:
            change = ticket_domain.create_ticket(session, org, fields)
        else:
            assert ticket_id is not None
            ticket = ticket_domain.get_ticket(session, org.id, ticket_id, for_update=True)
            if ticket is None:
                raise not_found("ticket")
            change = ticket_domain.update_ticket(session, org, ticket, fields)
    except ticket_domain.TicketError as exc:
        session.rollback()
        raise ApiError(exc.status, str(exc), details={"field": exc.field}) from exc
    body = change.ticket.to_dict()
    session.commit()
    after_ticket_change(org.id, change, tuple(fields))
    return body, 201 if creating else 200


@bp.post("")
@document(
    "Create a ticket (back-fills may carry created_at, first_response_at, resolved_at)",
    tag="tickets",
    body=TicketCreate,
    responses={201: Ticket},
)
@require_role("agent")
def create() -> tuple[Response, int, dict[str, str]]:
    fields = parse_body(TicketCreate).model_dump(exclude_unset=True)
    body, status = _apply(fields, creating=True)
    location = url_for("api.tickets.get", ticket_id=body["id"])
    return jsonify(body), status, {"Location": location}


@bp.get("/<int:ticket_id>")
@document("One ticket", tag="tickets", responses={200: Ticket})
@require_role("viewer")
def get(ticket_id: int) -> Response:
    ticket = ticket_domain.get_ticket(get_session(), current_principal().org_id, ticket_id)
    if ticket is None:
        raise not_found("ticket")
    return jsonify(ticket.to_dict())


@bp.patch("/<int:ticket_id>")
@document(
    "Change a ticket; each change appends its events",
    tag="tickets",
    body=TicketUpdate,
    responses={200: Ticket},
)
@require_role("agent")
def patch(ticket_id: int) -> tuple[Response, int]:
    fields = parse_body(TicketUpdate).model_dump(exclude_unset=True)
    if not fields:
        raise ApiError(400, "nothing to change: give at least one field")
    body, status = _apply(fields, creating=False, ticket_id=ticket_id)
    return jsonify(body), status


@bp.get("")
@document(
    "Tickets, newest first, filtered and paginated by cursor",
    tag="tickets",
    query=TicketListQuery,
    responses={200: TicketList},
)
@require_role("viewer")
def list_() -> Response:
    query = parse_query(TicketListQuery)
    try:
        filters = parse_filters(query.model_dump())
    except FilterError as exc:
        raise ApiError(400, str(exc), details={"field": exc.field}) from exc
    after_id = _decode_cursor(query.cursor) if query.cursor else None
    rows = ticket_domain.list_tickets(
        get_session(),
        current_principal().org_id,
        filters=filters,
        limit=query.limit + 1,
        after_id=after_id,
    )
    page = rows[: query.limit]
    next_cursor = _encode_cursor(page[-1].id) if len(rows) > query.limit else None
    return jsonify({"items": [t.to_dict() for t in page], "next_cursor": next_cursor})
