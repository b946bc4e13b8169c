"""Alert rules of an organization: checked against the metric registry, the filters and the
organization's webhooks, stored, changed and listed with their recorded transitions."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from webapp.alerts.conditions import condition_from
from webapp.alerts.periods import bucket_containing
from webapp.alerts.readings import Definition
from webapp.analytics.metrics import METRICS
from webapp.core.filters import FilterError, parse_filter_object
from webapp.models import AlertEvent, AlertRule, Webhook
from webapp.models.base import MAX_ID
from webapp.webhooks.records import hold_users

MAX_RULES = 100
DEFINITION_FIELDS = ("metric", "filters", "granularity", "condition", "min_count")


class RuleError(ValueError):
    """A rule the platform refuses; `status` is the HTTP status that fits it (404: a webhook not found)."""

    def __init__(self, message: str, *, field: str | None = None, status: int = 400) -> None:
        super().__init__(message)
        self.field = field
        self.status = status


def definition_of(rule: AlertRule) -> Definition:
    """What the rule evaluates."""
    return Definition(
        metric=rule.metric,
        filters=rule.filters,
        granularity=rule.granularity,
        condition=condition_from(rule.condition),
        min_count=rule.min_count,
    )


def _iso(value: datetime | None, tz: ZoneInfo) -> str | None:
    return value.astimezone(tz).isoformat() if value is not None else None


def as_dict(rule: AlertRule, tz: ZoneInfo) -> dict[str, Any]:
    """The rule as the API answers it (times in the organization's zone)."""
    return {
        "id": rule.id,
        "name": rule.name,
        "metric": rule.metric,
        "filters": rule.filters,
        "granularity": rule.granularity,
        "condition": rule.condition,
        "min_count": rule.min_count,
        "channels": rule.channels,
        "enabled": rule.enabled,
        "state": rule.state,
        "evaluated_until": _iso(rule.evaluated_until, tz),
        "last_evaluated_at": _iso(rule.last_evaluated_at, tz),
        "created_at": _iso(rule.created_at, tz),
        "updated_at": _iso(rule.updated_at, tz),
    }


def _checked(session: Session, org_id: int, fields: Mapping[str, Any]) -> dict[str, Any]:
    """The fields to store, checked: a registry metric, known filters, the organization's webhooks."""
    out = dict(fields)
    if "metric" in fields and fields["metric"] not in METRICS:
        raise RuleError(f"unknown metric {fields['metric']!r}; allowed: {', '.join(METRICS)}", field="metric")
    if "filters" in fields:
        try:
            out["filters"] = parse_filter_object(fields["filters"] or {})
        except FilterError as exc:
            raise RuleError(
                str(exc), field=f"filters.{exc.field}" if exc.field != "filters" else "filters"
            ) from exc
    if "channels" in fields:
        out["channels"] = _channels(session, org_id, fields["channels"])
    return out


def _channels(session: Session, org_id: int, channels: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The channels without repeats, every webhook one of the organization's (else 404)."""
    out: list[dict[str, Any]] = []
    for channel in channels:
        kept = (
            {"type": "websocket"}
            if channel["type"] == "websocket"
            else {
                "type": "webhook",
                "webhook_id": channel["webhook_id"],
            }
        )
        if kept in out:
            continue
        if kept["type"] == "webhook":
            # Under the webhook users' lock until the rule is saved: a webhook's deletion waits for it
            # and then drops it from the rule's channels; a rule saved after it finds it gone (404).
            hold_users(session, org_id)
            found = session.scalar(
                select(Webhook.id).where(Webhook.id == kept["webhook_id"], Webhook.org_id == org_id)
            )
            if found is None:
                raise RuleError(f"webhook {kept['webhook_id']} not found", field="channels", status=404)
        out.append(kept)
    return out


def create_rule(
    session: Session,
    org_id: int,
    fields: Mapping[str, Any],
    *,
    tz: ZoneInfo,
    created_by: int | None,
    now: datetime,
) -> AlertRule:
    """A new rule (flushed): evaluated from the bucket in progress on, once each bucket closes."""
    # Counted under the organization's lock (the one saves pointing at a webhook take): creations sent
    # at once each counted 99 and went past the cap.
    hold_users(session, org_id)
    count = session.scalar(select(func.count()).where(AlertRule.org_id == org_id)) or 0
    if count >= MAX_RULES:
        raise RuleError(f"an organization has at most {MAX_RULES} alert rules", status=409)
    checked = _checked(session, org_id, fields)
    rule = AlertRule(
        org_id=org_id,
        name=checked["name"],
        metric=checked["metric"],
        filters=checked.get("filters", {}),
        granularity=checked["granularity"],
        condition=checked["condition"],
        min_count=checked.get("min_count", 0),
        channels=checked["channels"],
        enabled=checked.get("enabled", True),
        state="ok",
        evaluated_until=bucket_containing(checked["granularity"], tz, now).start,
        created_by=created_by,
        created_at=now,
        updated_at=now,
    )
    session.add(rule)
    session.flush()
    return rule


def update_rule(
    session: Session, rule: AlertRule, fields: Mapping[str, Any], *, tz: ZoneInfo, now: datetime
) -> None:
    """Change the rule; the next closed bucket is judged by its new definition, from the state it has.

    A rule enabled again starts at the bucket in progress: the buckets it was off for are not
    evaluated. A rule moved to another granularity starts at the bucket in progress at that
    granularity, even where that begins before what it judged at the old one (a day holding the hours
    judged already): that bucket was never judged as such, and a rule moved from hourly to daily at
    noon still judges today.
    """
    checked = _checked(session, rule.org_id, fields)
    moved = "granularity" in checked and checked["granularity"] != rule.granularity
    enabled_again = checked.get("enabled") is True and not rule.enabled
    for name, value in checked.items():
        setattr(rule, name, value)
    current = bucket_containing(rule.granularity, tz, now).start
    if moved:
        rule.evaluated_until = current
    elif enabled_again:
        # Never back: each (rule, bucket) is evaluated once.
        rule.evaluated_until = max(rule.evaluated_until, current)
    rule.updated_at = now
    session.flush()


def get_rule(session: Session, org_id: int, rule_id: int, *, lock: bool = False) -> AlertRule | None:
    """The rule `rule_id` of `org_id` (None for another organization's); `lock`: its row held until the
    transaction ends (a deletion: of two at once, the second finds it gone)."""
    if not 0 < rule_id <= MAX_ID:
        return None
    query = select(AlertRule).where(AlertRule.id == rule_id, AlertRule.org_id == org_id)
    return session.scalar(query.with_for_update() if lock else query)


def list_rules(session: Session, org_id: int) -> list[AlertRule]:
    """The organization's rules, oldest first."""
    return list(session.scalars(select(AlertRule).where(AlertRule.org_id == org_id).order_by(AlertRule.id)))


def events_of(session: Session, rule: AlertRule, tz: ZoneInfo, *, limit: int) -> list[dict[str, Any]]:
    """The rule's recorded transitions, newest first."""
    rows = session.scalars(
        select(AlertEvent)
        .where(AlertEvent.rule_id == rule.id)
        .order_by(AlertEvent.bucket.desc(), AlertEvent.bucket_end.desc(), AlertEvent.id.desc())
        .limit(limit)
    )
    return [
        {
            "state": row.state,
            "bucket": row.bucket.astimezone(tz).isoformat(),
            "bucket_end": row.bucket_end.astimezone(tz).isoformat(),
            "value": _as_answered(rule.metric, row.value),
            "count": row.count,
            "score": row.score,
            "change_pct": row.change_pct,
            "at": row.at.astimezone(tz).isoformat(),
        }
        for row in rows
    ]


def _as_answered(metric: str, value: float | None) -> float | int | None:
    """A stored value (a float column) as the series, the simulation and the deliveries gave it: a
    count as an integer (21, not 21.0)."""
    known = METRICS.get(metric)
    counted = known is not None and (known.is_count or bool(known.parts))
    if value is not None and counted and value.is_integer():
        return int(value)
    return value
