"""What a report run answers once its delivery failed: the attempts the delivery log lists, or that
none was made (a review found "after 0 attempts" for a webhook disabled before the first)."""

from __future__ import annotations

from webapp.models import ReportRun, WebhookDelivery
from webapp.reports.schedules import run_answer


def _delivery(attempts: int) -> WebhookDelivery:
    return WebhookDelivery(
        state="failed", attempts=attempts, last_status=None, last_error="the webhook is disabled"
    )


def test_a_failed_delivery_names_its_attempts_or_that_none_was_made():
    run = ReportRun(state="delivered", error=None)
    made = run_answer(run, _delivery(2))
    assert made["state"] == "failed"
    assert made["error"] == "the webhook did not take report.ready after 2 attempts (the webhook is disabled)"
    none = run_answer(run, _delivery(0))
    assert none["error"] == "report.ready was not delivered: the webhook is disabled, before any attempt"
