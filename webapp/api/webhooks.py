"""Webhooks: admins make them (the secret is shown once), test them and read their delivery log."""

from __future__ import annotations

import base64
import binascii
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime

from flask import Blueprint, Response, current_app, jsonify, url_for

from webapp.api.plumbing.errors import ApiError, not_found
from webapp.api.plumbing.idempotency import idempotent
from webapp.api.plumbing.spec import document, parse_body, parse_query
from webapp.api.plumbing.writes import no_content, parse_patch
from webapp.api.schemas.webhooks import (
    DeliveriesQuery,
    DeliveryAccepted,
    DeliveryList,
    Webhook,
    WebhookCreate,
    WebhookCreated,
    WebhookList,
    WebhookUpdate,
)
from webapp.core.timeutil import utcnow
from webapp.infra.db import get_session
from webapp.models import Webhook as WebhookRow
from webapp.security.admission import current_principal, require_role
from webapp.webhooks import deliveries, records
from webapp.webhooks.records import WebhookError

bp = Blueprint("webhooks", __name__, url_prefix="/webhooks")
WRITE_ERRORS = (400, 401, 403, 404, 409, 429)


@contextmanager
def webhook_errors() -> Iterator[None]:
    """A refused webhook change as its JSON error, the transaction rolled back."""
    try:
        yield
    except WebhookError as exc:
        get_session().rollback()
        details = {**({"field": exc.field} if exc.field else {}), **exc.details}
        raise ApiError(exc.status, str(exc), details=details) from exc


def _own(webhook_id: int) -> WebhookRow:
    webhook = records.get_webhook(get_session(), current_principal().org_id, webhook_id)
    if webhook is None:
        raise not_found("webhook")
    return webhook


def _encode_cursor(item: dict[str, str]) -> str:
    return base64.urlsafe_b64encode(f"{item['created_at']}|{item['id']}".encode()).decode().rstrip("=")


def _decode_cursor(cursor: str) -> tuple[datetime, uuid.UUID]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        stamp, _, delivery_id = raw.partition("|")
        return datetime.fromisoformat(stamp), uuid.UUID(delivery_id)
    except (ValueError, binascii.Error, UnicodeDecodeError) as exc:
        raise ApiError(400, "cursor is not valid; use next_cursor from the previous page") from exc


@bp.get("")
@document("The organization's webhooks (never their secrets)", tag="webhooks", responses={200: WebhookList})
@require_role("admin")
def list_() -> Response:
    """The organization's webhooks, without secrets."""
    items = records.list_webhooks(get_session(), current_principal().org_id)
    return jsonify({"items": [records.as_dict(webhook) for webhook in items]})


@bp.post("")
@document(
    "Create a webhook; the answer holds its signing secret, shown this once",
    tag="webhooks",
    body=WebhookCreate,
    responses={201: WebhookCreated},
    headers={201: ("Location",)},
    errors=WRITE_ERRORS,
)
@require_role("admin")
@idempotent
def create() -> tuple[Response, int, dict[str, str]]:
    """Create a webhook; the answer holds its secret this once."""
    body = parse_body(WebhookCreate)
    principal = current_principal()
    with webhook_errors():
        webhook = records.create_webhook(
            get_session(),
            principal.org_id,
            url=body.url,
            description=body.description,
            created_by=principal.user_id,
            allow_private=current_app.config["WEBHOOK_ALLOW_PRIVATE"],
            now=utcnow(),
        )
    answer = {**records.as_dict(webhook), "secret": webhook.secret}
    get_session().commit()
    return jsonify(answer), 201, {"Location": url_for("api.webhooks.get", webhook_id=webhook.id)}


@bp.get("/<int:webhook_id>")
@document("One webhook (without its secret)", tag="webhooks", responses={200: Webhook})
@require_role("admin")
def get(webhook_id: int) -> Response:
    """One webhook, without its secret."""
    return jsonify(records.as_dict(_own(webhook_id)))


