"""Every word list is one list: what the vocabulary and the metric registry define is exactly what the
OpenAPI document offers, what the live database's CHECK constraints allow, what rollups build, what
filters accept and where Celery sends each job kind, and nothing else appears in any of them."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import text

from devstack.procfile import command_args, read_procfile
from tests.conftest import ROOT, process_env
from webapp.analytics import rollups
from webapp.analytics.metrics import METRICS, ROLLED_METRICS
from webapp.core import vocabulary as v
from webapp.core.filters import FilterError, parse_filter_object
from webapp.exports.spec import CONTENT_TYPES, DATASETS
from webapp.models import Organization
from webapp.tickets.writes import create_ticket

# Every CHECK constraint that lists words, by (table, column), and the list it must hold.
CHECKED = {
    ("tickets", "status"): v.STATUSES,
    ("tickets", "priority"): v.PRIORITIES,
    ("tickets", "channel"): v.CHANNELS,
    ("ticket_events", "event_type"): v.EVENT_TYPES,
    ("ticket_status_changes", "status"): v.STATUSES,
    ("ticket_replies", "author"): v.REPLY_AUTHORS,
    ("users", "role"): v.ROLES,
    ("jobs", "kind"): v.JOB_KINDS,
    ("jobs", "state"): v.JOB_STATES,
    ("exports", "format"): v.EXPORT_FORMATS,
    ("alert_rules", "granularity"): v.ALERT_GRANULARITIES,
    ("alert_rules", "state"): v.ALERT_STATES,
    ("alert_events", "state"): v.ALERT_STATES,
    ("webhook_deliveries", "event_type"): v.WEBHOOK_EVENTS,
    ("webhook_deliveries", "state"): v.DELIVERY_STATES,
    ("report_runs", "trigger"): v.REPORT_TRIGGERS,
    ("report_runs", "state"): v.REPORT_RUN_STATES,
    ("issued_tokens", "type"): v.TOKEN_TYPES,
}


@pytest.fixture(scope="module")
def spec(base_app: Any) -> dict[str, Any]:
    return base_app.test_client().get("/api/v1/openapi.json").get_json()


def _schema(spec: dict[str, Any], name: str) -> dict[str, Any]:
    return spec["components"]["schemas"][name]


def _resolved(spec: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        schema = _schema(spec, schema["$ref"].rsplit("/", 1)[1])
    return schema


def _enum(spec: dict[str, Any], schema: dict[str, Any]) -> list[str]:
    """The words a property allows: its enum, that of its items, or of its non-null alternative."""
    schema = _resolved(spec, schema)
    if "items" in schema:
        return _enum(spec, schema["items"])
    if "anyOf" in schema:
        (words,) = [_enum(spec, s) for s in schema["anyOf"] if s.get("type") != "null"]
        return words
    return list(schema["enum"])


def _prop(spec: dict[str, Any], model: str, name: str) -> list[str]:
    return _enum(spec, _schema(spec, model)["properties"][name])


def _operation(spec: dict[str, Any], path: str, method: str = "get") -> dict[str, Any]:
    return spec["paths"][f"/api/v1{path}"][method]


def _parameter(spec: dict[str, Any], path: str, name: str) -> dict[str, Any]:
    (found,) = [p for p in _operation(spec, path)["parameters"] if p["name"] == name]
    return found


def _checks(db_engine: Any) -> dict[tuple[str, str], list[str]]:
    """The live database's CHECK constraints of the form `column IN (words)`, by table and column."""
    sql = text(
        "SELECT conrelid::regclass::text AS tbl, pg_get_constraintdef(oid) AS definition"
        " FROM pg_constraint WHERE contype = 'c' AND connamespace = 'public'::regnamespace"
    )
    found: dict[tuple[str, str], list[str]] = {}
    with db_engine.connect() as conn:
        for row in conn.execute(sql):
            listed = re.search(r"(\w+)\)?::text = ANY \(+ARRAY\[([^\]]*)\]", row.definition)
            if listed:
                found[(row.tbl, listed[1])] = re.findall(r"'([^']*)'", listed[2])
    return found


def test_metrics_are_those_of_the_registry_everywhere(spec):
    metrics = list(METRICS)
    assert _parameter(spec, "/analytics/time-series/{metric}", "metric")["schema"]["enum"] == metrics
    assert _prop(spec, "AggregationRequest", "metrics") == metrics
    assert _prop(spec, "AggregationFields", "metrics") == metrics
    assert _prop(spec, "TimeSeriesExportQuery", "metric") == metrics
    assert _prop(spec, "TimeSeries", "metric") == metrics
    assert _prop(spec, "Aggregation", "metrics") == metrics


