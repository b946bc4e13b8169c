"""The organization's SLA policy, and where each SLA target of a ticket stands."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify

from webapp.api.plumbing.errors import not_found
from webapp.api.plumbing.spec import document, parse_body
from webapp.api.schedules import clock_errors, committed
from webapp.api.schemas.sla import Policy, PolicyPut, TicketSla
from webapp.clocks import policy as domain
from webapp.clocks.tracking import ticket_sla
from webapp.core.timeutil import utcnow
from webapp.infra.db import get_session
from webapp.security.admission import current_principal, require_role

bp = Blueprint("sla", __name__)


@bp.get("/sla-policy")
@document("The SLA policy in force (the default one until it is set)", tag="sla", responses={200: Policy})
@require_role("viewer")
def get_policy() -> Response:
    with clock_errors():
        policy = domain.policy_for(get_session(), current_principal().org_id)
    return jsonify(policy.to_dict())


@bp.put("/sla-policy")
@document(
    "Set the SLA policy: clock, pause statuses, targets per priority",
    tag="sla",
    body=PolicyPut,
    responses={200: Policy},
    errors=(400, 401, 403, 404, 429),
)
@require_role("admin")
def put_policy() -> Response:
    data = parse_body(PolicyPut)
    org_id = current_principal().org_id
    with clock_errors():
        policy = domain.put_policy(
            get_session(),
            org_id,
            schedule_id=data.schedule_id,
            pause_statuses=list(data.pause_statuses),
            targets=data.targets.model_dump(),
        )
    committed(org_id, sla_changed=True)
    return jsonify(policy.to_dict())


@bp.get("/tickets/<int:ticket_id>/sla")
@document(
    "Each SLA target of the ticket: state, elapsed, target, breach_at", tag="sla", responses={200: TicketSla}
)
@require_role("viewer")
def ticket(ticket_id: int) -> Response:
    now = utcnow()
    with clock_errors():
        found = ticket_sla(get_session(), current_principal().org_id, ticket_id, now)
    if found is None:
        raise not_found("ticket")
    policy, evaluation = found
    return jsonify(
        {
            "ticket_id": ticket_id,
            "policy_clock": policy.clock_name,
            "schedule_id": policy.schedule_id,
            "evaluated_at": now.isoformat(),
            "targets": [outcome.to_dict() for outcome in evaluation.outcomes],
        }
    )
