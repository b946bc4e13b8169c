"""Alert rules on metrics: admins write them, every role reads them, their events and simulations."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from zoneinfo import ZoneInfo

from flask import Blueprint, Response, current_app, jsonify, url_for

from webapp.alerts import evaluation, rules
from webapp.alerts.rules import RuleError
from webapp.analytics import cost, read_time
from webapp.analytics.sql import statement_timeout
from webapp.analytics.window import canonical_window
from webapp.api.plumbing import costs
from webapp.api.plumbing.errors import ApiError, not_found
from webapp.api.plumbing.idempotency import idempotent
from webapp.api.plumbing.organization import current_organization
from webapp.api.plumbing.query_errors import client_errors
from webapp.api.plumbing.spec import document, parse_body, parse_query
from webapp.api.plumbing.writes import no_content, parse_patch
from webapp.api.schemas.alerts import (
    Alert,
    AlertCreate,
    AlertEvents,
    AlertEventsQuery,
    AlertList,
    AlertUpdate,
    SimulateRequest,
    Simulation,
)
from webapp.core.timeutil import utcnow, zone
from webapp.infra.db import get_session
from webapp.infra.redis_client import get_redis
from webapp.models import AlertRule
from webapp.security.admission import current_principal, require_role

bp = Blueprint("alerts", __name__, url_prefix="/alerts")
WRITE_ERRORS = (400, 401, 403, 404, 409, 429)


@contextmanager
def rule_errors() -> Iterator[None]:
    """A refused rule as its JSON error, the transaction rolled back."""
    try:
        yield
    except RuleError as exc:
        get_session().rollback()
        raise ApiError(exc.status, str(exc), details={"field": exc.field} if exc.field else None) from exc


def _zone() -> ZoneInfo:
    return zone(current_organization().timezone)


def _own(alert_id: int, *, lock: bool = False) -> AlertRule:
    rule = rules.get_rule(get_session(), current_principal().org_id, alert_id, lock=lock)
    if rule is None:
        raise not_found("alert")
    return rule


@bp.get("")
@document("The organization's alert rules", tag="alerts", responses={200: AlertList})
@require_role("viewer")
def list_() -> Response:
    """The organization's rules."""
    tz = _zone()
    items = rules.list_rules(get_session(), current_principal().org_id)
    return jsonify({"items": [rules.as_dict(rule, tz) for rule in items]})


@bp.post("")
@document(
    "Create an alert rule, evaluated on every closed bucket from the one in progress on",
    tag="alerts",
    body=AlertCreate,
    responses={201: Alert},
    headers={201: ("Location",)},
    errors=WRITE_ERRORS,
)
@require_role("admin")
@idempotent
def create() -> tuple[Response, int, dict[str, str]]:
    """Create a rule (201 with its Location)."""
    fields = parse_body(AlertCreate).model_dump()
    principal, tz = current_principal(), _zone()
    with rule_errors():
        rule = rules.create_rule(
            get_session(), principal.org_id, fields, tz=tz, created_by=principal.user_id, now=utcnow()
        )
    get_session().commit()
    return jsonify(rules.as_dict(rule, tz)), 201, {"Location": url_for("api.alerts.get", alert_id=rule.id)}


@bp.get("/<int:alert_id>")
@document("One alert rule and its state", tag="alerts", responses={200: Alert})
@require_role("viewer")
def get(alert_id: int) -> Response:
    """One rule of the organization."""
    return jsonify(rules.as_dict(_own(alert_id), _zone()))


@bp.patch("/<int:alert_id>")
@document(
    "Change an alert rule; the next closed bucket is judged by the new definition",
    tag="alerts",
    body=AlertUpdate,
    responses={200: Alert},
    errors=WRITE_ERRORS,
)
@require_role("admin")
def patch(alert_id: int) -> Response:
    """Change the given fields of a rule."""
    fields = parse_patch(AlertUpdate)
    rule, tz = _own(alert_id), _zone()
    with rule_errors():
        rules.update_rule(get_session(), rule, fields, tz=tz, now=utcnow())
    get_session().commit()
    return jsonify(rules.as_dict(rule, tz))


@bp.delete("/<int:alert_id>")
@document(
    "Delete an alert rule and its events", tag="alerts", responses={204: None}, errors=(401, 403, 404, 429)
)
@require_role("admin")
def delete(alert_id: int) -> Response:
    """Delete a rule and its events."""
    get_session().delete(_own(alert_id, lock=True))
    get_session().commit()
    return no_content()


@bp.get("/<int:alert_id>/events")
@document(
    "The rule's transitions (firing, ok), newest first",
    tag="alerts",
    query=AlertEventsQuery,
    responses={200: AlertEvents},
)
@require_role("viewer")
def events(alert_id: int) -> Response:
    """The rule's transitions, newest first."""
    limit = parse_query(AlertEventsQuery).limit
    rule, tz = _own(alert_id), _zone()
    return jsonify({"items": rules.events_of(get_session(), rule, tz, limit=limit)})


@bp.post("/<int:alert_id>/simulate")
@document(
    "The transitions the rule would have made over a past range, from ok, delivering nothing",
    tag="alerts",
    body=SimulateRequest,
    responses={200: Simulation},
    errors=(400, 401, 403, 404, 429, 503),
)
@require_role("viewer")
def simulate(alert_id: int) -> Response:
    """The rule's transitions over a past range, from ok, delivering nothing."""
    body = parse_body(SimulateRequest)
    rule, tz, now = _own(alert_id), _zone(), utcnow()
    definition = rules.definition_of(rule)
    session = get_session()
    # As every analytics read: a statement past the time limit is a 503, not a held connection.
    statement_timeout(session, current_app.config["ANALYTICS_STATEMENT_TIMEOUT_MS"])
    with client_errors():
        window = canonical_window(body.start, body.end, tz=tz.key, default_tz=tz.key, now=now)
        costs.check(cost.series(replace(window, granularity=definition.granularity)), field="end")
        try:
            with read_time.charged(get_redis(), rule.org_id, costs.read_budget()):
                found = evaluation.simulate(
                    session, rule.org_id, definition, tz, start=window.start, end=window.end, now=now
                )
        except evaluation.RangeTooLong as exc:
            raise ApiError(400, str(exc), code="too_costly", details={"field": "end", **exc.details}) from exc
    transitions = [t.as_dict(tz, t.bucket.end) for t in found.transitions]
    return jsonify({"transitions": transitions, "buckets": found.buckets})