@bp.patch("/<int:webhook_id>")
@document(
    "Change a webhook's URL or description, or enable a disabled one again",
    tag="webhooks",
    body=WebhookUpdate,
    responses={200: Webhook},
    errors=WRITE_ERRORS,
)
@require_role("admin")
def patch(webhook_id: int) -> Response:
    """Change a webhook's URL, description or enabled flag."""
    fields = parse_patch(WebhookUpdate)
    webhook = _own(webhook_id)
    with webhook_errors():
        allow_private = current_app.config["WEBHOOK_ALLOW_PRIVATE"]
        records.update_webhook(get_session(), webhook, fields, allow_private=allow_private, now=utcnow())
    get_session().commit()
    return jsonify(records.as_dict(webhook))


@bp.delete("/<int:webhook_id>")
@document(
    "Delete a webhook and its delivery log; alert rules stop delivering to it, and report schedules "
    "that delivered to it are disabled with no webhook until they are given another",
    tag="webhooks",
    responses={204: None},
    errors=(401, 403, 404, 429),
)
@require_role("admin")
def delete(webhook_id: int) -> Response:
    """Delete a webhook, whoever uses it (see records.delete_webhook)."""
    webhook = _own(webhook_id)
    with webhook_errors():
        records.delete_webhook(get_session(), webhook)
    get_session().commit()
    return no_content()


@bp.post("/<int:webhook_id>/test")
@document(
    "Send a webhook.test delivery (from a worker, signed and retried as any other)",
    tag="webhooks",
    responses={202: DeliveryAccepted},
    errors=(401, 403, 404, 409, 429),
)
@require_role("admin")
@idempotent
def test(webhook_id: int) -> tuple[Response, int, dict[str, str]]:
    """Make a webhook.test delivery and hand it to the workers (202)."""
    webhook, now = _own(webhook_id), utcnow()
    if not webhook.enabled:
        raise _disabled()
    if deliveries.tests_in_flight(get_session(), webhook) >= deliveries.TESTS_IN_FLIGHT:
        raise ApiError(
            429,
            f"{deliveries.TESTS_IN_FLIGHT} test deliveries of this webhook are waiting for or in their"
            " first attempt (see its deliveries); send another in a few seconds",
            code="too_many_tests",
            details={"limit": deliveries.TESTS_IN_FLIGHT, "retry_after": 5},
            headers={"Retry-After": "5"},
        )
    data = {"webhook_id": webhook.id, "message": "a test delivery of this webhook"}
    delivery_id = deliveries.create(get_session(), webhook, "webhook.test", data, now=now)
    if delivery_id is None:  # disabled since it was read
        raise _disabled()
    get_session().commit()
    deliveries.enqueue(current_app.extensions["celery"], [delivery_id])
    # Where to follow it: the webhook's delivery log.
    log_url = url_for("api.webhooks.list_deliveries", webhook_id=webhook.id)
    return jsonify({"delivery_id": str(delivery_id)}), 202, {"Location": log_url, "Retry-After": "1"}


def _disabled() -> ApiError:
    return ApiError(409, "the webhook is disabled; enable it with PATCH first", code="webhook_disabled")


@bp.get("/<int:webhook_id>/deliveries")
@document(
    "The webhook's delivery log, newest first: each delivery's state and every attempt",
    tag="webhooks",
    query=DeliveriesQuery,
    responses={200: DeliveryList},
)
@require_role("admin")
def list_deliveries(webhook_id: int) -> Response:
    """A page of the webhook's delivery log."""
    query = parse_query(DeliveriesQuery)
    before = _decode_cursor(query.cursor) if query.cursor else None
    webhook = _own(webhook_id)
    items = deliveries.log_of(get_session(), webhook.id, limit=query.limit, before=before)
    next_cursor = _encode_cursor(items[-1]) if len(items) == query.limit else None
    return jsonify({"items": items, "next_cursor": next_cursor})
