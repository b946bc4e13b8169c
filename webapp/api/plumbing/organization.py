"""The caller's organization, as the views that read its settings (zone, SLA targets, schedules) load it."""

from __future__ import annotations

from webapp.analytics.clock import CALENDAR, Clock, resolve
from webapp.api.plumbing.errors import ApiError
from webapp.api.schemas.fields import ClockFields
from webapp.infra.db import get_session
from webapp.models import Organization
from webapp.security.admission import current_principal


def current_organization() -> Organization:
    """The organization of the request's token; 401 once it is deleted (its tokens name it still)."""
    org = get_session().get(Organization, current_principal().org_id)
    if org is None:
        raise ApiError(401, "the token's organization no longer exists")
    return org


def requested_clock(org_id: int, query: object) -> Clock:
    """The clock an export's query asks for: the calendar for a dataset without a clock (tickets),
    else its clock and schedule_id resolved among the organization's schedules (analytics.clock.resolve:
    400 for business hours without any schedule, 404 for another organization's)."""
    if not isinstance(query, ClockFields):
        return CALENDAR
    return resolve(get_session(), org_id, query.clock, query.schedule_id)