def test_rollups_build_exactly_the_registry_metrics(app, db_session, make_org):
    org_id = make_org("Rolled")["id"]
    org = db_session.get(Organization, org_id)
    created = datetime(2026, 3, 2, 9, tzinfo=UTC)
    later = [created + timedelta(hours=h) for h in range(1, 8)]
    fields = {
        "subject": "every metric",
        "sentiment_score": 0.5,
        "created_at": created,
        "first_response_at": later[0],
        "status_history": [
            {"status": "open", "at": created},
            {"status": "resolved", "at": later[3]},
            {"status": "open", "at": later[4]},
            {"status": "resolved", "at": later[6]},
        ],
        "replies": [
            {"author": "agent", "at": later[0]},
            {"author": "customer", "at": later[1]},
            {"author": "agent", "at": later[2]},
        ],
        "satisfaction": {"rating": 5, "at": later[5]},
    }
    create_ticket(db_session, org, fields, now=created + timedelta(days=1))
    rollups.build(db_session, org_id=org_id, start=created, end=created + timedelta(days=1))
    built = db_session.execute(
        text("SELECT DISTINCT metric FROM analytics_metrics WHERE org_id = :o"), {"o": org_id}
    ).scalars()
    # Every metric but a difference of others (net_flow), which reads its parts' rows.
    assert set(built) == set(ROLLED_METRICS) == {m for m in METRICS if m != "net_flow"}


def test_dimensions_are_the_filters_the_groups_and_the_distributions(spec, db_engine):
    dims = list(v.DIMENSIONS)
    series_params = [p["name"] for p in _operation(spec, "/analytics/time-series/{metric}")["parameters"]]
    assert [name for name in series_params if name in dims] == dims
    assert set(series_params) - set(dims) == {
        "metric",
        "start",
        "end",
        "tz",
        "exact",
        "granularity",
        "clock",
        "schedule_id",
    }
    assert _parameter(spec, "/analytics/time-series/{metric}", "clock")["schema"]["enum"] == list(v.CLOCKS)
    assert set(_schema(spec, "AggregationRequest")["properties"]["filters"]["properties"]) == set(dims)
    assert _prop(spec, "AggregationRequest", "group_by") == dims
    assert _parameter(spec, "/analytics/distribution/{field}", "field")["schema"]["enum"] == dims
    assert _prop(spec, "Distribution", "field") == dims
    # The filter parser takes each dimension and nothing else.
    one_each = {name: v.DIMENSION_VALUES.get(name, ("x",))[0] for name in dims}
    assert list(parse_filter_object(one_each)) == dims
    with pytest.raises(FilterError):
        parse_filter_object({"subject": "x"})
    # Each dimension is a column of the tables that are filtered and grouped on.
    sql = text("SELECT table_name, column_name FROM information_schema.columns WHERE table_schema = 'public'")
    with db_engine.connect() as conn:
        columns = {(row.table_name, row.column_name) for row in conn.execute(sql)}
    for table in ("tickets", "ticket_events", "analytics_metrics"):
        assert {(table, d) for d in dims} <= columns, table


def test_enumerated_dimensions_accept_their_words_only():
    assert set(v.DIMENSION_VALUES) < set(v.DIMENSIONS)
    for name, words in v.DIMENSION_VALUES.items():
        assert parse_filter_object({name: list(words)}) == {name: sorted(words)}
        with pytest.raises(FilterError):
            parse_filter_object({name: ["none of them"]})


def test_check_constraints_hold_the_vocabulary_and_nothing_else(db_engine):
    checks = _checks(db_engine)
    assert set(checks) == set(CHECKED)
    for key, words in CHECKED.items():
        assert sorted(checks[key]) == sorted(words), key


def test_ticket_and_user_words_in_the_document(spec):
    for model in ("Ticket", "TicketCreate", "TicketUpdate"):
        assert _prop(spec, model, "status") == list(v.STATUSES)
        assert _prop(spec, model, "priority") == list(v.PRIORITIES)
        assert _prop(spec, model, "channel") == list(v.CHANNELS)
    assert _prop(spec, "UserCreate", "role") == list(v.ROLES)


def test_analytics_words_in_the_document(spec):
    granularities = list(v.GRANULARITIES)
    assert _prop(spec, "TimeSeries", "granularity") == granularities
    series_granularity = _parameter(spec, "/analytics/time-series/{metric}", "granularity")
    assert series_granularity["schema"]["enum"] == granularities
    assert _prop(spec, "AggregationRequest", "granularity") == granularities
    assert _prop(spec, "TimeSeriesExportQuery", "granularity") == granularities
    snapshot_types = list(v.SNAPSHOT_TYPES)
    assert set(snapshot_types) <= set(granularities)
    assert _parameter(spec, "/analytics/snapshots", "type")["schema"]["enum"] == snapshot_types
    assert _prop(spec, "SnapshotRequest", "type") == snapshot_types
    period = _parameter(spec, "/analytics/dashboard", "period")
    assert _enum(spec, period["schema"]) == list(v.DASHBOARD_PERIODS)


