"""Webhook deliveries: made in the transaction of what they announce, sent after it commits, retried
with growing delays, logged attempt by attempt, and the webhook disabled after too many failures.

A delivery row is an outbox entry: its body (with the `id` every retry repeats) is fixed when it is
made, in the same transaction as the alert transition or report run it announces, so it exists if
and only if that commits. Whoever made it hands its id to the queue after the commit; a worker claims
it (one attempt at a time: a claim is a conditional UPDATE), POSTs it, and records the answer. Beat's
sweep sends again whatever is due and was not sent: a lost message, a worker that died mid-attempt
(its lease ran out), or a retry whose delay is too long to wait for in the broker.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

from sqlalchemy import and_, func, or_, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from webapp.models import Webhook, WebhookAttempt, WebhookDelivery
from webapp.webhooks import signing, transport
from webapp.webhooks.targets import Resolver, TargetRefused, checked_addresses, parse_url

log = logging.getLogger(__name__)

SEND_TASK = "deliveries.send"
# The log's word for an attempt whose answer was never recorded: being made now, or its worker stopped
# (the delivery is attempted again, with the same id, once its lease runs out).
NO_OUTCOME = "no answer recorded: being sent, or its worker stopped while sending it"
# An attempt holds its delivery this long: the timeout, plus time to record the answer.
LEASE = timedelta(seconds=60)
# Retries due within this long wait in the broker (countdown); longer ones are the sweep's to send.
COUNTDOWN_MAX_SECONDS = 300.0
# A pending delivery this late was not sent by its own message: the sweep sends it again.
SWEEP_GRACE = timedelta(seconds=15)
# A worker's clock may run a little ahead of the one that set the time of the next attempt.
CLOCK_SLACK = timedelta(seconds=1)


class TaskQueue(Protocol):
    """What deliveries ask of the task queue (a Celery app is one)."""

    def send_task(self, name: str, **options: Any) -> Any:
        """Send the task `name` to the broker."""


@dataclass(frozen=True)
class Settings:
    """How deliveries are attempted: WEBHOOK_ALLOW_PRIVATE, _RETRY_DELAYS, _MAX_FAILURES, _TIMEOUT_SECONDS."""

    allow_private: bool
    retry_delays: tuple[float, ...]
    max_failures: int
    timeout: float

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> Settings:
        """The settings an application's config holds."""
        return cls(
            allow_private=config["WEBHOOK_ALLOW_PRIVATE"],
            retry_delays=tuple(config["WEBHOOK_RETRY_DELAYS"]),
            max_failures=config["WEBHOOK_MAX_FAILURES"],
            timeout=config["WEBHOOK_TIMEOUT_SECONDS"],
        )


def body_of(delivery_id: uuid.UUID, event_type: str, org_id: int, data: Any, now: datetime) -> str:
    """The JSON body every attempt of a delivery sends: {id, type, created_at, organization_id, data}."""
    document = {
        "id": str(delivery_id),
        "type": event_type,
        "created_at": now.isoformat(),
        "organization_id": org_id,
        "data": data,
    }
    return json.dumps(document, separators=(",", ":"), default=str)


# Test deliveries of one webhook waiting for their first attempt or being sent before a new test is
# refused: a test costs the deliveries queue every organization shares a worker's attempt, and a slow
# receiver holds it for its timeout, so a loop of tests must not fill that queue. Tests waiting
# between retries (up to hours) do not count: an admin debugging a receiver that is down may go on
# testing it.
TESTS_IN_FLIGHT = 3


def tests_in_flight(session: Session, webhook: Webhook) -> int:
    """The webhook's test deliveries not attempted yet or being sent, its row locked so that
    concurrent tests count each other."""
    session.execute(select(Webhook.id).where(Webhook.id == webhook.id).with_for_update())
    return (
        session.scalar(
            select(func.count())
            .select_from(WebhookDelivery)
            .where(
                WebhookDelivery.webhook_id == webhook.id,
                WebhookDelivery.event_type == "webhook.test",
                or_(
                    WebhookDelivery.state == "sending",
                    and_(WebhookDelivery.state == "pending", WebhookDelivery.attempts == 0),
                ),
            )
        )
        or 0
    )


