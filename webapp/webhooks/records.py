"""The organization's webhooks: made with a secret shown once, listed without it, changed, deleted."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import func, select, text, update
from sqlalchemy.orm import Session

from webapp.core.timeutil import utcnow
from webapp.models import AlertRule, ReportRun, ReportSchedule, Webhook, WebhookDelivery
from webapp.models.base import MAX_ID
from webapp.webhooks import signing
from webapp.webhooks.targets import Resolver, TargetRefused, check_url

MAX_WEBHOOKS = 50


class WebhookError(ValueError):
    """A webhook request the platform refuses; `status` is the HTTP status that fits it."""

    def __init__(
        self,
        message: str,
        *,
        field: str | None = None,
        status: int = 400,
        details: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.field = field
        self.status = status
        self.details = details or {}


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def as_dict(webhook: Webhook) -> dict[str, Any]:
    """The webhook as the API lists it: never its secret."""
    return {
        "id": webhook.id,
        "url": webhook.url,
        "description": webhook.description,
        "enabled": webhook.enabled,
        "consecutive_failures": webhook.consecutive_failures,
        "disabled_at": _iso(webhook.disabled_at),
        "disabled_reason": webhook.disabled_reason,
        "created_at": _iso(webhook.created_at),
        "updated_at": _iso(webhook.updated_at),
    }


def _checked_url(url: str, allow_private: bool, resolver: Resolver | None) -> str:
    try:
        if resolver is None:
            check_url(url, allow_private=allow_private)
        else:
            check_url(url, allow_private=allow_private, resolver=resolver)
    except TargetRefused as exc:
        raise WebhookError(str(exc), field="url") from exc
    return url


def create_webhook(
    session: Session,
    org_id: int,
    *,
    url: str,
    description: str,
    created_by: int | None,
    allow_private: bool,
    now: datetime,
    resolver: Resolver | None = None,
) -> Webhook:
    """A new webhook with a fresh secret (flushed, not committed); WebhookError for a refused URL."""
    # The URL first (its host's name may take seconds to resolve), then counted under the organization's
    # lock: creations sent at once would each count the same rows.
    checked = _checked_url(url, allow_private, resolver)
    hold_users(session, org_id)
    count = session.scalar(select(func.count()).where(Webhook.org_id == org_id)) or 0
    if count >= MAX_WEBHOOKS:
        raise WebhookError(f"an organization has at most {MAX_WEBHOOKS} webhooks", status=409)
    webhook = Webhook(
        org_id=org_id,
        url=checked,
        description=description,
        secret=signing.new_secret(),
        enabled=True,
        consecutive_failures=0,
        created_by=created_by,
        created_at=now,
        updated_at=now,
    )
    session.add(webhook)
    session.flush()
    return webhook


def get_webhook(session: Session, org_id: int, webhook_id: int) -> Webhook | None:
    """The webhook `webhook_id` of `org_id` (None for another organization's)."""
    if not 0 < webhook_id <= MAX_ID:
        return None
    return session.scalar(select(Webhook).where(Webhook.id == webhook_id, Webhook.org_id == org_id))


def list_webhooks(session: Session, org_id: int) -> list[Webhook]:
    """The organization's webhooks, oldest first."""
    return list(session.scalars(select(Webhook).where(Webhook.org_id == org_id).order_by(Webhook.id)))


def update_webhook(
    session: Session,
    webhook: Webhook,
    fields: Mapping[str, Any],
    *,
    allow_private: bool,
    now: datetime,
    resolver: Resolver | None = None,
) -> None:
    """Change the URL, description or enabled flag; enabling starts the failure count again."""
    if "url" in fields:
        webhook.url = _checked_url(fields["url"], allow_private, resolver)
    if "description" in fields:
        webhook.description = fields["description"]
    if fields.get("enabled") is True and not webhook.enabled:
        webhook.enabled = True
        webhook.consecutive_failures = 0
        webhook.disabled_at = None
        webhook.disabled_reason = None
    elif fields.get("enabled") is False and webhook.enabled:
        webhook.enabled = False
        webhook.disabled_at = now
        webhook.disabled_reason = "disabled by an admin"
    webhook.updated_at = now
    session.flush()


def users_of(session: Session, webhook: Webhook) -> dict[str, list[int]]:
    """The alert rules and report schedules that deliver to the webhook, by kind."""
    channel = [{"type": "webhook", "webhook_id": webhook.id}]
    alerts = session.scalars(
        select(AlertRule.id).where(AlertRule.org_id == webhook.org_id, AlertRule.channels.contains(channel))
    )
    schedules = session.scalars(
        select(ReportSchedule.id).where(
            ReportSchedule.org_id == webhook.org_id, ReportSchedule.webhook_id == webhook.id
        )
    )
    return {"alert_ids": sorted(alerts), "report_schedule_ids": sorted(schedules)}


# pg_advisory_xact_lock(USERS_LOCK_CLASS, org_id): "HOOK". Saves that point a report schedule or an
# alert rule at a webhook, and the deletion of a webhook, take it in turn.
USERS_LOCK_CLASS = 0x484F4F4B


def hold_users(session: Session, org_id: int) -> None:
    """Take the organization's webhook users' lock until the transaction ends: a report schedule or
    alert rule being pointed at a webhook and a webhook being deleted go one at a time, so that
    whichever commits second sees the other (a deletion disables or drops what a save wrote; a save
    after a deletion finds the webhook gone)."""
    session.execute(
        text("SELECT pg_advisory_xact_lock(:cls, :org)"), {"cls": USERS_LOCK_CLASS, "org": org_id}
    )


def delete_webhook(session: Session, webhook: Webhook) -> dict[str, list[int]]:
    """Delete the webhook and its delivery log, whoever uses it: alert rules drop it from their
    channels, report schedules that delivered to it are disabled with no webhook (until given
    another). The alert rules and report schedules that used it, by kind."""
    # The organization's webhook users' lock first: a schedule or rule being saved with a webhook holds
    # it until it commits (hold_users), so this waits for it and then finds it among the users; one
    # saved after this waits, then finds the webhook gone (404). Then the organization's schedules and
    # rules, so that none is pointed at the webhook between this read and its deletion, and the
    # webhook last (an alert pass holds its rule, then its delivery's insert holds the webhook: the
    # rules before the webhook here, as there).
    hold_users(session, webhook.org_id)
    if session.scalar(select(Webhook.id).where(Webhook.id == webhook.id)) is None:
        raise WebhookError("webhook not found", status=404)
    session.execute(
        select(ReportSchedule.id).where(ReportSchedule.org_id == webhook.org_id).with_for_update()
    )
    session.execute(select(AlertRule.id).where(AlertRule.org_id == webhook.org_id).with_for_update())
    users = users_of(session, webhook)
    gone = {"type": "webhook", "webhook_id": webhook.id}
    for rule in session.scalars(select(AlertRule).where(AlertRule.id.in_(users["alert_ids"]))):
        rule.channels = [channel for channel in rule.channels if channel != gone]
    session.execute(
        update(ReportSchedule)
        .where(ReportSchedule.id.in_(users["report_schedule_ids"]))
        .values(webhook_id=None, enabled=False, updated_at=utcnow())
    )
    # Report runs whose report.ready this webhook had not taken yet end failed: their delivery goes
    # with the webhook, and they would otherwise be answered as recorded ("delivered").
    session.execute(
        update(ReportRun)
        .where(
            ReportRun.org_id == webhook.org_id,
            ReportRun.state == "delivered",
            ReportRun.delivery_id.in_(
                select(WebhookDelivery.id).where(
                    WebhookDelivery.webhook_id == webhook.id, WebhookDelivery.state != "succeeded"
                )
            ),
        )
        .values(state="failed", error="the webhook was deleted before its receiver took report.ready")
    )
    session.delete(webhook)
    session.flush()
    return users