def test_export_formats_and_datasets(spec):
    request = _schema(spec, "ExportRequest")
    assert set(request["discriminator"]["mapping"]) == set(v.EXPORT_DATASETS)
    for ref in request["oneOf"]:
        variant = _resolved(spec, ref)
        assert variant["properties"]["format"]["enum"] == list(v.EXPORT_FORMATS)
    assert list(DATASETS) == list(v.EXPORT_DATASETS)
    assert list(CONTENT_TYPES) == list(v.EXPORT_FORMATS)
    assert _prop(spec, "ExportInfo", "format") == list(v.EXPORT_FORMATS)


def _worker_tasks(services: Any) -> set[str]:
    """The tasks a worker process registers: its own app, loaded as `celery -A workers` loads it."""
    listing = "import json, workers; print(json.dumps(sorted(workers.celery_app.tasks)))"
    output = subprocess.run(
        [sys.executable, "-c", listing], cwd=ROOT, env=process_env(services), capture_output=True, check=True
    )
    return set(json.loads(output.stdout.decode().splitlines()[-1]))


def test_alert_webhook_and_report_words_in_the_document(spec):
    assert _prop(spec, "AlertCreate", "granularity") == list(v.ALERT_GRANULARITIES)
    assert set(v.ALERT_GRANULARITIES) <= set(v.GRANULARITIES)
    assert _prop(spec, "Alert", "state") == list(v.ALERT_STATES)
    assert _prop(spec, "AlertCreate", "metric") == list(METRICS)
    assert _prop(spec, "ChangeCondition", "direction") == list(v.CHANGE_DIRECTIONS)
    conditions = _schema(spec, "AlertCreate")["properties"]["condition"]["discriminator"]["mapping"]
    assert set(conditions) == set(v.ALERT_CONDITIONS)
    channels = _schema(spec, "AlertCreate")["properties"]["channels"]["items"]["discriminator"]["mapping"]
    assert set(channels) == set(v.ALERT_CHANNELS)
    assert _prop(spec, "Delivery", "type") == list(v.WEBHOOK_EVENTS)
    assert _prop(spec, "Delivery", "state") == list(v.DELIVERY_STATES)
    assert set(v.ALERT_EVENT_TYPES.values()) <= set(v.WEBHOOK_EVENTS)
    assert _prop(spec, "TicketsReportQuery", "range") == list(v.REPORT_RANGES)
    assert _prop(spec, "ReportRunInfo", "state") == list(v.REPORT_RUN_ANSWER_STATES)
    assert set(v.REPORT_RUN_STATES) <= set(v.REPORT_RUN_ANSWER_STATES)  # each stored state is answered


def test_job_kinds_states_and_routes(spec, base_app, services):
    assert _prop(spec, "Job", "kind") == list(v.JOB_KINDS)
    assert _prop(spec, "Job", "state") == list(v.JOB_STATES)
    assert set(v.ACTIVE_STATES) | set(v.FINAL_STATES) == set(v.JOB_STATES)
    assert not set(v.ACTIVE_STATES) & set(v.FINAL_STATES)
    celery = base_app.extensions["celery"]
    assert {queue.name for queue in celery.conf.task_queues} == set(v.QUEUES)
    registered = _worker_tasks(services)
    for kind, route in v.JOB_ROUTES.items():
        assert route.name in registered, kind
        assert celery.amqp.router.route({}, route.name)["queue"].name == route.queue, kind


def test_beats_long_upkeep_runs_on_a_worker_of_its_own(base_app):
    """Two long rollup tasks on the jobs' worker held both of its slots (16 s with 210 jobs queued and
    none running, seen under an import flood): they wait in `background`, which the Procfile's
    `background` worker takes and its jobs' worker does not."""
    celery = base_app.extensions["celery"]
    for name in (
        "rollups.refresh_pending",
        "rollups.sum_metric_days",
        "rollups.reconcile_recent",
        "cache.warm",
    ):
        assert celery.amqp.router.route({}, name)["queue"].name == v.BACKGROUND_QUEUE, name
    # A job's task keeps its own queue though its name matches a background pattern.
    assert celery.amqp.router.route({}, v.JOB_ROUTES["cache_refresh"].name)["queue"].name == "refresh"
    procfile = read_procfile(ROOT / "Procfile")

    def queues(name: str) -> set[str]:
        args = command_args(procfile[name])
        return set(args[args.index("--queues") + 1].split(","))

    assert queues("background") == {v.BACKGROUND_QUEUE, v.PERIODIC_QUEUE, "deliveries"}
    assert queues("worker") | queues("background") == set(v.QUEUES)
    assert v.BACKGROUND_QUEUE not in queues("worker")
    # Beat's short passes wait in a queue of their own, which both workers take: never behind jobs.
    for name in ("reports.tick", "sla.record_breaches", "alerts.evaluate_due", "ops.beat_heartbeat"):
        assert celery.amqp.router.route({}, name)["queue"].name == v.PERIODIC_QUEUE, name
    assert celery.amqp.router.route({}, v.JOB_ROUTES["snapshot"].name)["queue"].name == "default"
    assert v.PERIODIC_QUEUE in queues("worker")
