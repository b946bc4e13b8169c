"""The platform's tables, one module per area."""

from webapp.models.analytics import AnalyticsMetric, AnalyticsSnapshot
from webapp.models.clocks import Schedule, ScheduleSpan, SlaBreach, SlaClock, SlaPendingTicket, SlaPolicy
from webapp.models.jobs import Export, Job
from webapp.models.organizations import Organization, User
from webapp.models.tickets import Ticket, TicketEvent
from webapp.models.tokens import RevokedToken

__all__ = [
    "AnalyticsMetric",
    "AnalyticsSnapshot",
    "Export",
    "Job",
    "Organization",
    "RevokedToken",
    "Schedule",
    "ScheduleSpan",
    "SlaBreach",
    "SlaClock",
    "SlaPendingTicket",
    "SlaPolicy",
    "Ticket",
    "TicketEvent",
    "User",
]
