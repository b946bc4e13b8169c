"""Every word list of the platform, defined once: schemas, CHECKs, allowlists and routes derive from it.

Metric names are the one exception: each metric is written once, with its SQL, in analytics/metrics.py.
"""

from __future__ import annotations

from dataclasses import dataclass

# --- tickets ----------------------------------------------------------------------------------

STATUSES = ("open", "pending", "on_hold", "resolved", "closed")
# The statuses of a ticket that is done (solved): entering one is a resolution, leaving one a reopen.
RESOLVED_STATUSES = ("resolved", "closed")
UNSOLVED_STATUSES = tuple(s for s in STATUSES if s not in RESOLVED_STATUSES)
REPLY_AUTHORS = ("agent", "customer")
# Satisfaction ratings run 1..5; these count as good.
RATINGS = (1, 2, 3, 4, 5)
GOOD_RATINGS = (4, 5)
PRIORITIES = ("low", "normal", "high", "urgent")
CHANNELS = ("email", "chat", "phone", "web", "social", "api")
EVENT_TYPES = (
    "created",
    "first_response",
    "resolved",
    "reopened",
    "status_changed",
    "priority_changed",
    "assigned",
    "channel_changed",
    "category_changed",
    "sla_breached",
    *("backlog", "solved", "next_reply", "rated"),
)
# Events derived from a ticket's status history, replies and rating (tickets.history), written again
# whenever one of those changes: +1/-1 backlog steps, each solve, each next reply, the standing rating.
DERIVED_EVENT_TYPES = ("backlog", "solved", "next_reply", "rated")
# What tickets are filtered, grouped and distributed by; each is a column of tickets and ticket_events.
DIMENSIONS = ("status", "priority", "channel", "category", "assigned_to")
# The dimensions whose values are a fixed list (category and assigned_to are free text).
DIMENSION_VALUES: dict[str, tuple[str, ...]] = {
    "status": STATUSES,
    "priority": PRIORITIES,
    "channel": CHANNELS,
}

# --- analytics --------------------------------------------------------------------------------

GRANULARITIES = ("hourly", "daily", "weekly", "monthly", "quarterly", "yearly")
SNAPSHOT_TYPES = ("daily", "weekly", "monthly")
# Dashboard period name -> the local days it spans.
DASHBOARD_PERIODS = {"7d": 7, "30d": 30, "90d": 90}
# What a duration is counted in: all elapsed time, or a schedule's open hours.
CLOCKS = ("calendar", "business")

# --- exports ----------------------------------------------------------------------------------

EXPORT_FORMATS = ("csv", "json", "ndjson", "xlsx")
EXPORT_DATASETS = ("tickets", "time-series", "aggregations")

# --- jobs -------------------------------------------------------------------------------------

JOB_STATES = ("queued", "running", "succeeded", "failed", "cancelled")
ACTIVE_STATES = ("queued", "running")
FINAL_STATES = ("succeeded", "failed", "cancelled")
# The queues workers consume (the Procfile's worker all but `background`; its `background` worker
# `background`, `periodic` and `deliveries`). Webhook deliveries wait on a receiver for up to its
# timeout, so they have a queue of their own that a separate worker may take. `overflow` holds the
# jobs an organization submits while it has others active (fair share: workers take from each queue
# in turn). `background` holds beat's long upkeep (rollup builds, sums and reconciles that run for
# tens of seconds, cache warming): on the jobs' worker two of them at once held both of its slots,
# and every organization's jobs waited. `periodic` holds beat's short passes (SLA
# breaches, alerts, reports, due snapshots, sweeps), which both workers take: in `default` they
# waited behind queued jobs until they expired (reports missed their cron times for minutes under a
# flood of snapshot jobs).
OVERFLOW_QUEUE = "overflow"
BACKGROUND_QUEUE = "background"
PERIODIC_QUEUE = "periodic"
QUEUES = ("default", "exports", "refresh", "deliveries", OVERFLOW_QUEUE, BACKGROUND_QUEUE, PERIODIC_QUEUE)


@dataclass(frozen=True)
class JobRoute:
    """The Celery task a job kind runs as, and the queue it waits in."""

    name: str
    queue: str


JOB_ROUTES: dict[str, JobRoute] = {
    "aggregation": JobRoute("analytics.aggregate", "default"),
    "snapshot": JobRoute("snapshots.compute", "default"),
    "export": JobRoute("exports.run", "exports"),
    "cache_refresh": JobRoute("cache.refresh", "refresh"),
    "import": JobRoute("tickets.import", "default"),
}
JOB_KINDS = tuple(JOB_ROUTES)
# Tasks that are not jobs (beat's periodic work), by name pattern, and the queue they run on.
BACKGROUND_QUEUES = {
    "cache.*": BACKGROUND_QUEUE,
    "rollups.*": BACKGROUND_QUEUE,
    "deliveries.*": "deliveries",
    **dict.fromkeys(
        ("ops.*", "sla.*", "alerts.*", "reports.*", "maintenance.*", "snapshots.schedule_due"), PERIODIC_QUEUE
    ),
}


def task_routes() -> dict[str, dict[str, str]]:
    """Celery's task_routes: every job kind's task on its queue, then the background tasks by pattern."""
    routes = {route.name: {"queue": route.queue} for route in JOB_ROUTES.values()}
    routes.update({pattern: {"queue": queue} for pattern, queue in BACKGROUND_QUEUES.items()})
    return routes


# --- alerts, webhooks and scheduled reports ---------------------------------------------------

# The granularities an alert rule is evaluated at (every closed bucket of one of them).
ALERT_GRANULARITIES = ("hourly", "daily", "weekly")
ALERT_STATES = ("ok", "firing")
THRESHOLDS = ("above", "below")
ALERT_CONDITIONS = (*THRESHOLDS, "change_pct", "anomaly")
CHANGE_DIRECTIONS = ("up", "down", "either")
ALERT_CHANNELS = ("webhook", "websocket")
# The `type` of a webhook delivery's body; an alert's transition into each state has its own.
WEBHOOK_EVENTS = ("alert.firing", "alert.resolved", "report.ready", "webhook.test")
ALERT_EVENT_TYPES = {"firing": "alert.firing", "ok": "alert.resolved"}
DELIVERY_STATES = ("pending", "sending", "succeeded", "failed")
# A report's relative range, resolved in its schedule's zone when it runs.
REPORT_RANGES = ("last_7_days", "previous_week", "previous_month", "month_to_date", "previous_day")
REPORT_TRIGGERS = ("schedule", "manual")
REPORT_RUN_STATES = ("running", "delivered", "skipped", "failed")
# A run as the API answers it: "delivered" once the receiver took report.ready (a 2xx), "delivering"
# while its delivery is pending or retried, "failed" once every retry was spent.
REPORT_RUN_ANSWER_STATES = ("running", "delivering", "delivered", "skipped", "failed")

# --- users ------------------------------------------------------------------------------------

ROLES = ("viewer", "agent", "admin")
# The kinds of token a login issues (the JWT's `type` claim).
TOKEN_TYPES = ("access", "refresh")