def create(
    session: Session,
    webhook: Webhook,
    event_type: str,
    data: Any,
    *,
    now: datetime,
    source_key: str | None = None,
) -> uuid.UUID | None:
    """A pending delivery of `data` to `webhook`, in the session's transaction; its id.

    None when the webhook is disabled, or when `source_key` was delivered to this webhook already
    (a second evaluation of the same transition makes none).
    """
    if not webhook.enabled:
        log.info("webhook=%s org=%s is disabled; %s not delivered", webhook.id, webhook.org_id, event_type)
        return None
    delivery_id = uuid.uuid4()
    statement = (
        insert(WebhookDelivery)
        .values(
            id=delivery_id,
            org_id=webhook.org_id,
            webhook_id=webhook.id,
            event_type=event_type,
            source_key=source_key,
            body=body_of(delivery_id, event_type, webhook.org_id, data, now),
            state="pending",
            attempts=0,
            # The database's clock: a pass replayed with another `now` (a test, a catch-up) still
            # makes a delivery that is due at once.
            next_attempt_at=func.now(),
            # The database's clock, not the body's `created_at` (the pass's moment, which may lie
            # seconds back): the log lists deliveries newest first by it, and its cursor relies on that.
            created_at=func.now(),
        )
        .on_conflict_do_nothing(index_elements=["webhook_id", "source_key"])
        .returning(WebhookDelivery.id)
    )
    return session.scalar(statement)


def enqueue(tasks: TaskQueue, delivery_ids: Iterable[uuid.UUID], *, countdown: float = 0.0) -> None:
    """Hand committed deliveries to the workers; one the broker refuses is left to the sweep."""
    for delivery_id in delivery_ids:
        try:
            tasks.send_task(SEND_TASK, args=[str(delivery_id)], countdown=countdown or None)
        except Exception as exc:  # kombu raises several connection error types
            log.warning("delivery=%s not queued (the sweep will send it): %s", delivery_id, exc)


@dataclass(frozen=True)
class Claimed:
    """A delivery an attempt may now be made of, with what the attempt needs."""

    id: uuid.UUID
    org_id: int
    webhook_id: int
    number: int
    body: str
    url: str
    secret: str


def claim(session: Session, delivery_id: uuid.UUID, *, now: datetime) -> Claimed | None:
    """Take the delivery for one attempt (committed), or None: not due, being attempted, or finished.

    A delivery whose webhook was disabled meanwhile is finished as failed instead.
    """
    due = or_(
        and_(WebhookDelivery.state == "pending", WebhookDelivery.next_attempt_at <= now + CLOCK_SLACK),
        and_(WebhookDelivery.state == "sending", WebhookDelivery.lease_until < now),
    )
    row = session.execute(
        update(WebhookDelivery)
        .where(WebhookDelivery.id == delivery_id, due)
        .values(state="sending", lease_until=now + LEASE, attempts=WebhookDelivery.attempts + 1)
        .returning(
            WebhookDelivery.org_id, WebhookDelivery.webhook_id, WebhookDelivery.attempts, WebhookDelivery.body
        )
    ).one_or_none()
    if row is None:
        session.rollback()
        return None
    webhook = session.get(Webhook, row.webhook_id)
    if webhook is None or not webhook.enabled:
        # No attempt is made: the count the claim raised goes back (a report run's error counts
        # the attempts as the delivery log lists them).
        session.execute(
            update(WebhookDelivery)
            .where(WebhookDelivery.id == delivery_id)
            .values(attempts=WebhookDelivery.attempts - 1)
        )
        _finish(session, delivery_id, "failed", now, error="the webhook is disabled")
        session.commit()
        return None
    # The attempt is logged before it is made: if its worker stops before recording the answer, the
    # log still shows an attempt the receiver may have had (the retry repeats its id).
    session.add(
        WebhookAttempt(
            delivery_id=delivery_id,
            number=row.attempts,
            started_at=now,
            duration_ms=0,
            address=None,
            status_code=None,
            error=NO_OUTCOME,
        )
    )
    session.commit()
    return Claimed(
        delivery_id, row.org_id, row.webhook_id, row.attempts, row.body, webhook.url, webhook.secret
    )


