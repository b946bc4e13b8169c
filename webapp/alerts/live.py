"""The live pass: each enabled rule evaluated on every bucket that closed since its last pass, in
order, each transition recorded once and handed to the rule's channels once.

A rule is evaluated under its row lock (FOR UPDATE SKIP LOCKED: a second pass running at the same time
skips it), and what a pass records (the transitions with their unique (rule, bucket), the webhook
deliveries, the new state and `evaluated_until`) commits in one transaction: two beat ticks or two
workers cannot record a transition twice, and a pass that dies records nothing. Deliveries are sent
and the WebSocket told only after that commit (by the caller).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import redis
from sqlalchemy import case, select
from sqlalchemy.orm import Session

from webapp.alerts.evaluation import GRACE, Transition, run
from webapp.alerts.periods import SHORTEST, closed_buckets
from webapp.alerts.rules import definition_of
from webapp.core.timeutil import TimeError, zone
from webapp.core.vocabulary import ALERT_EVENT_TYPES
from webapp.live import events
from webapp.models import AlertEvent, AlertRule, Organization, Webhook
from webapp.webhooks import deliveries

log = logging.getLogger(__name__)

# Buckets one pass evaluates per rule; a rule further behind (workers were down) goes on next pass.
MAX_BUCKETS_PER_PASS = 500


@dataclass
class Recorded:
    """What one rule's pass recorded, to hand to its channels once it has committed."""

    org_id: int
    rule_id: int
    transitions: list[dict[str, Any]] = field(default_factory=list)
    websocket: list[dict[str, Any]] = field(default_factory=list)
    delivery_ids: list[uuid.UUID] = field(default_factory=list)
    buckets: int = 0


def rules_due(session: Session, *, now: datetime, org_ids: Sequence[int] | None = None) -> list[int]:
    """Enabled rules that may have a bucket closed since their last pass (behind by at least their
    granularity's shortest bucket), by id."""
    shortest = case(
        *((AlertRule.granularity == name, length) for name, length in SHORTEST.items()),
        else_=min(SHORTEST.values()),
    )
    query = select(AlertRule.id).where(AlertRule.enabled, AlertRule.evaluated_until + shortest <= now - GRACE)
    if org_ids is not None:
        query = query.where(AlertRule.org_id.in_(org_ids))
    return list(session.scalars(query.order_by(AlertRule.id)))


def evaluate_rule(session: Session, rule_id: int, *, now: datetime) -> Recorded | None:
    """Evaluate the rule's closed buckets (not committed); None when another pass holds it or it has
    nothing to evaluate."""
    rule = session.scalar(select(AlertRule).where(AlertRule.id == rule_id).with_for_update(skip_locked=True))
    if rule is None or not rule.enabled:
        return None
    org = session.get(Organization, rule.org_id)
    try:
        tz = zone(org.timezone if org is not None else "")
    except TimeError as exc:
        log.error("alert=%s org=%s has an unusable time zone: %s", rule.id, rule.org_id, exc)
        return None
    buckets = closed_buckets(
        rule.granularity, tz, since=rule.evaluated_until, until=now - GRACE, limit=MAX_BUCKETS_PER_PASS
    )
    if not buckets:
        return None
    transitions, state = run(session, rule.org_id, definition_of(rule), tz, buckets, rule.state)
    recorded = Recorded(rule.org_id, rule.id, buckets=len(buckets))
    for transition in transitions:
        _record(session, rule, transition, tz, now, recorded)
    rule.state = state
    rule.evaluated_until = buckets[-1].end
    rule.last_evaluated_at = now
    session.flush()
    return recorded


def _record(
    session: Session, rule: AlertRule, transition: Transition, tz: ZoneInfo, now: datetime, into: Recorded
) -> None:
    """The transition's event row, its webhook deliveries and its WebSocket message."""
    event = AlertEvent(
        rule_id=rule.id,
        org_id=rule.org_id,
        state=transition.state,
        bucket=transition.bucket.start,
        bucket_end=transition.bucket.end,
        value=transition.value,
        count=transition.count,
        score=transition.score,
        change_pct=transition.change_pct,
        at=now,
    )
    session.add(event)
    session.flush()
    shown = transition.as_dict(tz, now)
    into.transitions.append(shown)
    data = {
        "alert_id": rule.id,
        "name": rule.name,
        "metric": rule.metric,
        "granularity": rule.granularity,
        "filters": rule.filters,
        "condition": rule.condition,
        **shown,
    }
    for channel in rule.channels:
        if channel["type"] == "websocket":
            into.websocket.append(
                {key: data[key] for key in ("alert_id", "name", "state", "bucket", "value", "score")}
            )
            continue
        webhook = session.get(Webhook, channel["webhook_id"])
        if webhook is None or webhook.org_id != rule.org_id:
            log.warning("alert=%s names webhook %s, which is gone", rule.id, channel["webhook_id"])
            continue
        delivery_id = deliveries.create(
            session,
            webhook,
            ALERT_EVENT_TYPES[transition.state],
            data,
            now=now,
            source_key=f"alert_event:{event.id}",
        )
        if delivery_id is not None:
            into.delivery_ids.append(delivery_id)


def announce(client: redis.Redis, recorded: Recorded) -> None:
    """Tell the organization's sockets of the committed transitions (`alert` messages)."""
    for message in recorded.websocket:
        events.publish(client, recorded.org_id, "alert", message)
