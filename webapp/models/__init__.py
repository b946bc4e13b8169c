"""The platform's tables, one module per area."""

from webapp.models.alerts import AlertEvent, AlertRule
from webapp.models.analytics import AnalyticsMetric, AnalyticsSnapshot
from webapp.models.business_rollups import BusinessMetric, BusinessRollup, BusinessValue
from webapp.models.clocks import Schedule, ScheduleSpan, SlaBreach, SlaClock, SlaPendingTicket, SlaPolicy
from webapp.models.idempotency import IdempotencyKey
from webapp.models.jobs import Export, Job
from webapp.models.organizations import Organization, User
from webapp.models.reports import ReportRun, ReportSchedule
from webapp.models.tickets import Ticket, TicketEvent, TicketRating, TicketReply, TicketStatusChange
from webapp.models.tokens import IssuedToken, RevokedToken
from webapp.models.webhooks import Webhook, WebhookAttempt, WebhookDelivery

__all__ = [
    "AlertEvent",
    "AlertRule",
    "AnalyticsMetric",
    "AnalyticsSnapshot",
    "BusinessMetric",
    "BusinessRollup",
    "BusinessValue",
    "Export",
    "IdempotencyKey",
    "IssuedToken",
    "Job",
    "Organization",
    "ReportRun",
    "ReportSchedule",
    "RevokedToken",
    "Schedule",
    "ScheduleSpan",
    "SlaBreach",
    "SlaClock",
    "SlaPendingTicket",
    "SlaPolicy",
    "Ticket",
    "TicketEvent",
    "TicketRating",
    "TicketReply",
    "TicketStatusChange",
    "User",
    "Webhook",
    "WebhookAttempt",
    "WebhookDelivery",
]