def attempt(
    claimed: Claimed, settings: Settings, *, now: datetime, resolver: Resolver | None = None
) -> transport.Answer:
    """POST the delivery once, signed now, to an address its URL resolves to now and that is allowed."""
    try:
        target = parse_url(claimed.url)
        if resolver is None:
            addresses = checked_addresses(target, allow_private=settings.allow_private)
        else:
            addresses = checked_addresses(target, allow_private=settings.allow_private, resolver=resolver)
    except TargetRefused as exc:
        return transport.Answer(None, f"refused: {exc}", None, 0)
    body = claimed.body.encode()
    headers = {
        signing.HEADER: signing.header(claimed.secret, body, int(now.timestamp())),
        "Webhook-Id": str(claimed.id),
    }
    return transport.post(target, addresses, body, headers, timeout=settings.timeout)


@dataclass(frozen=True)
class Outcome:
    """Where an attempt left its delivery: its state, and the seconds until the next attempt."""

    state: str
    retry_in: float | None = None
    disabled: bool = False


def record(
    session: Session, claimed: Claimed, answer: transport.Answer, settings: Settings, *, now: datetime
) -> Outcome:
    """Log the attempt and move the delivery on (committed): done, retried later, or failed for good."""
    started = now - timedelta(milliseconds=answer.duration_ms)
    logged = insert(WebhookAttempt).values(
        delivery_id=claimed.id,
        number=claimed.number,
        started_at=started,
        duration_ms=answer.duration_ms,
        address=answer.address,
        status_code=answer.status,
        error=answer.error if answer.error is None else answer.error[:1000],
    )
    # The row the claim wrote (outcome unknown until now) takes the answer.
    session.execute(
        logged.on_conflict_do_update(
            index_elements=["delivery_id", "number"],
            set_={
                name: logged.excluded[name]
                for name in ("started_at", "duration_ms", "address", "status_code", "error")
            },
        )
    )
    if answer.ok:
        if not _finish(session, claimed.id, "succeeded", now, status=answer.status, held_by=claimed):
            session.commit()
            return SUPERSEDED
        session.execute(
            update(Webhook).where(Webhook.id == claimed.webhook_id).values(consecutive_failures=0)
        )
        session.commit()
        return Outcome("succeeded")
    error = answer.error or f"answered {answer.status}"
    if claimed.number <= len(settings.retry_delays):
        delay = settings.retry_delays[claimed.number - 1]
        moved = session.execute(
            update(WebhookDelivery)
            .where(*_still_held(claimed))
            .values(
                state="pending",
                next_attempt_at=now + timedelta(seconds=delay),
                lease_until=None,
                last_status=answer.status,
                last_error=error,
            )
        )
        session.commit()
        return Outcome("pending", retry_in=delay) if moved.rowcount else SUPERSEDED
    if not _finish(session, claimed.id, "failed", now, status=answer.status, error=error, held_by=claimed):
        session.commit()
        return SUPERSEDED
    disabled = _count_failure(session, claimed.webhook_id, settings.max_failures, now)
    session.commit()
    return Outcome("failed", disabled=disabled)


# What a stalled attempt's record returns: its answer is logged, the delivery is a newer attempt's.
SUPERSEDED = Outcome("superseded")


def _still_held(claimed: Claimed) -> tuple[Any, ...]:
    """The delivery as this attempt's claim left it: a worker that stalled past its lease finds a
    newer attempt's claim (or its outcome) there instead, which its own outcome must not overwrite
    (its attempt is still logged)."""
    return (
        WebhookDelivery.id == claimed.id,
        WebhookDelivery.state == "sending",
        WebhookDelivery.attempts == claimed.number,
    )


def _finish(
    session: Session,
    delivery_id: uuid.UUID,
    state: str,
    now: datetime,
    *,
    status: int | None = None,
    error: str | None = None,
    held_by: Claimed | None = None,
) -> bool:
    """Finish the delivery (only while the claim `held_by` holds it, when given); whether it did."""
    where = _still_held(held_by) if held_by is not None else (WebhookDelivery.id == delivery_id,)
    result = session.execute(
        update(WebhookDelivery)
        .where(*where)
        .values(
            state=state,
            finished_at=now,
            lease_until=None,
            next_attempt_at=None,
            last_status=status,
            last_error=error,
        )
    )
    return bool(result.rowcount)


def _count_failure(session: Session, webhook_id: int, max_failures: int, now: datetime) -> bool:
    """One more failed delivery in a row for the webhook; True when that disabled it."""
    failures = session.scalar(
        update(Webhook)
        .where(Webhook.id == webhook_id)
        .values(consecutive_failures=Webhook.consecutive_failures + 1)
        .returning(Webhook.consecutive_failures)
    )
    if failures is None or failures < max_failures:
        return False
    disabled = session.execute(
        update(Webhook)
        .where(Webhook.id == webhook_id, Webhook.enabled.is_(True))
        .values(
            enabled=False,
            disabled_at=now,
            disabled_reason=f"{failures} deliveries in a row failed (WEBHOOK_MAX_FAILURES is {max_failures})",
        )
    )
    return bool(disabled.rowcount)


def due(session: Session, *, now: datetime, limit: int = 500) -> list[uuid.UUID]:
    """Deliveries to send again: pending past their time by SWEEP_GRACE, or whose attempt's lease ran out."""
    rows = session.scalars(
        select(WebhookDelivery.id)
        .where(
            or_(
                and_(
                    WebhookDelivery.state == "pending", WebhookDelivery.next_attempt_at <= now - SWEEP_GRACE
                ),
                and_(WebhookDelivery.state == "sending", WebhookDelivery.lease_until < now),
            )
        )
        .order_by(WebhookDelivery.next_attempt_at)
        .limit(limit)
    )
    return list(rows)


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def log_of(
    session: Session, webhook_id: int, *, limit: int, before: tuple[datetime, uuid.UUID] | None = None
) -> list[dict[str, Any]]:
    """The webhook's deliveries, newest first, each with its attempts (the delivery log), after a
    (created_at, id) cursor."""
    query = select(WebhookDelivery).where(WebhookDelivery.webhook_id == webhook_id)
    if before is not None:
        created_at, last_id = before
        query = query.where(
            or_(
                WebhookDelivery.created_at < created_at,
                and_(WebhookDelivery.created_at == created_at, WebhookDelivery.id < last_id),
            )
        )
    deliveries: Sequence[WebhookDelivery] = session.scalars(
        query.order_by(WebhookDelivery.created_at.desc(), WebhookDelivery.id.desc()).limit(limit)
    ).all()
    attempts: dict[uuid.UUID, list[dict[str, Any]]] = {d.id: [] for d in deliveries}
    if deliveries:
        for row in session.scalars(
            select(WebhookAttempt)
            .where(WebhookAttempt.delivery_id.in_(list(attempts)))
            .order_by(WebhookAttempt.delivery_id, WebhookAttempt.number)
        ):
            attempts[row.delivery_id].append(
                {
                    "number": row.number,
                    "at": row.started_at.isoformat(),
                    "duration_ms": row.duration_ms,
                    "address": row.address,
                    "status_code": row.status_code,
                    "error": row.error,
                }
            )
    return [
        {
            "id": str(d.id),
            "type": d.event_type,
            "state": d.state,
            "created_at": d.created_at.isoformat(),
            "finished_at": _iso(d.finished_at),
            "next_attempt_at": _iso(d.next_attempt_at),
            "last_status": d.last_status,
            "last_error": d.last_error,
            "attempts": attempts[d.id],
        }
        for d in deliveries
    ]
