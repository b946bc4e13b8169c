"""Analytics answers too large to compute are refused with a 400 naming the estimate and the limit,
before any query: nothing is computed, cached, counted as popular or queued. Exact reads over long
ranges are refused, and shorter ones spend more of the organization's budget.

Expected estimates are computed here from the contract's definition (groups x buckets x statistics),
with the vocabulary's value counts written out by hand."""

from __future__ import annotations

import time
from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

import pytest
import redis
from sqlalchemy import event

from webapp.models import Job

AGG = "/api/v1/analytics/aggregations"
ALL_METRICS = ["ticket_count", "response_time", "resolution_time", "sentiment_score"]
TWENTY = list(range(4, 100, 5))  # 4, 9, ..., 99: twenty percentiles
HOURS = 4166
CHANNELS, PRIORITIES = 6, 4  # email chat phone web social api; low normal high urgent


@pytest.fixture
def redis_client(services):
    return redis.Redis.from_url(services.redis_url)


def _keys(client) -> set[bytes]:
    """Every Redis key but what admission writes (request budgets, tokens' revocation marks)."""
    return {key for key in client.keys("*") if not key.startswith((b"an:rl:", b"an:revoked:"))}


def _too_costly(response) -> dict:
    assert response.status_code == 400, response.get_data(as_text=True)[:400]
    error = response.get_json()["error"]
    assert error["code"] == "too_costly", error
    return error


def _hourly_body(**extra):
    return {
        "metrics": ALL_METRICS,
        "group_by": ["channel", "priority"],
        "granularity": "hourly",
        "start": "2026-01-01T00:00:00Z",
        "end": "2026-06-23T14:00:00Z",  # 173 days and 14 hours: 4,166 hours
        "percentiles": TWENTY,
        **extra,
    }


def test_the_outside_clients_aggregation_is_refused_naming_estimate_and_limit(
    tenant, app, redis_client, db_session
):
    before = _keys(redis_client)
    for extra in ({}, {"async": True}):
        error = _too_costly(tenant.viewer.post(AGG, json=_hourly_body(**extra)))
        statistics = 1 + 3 * (4 + 20)  # ticket_count: count; the others count, avg, min, max, 20 pNN
        expected = CHANNELS * PRIORITIES * HOURS * statistics
        assert error["details"]["estimate"] == expected == 7_298_832
        assert error["details"]["limit"] == app.config["ANALYTICS_MAX_CELLS"]
        assert f"{expected:,}" in error["message"]
        assert "ANALYTICS_MAX_CELLS" in error["message"]
    assert _keys(redis_client) - before == set()  # nothing written (a key may go: a worker acks)
    assert db_session.query(Job).filter_by(org_id=tenant.org_id).count() == 0


def test_the_same_request_within_the_limit_is_answered(tenant, app, monkeypatch):
    body = _hourly_body(percentiles=[50], group_by=["channel"], metrics=["ticket_count", "response_time"])
    expected = CHANNELS * HOURS * (1 + 5)
    monkeypatch.setitem(app.config, "ANALYTICS_MAX_CELLS", expected)
    assert tenant.viewer.post(AGG, json=body).status_code == 200
    monkeypatch.setitem(app.config, "ANALYTICS_MAX_CELLS", expected - 1)
    assert _too_costly(tenant.viewer.post(AGG, json=body))["details"]["estimate"] == expected


def test_filters_narrow_the_estimated_groups(tenant, app, monkeypatch):
    monkeypatch.setitem(app.config, "ANALYTICS_MAX_CELLS", 500)
    body = {
        "metrics": ["ticket_count"],
        "group_by": ["channel", "status"],
        "granularity": "daily",
        "start": "2026-01-01",
        "end": "2026-01-31",
    }
    assert _too_costly(tenant.viewer.post(AGG, json=body))["details"]["estimate"] == 6 * 5 * 30
    narrowed = tenant.viewer.post(AGG, json=body | {"filters": {"channel": ["email", "chat"]}})
    assert narrowed.status_code == 200, narrowed.get_json()  # 2 x 5 x 30 = 300


def test_free_text_groups_are_checked_once_known_before_any_row_is_built(tenant, app, monkeypatch):
    for category in ("a", "b", "c", "d"):
        created = tenant.agent.post("/api/v1/tickets", json={"subject": "x", "category": category})
        assert created.status_code == 201
    # The default range: the 30 local days up to the end of today, which hold the four tickets.
    body = {"metrics": ["ticket_count", "response_time"], "group_by": ["category"], "granularity": "daily"}
    monkeypatch.setitem(app.config, "ANALYTICS_MAX_CELLS", 500)
    statistics = 1 + 4 + 3  # default percentiles 50, 95, 99
    # Before the query the categories are unknown (1 group: 240 cells); once known, 4 groups: 960.
    error = _too_costly(tenant.viewer.post(AGG, json=body))
    assert error["details"]["groups"] == 4
    assert error["details"]["estimate"] == 4 * 30 * statistics


def test_an_aggregation_past_the_row_limit_is_too_costly_naming_estimate_and_limit(tenant, monkeypatch):
    """Within the cell limit but past the rows one answer may hold: the same too_costly refusal, naming
    the row count and the limit (it was a bad_request naming neither)."""
    from webapp.analytics import aggregations

    for category in ("a", "b", "c"):
        assert tenant.agent.post("/api/v1/tickets", json={"category": category}).status_code == 201
    monkeypatch.setattr(aggregations, "MAX_ROWS", 50)
    runs = []
    real = aggregations.side_by_side.run
    monkeypatch.setattr(aggregations.side_by_side, "run", lambda *a, **k: runs.append(1) or real(*a, **k))
    body = {"metrics": ["ticket_count"], "group_by": ["category"], "granularity": "daily"}
    error = _too_costly(tenant.viewer.post(AGG, json=body))
    assert (error["details"]["estimate"], error["details"]["limit"]) == (3 * 30, 50)
    assert error["details"]["field"] == "group_by"
    # Refused again at a cache hit's cost (its limit is the rows', not the cells' setting).
    assert _too_costly(tenant.viewer.post(AGG, json=body))["details"]["estimate"] == 3 * 30
    assert len(runs) == 1


def test_rows_only_the_data_knows_are_checked_once_known(tenant, app, monkeypatch, redis_client):
    """Performance grouped by assignee, a distribution of assignees and the agents report grow with the
    organization's agents: past the limit, 400 naming the estimate; the answer is not cached, the
    refusal is (a few hundred bytes), so a client repeating it is refused without a read."""
    agents = [f"agent {n}" for n in range(12)]
    for agent in agents:
        for _ in range(2):
            created = tenant.agent.post(
                "/api/v1/tickets", json={"subject": "x", "assigned_to": agent, "status": "resolved"}
            )
            assert created.status_code == 201, created.get_json()
    before = _keys(redis_client)
    monkeypatch.setitem(app.config, "ANALYTICS_MAX_CELLS", 30)
    paths = (
        ("/api/v1/analytics/performance?group_by=assigned_to", 18),
        ("/api/v1/analytics/distribution/assigned_to", 3),
        ("/api/v1/analytics/agents?min_tickets=1", 8),
    )
    # Per row: SLA groups 3 targets x 6 numbers; a distribution's value, count and share; an agent's 8.
    for path, per_row in paths:
        error = _too_costly(tenant.viewer.get(path))
        assert (error["details"]["groups"], error["details"]["estimate"]) == (12, 12 * per_row), path
        assert error["details"]["limit"] == 30
    # The refusals cached (small), and the reads' time charged to the organization (an:rt:).
    stored = {key for key in _keys(redis_client) - before if not key.startswith(b"an:rt:")}
    assert stored
    assert all(key.startswith(b"an:c:") for key in stored), stored
    assert all(len(redis_client.get(key) or b"") < 1_500 for key in stored)
    # Asked again: the same refusal, and not one statement reads tickets or their events.
    statements: list[str] = []
    engine = app.extensions["db_engine"]

    def seen(conn, cursor, statement, *args):
        statements.append(statement)

    event.listen(engine, "before_cursor_execute", seen)
    try:
        for path, per_row in paths:
            assert _too_costly(tenant.viewer.get(path))["details"]["estimate"] == 12 * per_row
    finally:
        event.remove(engine, "before_cursor_execute", seen)
    assert not [s for s in statements if "ticket" in s or "analytics" in s], statements
    # Under the limit the same reads are answered.
    monkeypatch.setitem(app.config, "ANALYTICS_MAX_CELLS", 12 * 18)
    assert tenant.viewer.get("/api/v1/analytics/performance?group_by=assigned_to").status_code == 200
    assert tenant.viewer.get("/api/v1/analytics/distribution/assigned_to").status_code == 200
    assert tenant.viewer.get("/api/v1/analytics/agents?min_tickets=1").status_code == 200


def test_warming_refuses_a_popular_read_grown_past_the_limit_and_caches_nothing(
    tenant, app, monkeypatch, redis_client, db_session
):
    from webapp.analytics import warming

    def add(agents):
        for agent in agents:
            created = tenant.agent.post("/api/v1/tickets", json={"subject": "x", "assigned_to": agent})
            assert created.status_code == 201

    path = "/api/v1/analytics/distribution/assigned_to"
    add(["a1", "a2", "a3"])
    monkeypatch.setitem(app.config, "ANALYTICS_MAX_CELLS", 12)  # four values of three numbers
    assert tenant.viewer.get(path).status_code == 200  # counted as popular, cached
    add(["a4", "a5", "a6"])  # the organization grows past the limit
    warmed = warming.refresh_popular(db_session, redis_client, tenant.org_id, ttl=60, max_cells=12)
    assert (warmed.refreshed, warmed.dropped) == (0, 1)
    assert _too_costly(tenant.viewer.get(path))["details"]["groups"] == 6


def test_a_refusal_once_rows_are_known_stays_a_400_without_redis(tenant, app, monkeypatch, stoppable_redis):
    for agent in ("ana", "ben", "chen"):
        assert (
            tenant.agent.post("/api/v1/tickets", json={"subject": "x", "assigned_to": agent}).status_code
            == 201
        )
    monkeypatch.setitem(app.config, "ANALYTICS_MAX_CELLS", 5)
    stoppable_redis.stop()
    _too_costly(tenant.viewer.get("/api/v1/analytics/distribution/assigned_to"))


def test_free_text_groups_refuse_async_and_export_requests_at_submit(tenant, app, monkeypatch, db_session):
    """The values a free-text group_by can take are counted from the tickets before any job is
    queued: async: true and exports are refused with the same 400, and no job row is written."""
    for category in ("a", "b", "c", "d"):
        created = tenant.agent.post("/api/v1/tickets", json={"subject": "x", "category": category})
        assert created.status_code == 201
    query = {"metrics": ["ticket_count", "response_time"], "group_by": ["category"], "granularity": "daily"}
    monkeypatch.setitem(app.config, "ANALYTICS_MAX_CELLS", 500)
    statistics = 1 + 4 + 3
    error = _too_costly(tenant.viewer.post(AGG, json={**query, "async": True}))
    assert error["details"]["groups"] == 4
    assert error["details"]["estimate"] == 4 * 30 * statistics
    for mode in ("async", "sync"):
        export = tenant.viewer.post(
            f"/api/v1/analytics/export?mode={mode}",
            json={"format": "csv", "dataset": "aggregations", "query": query},
        )
        assert _too_costly(export)["details"]["groups"] == 4
    assert db_session.query(Job).filter_by(org_id=tenant.org_id).count() == 0
    # Within the limit the job is queued.
    monkeypatch.setitem(app.config, "ANALYTICS_MAX_CELLS", 4 * 30 * statistics)
    assert tenant.viewer.post(AGG, json={**query, "async": True}).status_code == 202


def test_series_and_exports_share_the_limit(tenant, app, monkeypatch, db_session, redis_client):
    monkeypatch.setitem(app.config, "ANALYTICS_MAX_CELLS", 1_000)
    before = _keys(redis_client)
    series = tenant.viewer.get(
        "/api/v1/analytics/time-series/ticket_count?granularity=hourly&start=2026-01-01&end=2026-01-12&tz=UTC"
    )
    assert _too_costly(series)["details"]["estimate"] == 11 * 24 * 4
    for mode in ("async", "sync"):
        export = tenant.viewer.post(
            f"/api/v1/analytics/export?mode={mode}",
            json={
                "format": "csv",
                "dataset": "time-series",
                "query": {
                    "metric": "ticket_count",
                    "granularity": "hourly",
                    "start": "2026-01-01",
                    "end": "2026-01-12",
                    "tz": "UTC",
                },
            },
        )
        assert _too_costly(export)["details"]["estimate"] == 11 * 24 * 4
        aggregation = tenant.viewer.post(
            f"/api/v1/analytics/export?mode={mode}",
            json={
                "format": "json",
                "dataset": "aggregations",
                "query": {
                    "metric": None,
                    "metrics": ["response_time"],
                    "granularity": "daily",
                    "percentiles": TWENTY,
                    "start": "2026-01-01",
                    "end": "2026-03-01",
                    "tz": "UTC",
                }
                | {},
            },
        )
        assert aggregation.status_code == 400
    assert _keys(redis_client) - before == set()  # nothing written (a key may go: a worker acks)
    assert db_session.query(Job).filter_by(org_id=tenant.org_id).count() == 0


def test_export_percentiles_are_capped(tenant):
    body = {
        "format": "csv",
        "dataset": "aggregations",
        "query": {"metrics": ["response_time"], "percentiles": list(range(1, 100))},
    }
    for mode in ("async", "sync"):
        response = tenant.viewer.post(f"/api/v1/analytics/export?mode={mode}", json=body)
        assert response.status_code == 400
        assert response.get_json()["error"]["details"]["field"] == "percentiles"


def test_the_dashboard_refuses_a_range_it_cannot_bucket_before_any_query(tenant, redis_client):
    before = _keys(redis_client)
    response = tenant.viewer.get("/api/v1/analytics/dashboard?start=1900-01-01&end=2199-01-01")
    assert response.status_code == 400, response.get_json()
    assert "bucket" in response.get_json()["error"]["message"]
    assert _keys(redis_client) - before == set()  # nothing written (a key may go: a worker acks)


@pytest.mark.parametrize(
    "call",
    [
        lambda api: api.get(
            "/api/v1/analytics/time-series/ticket_count?granularity=yearly&start=1900-01-01&end=2199-01-01&exact=true"
        ),
        lambda api: api.get(
            "/api/v1/analytics/distribution/status?start=1900-01-01&end=2199-01-01&exact=true"
        ),
        lambda api: api.get("/api/v1/analytics/performance?start=1900-01-01&end=2199-01-01&exact=true"),
        lambda api: api.get("/api/v1/analytics/agents?start=1900-01-01&end=2199-01-01&exact=true"),
        lambda api: api.get("/api/v1/analytics/time-in-status?start=1900-01-01&end=2199-01-01&exact=true"),
        lambda api: api.post(
            AGG,
            json={
                "metrics": ["response_time"],
                "start": "1900-01-01",
                "end": "2199-01-01",
                "exact": True,
                "async": True,
            },
        ),
        lambda api: api.post(
            "/api/v1/analytics/export",
            json={
                "format": "csv",
                "dataset": "aggregations",
                "query": {
                    "metrics": ["response_time"],
                    "start": "1900-01-01",
                    "end": "2199-01-01",
                    "exact": True,
                },
            },
        ),
    ],
)
def test_exact_over_centuries_is_refused_everywhere(tenant, app, call, db_session, redis_client):
    before = _keys(redis_client)
    error = _too_costly(call(tenant.viewer))
    assert error["details"]["field"] == "exact"
    assert error["details"]["limit"] == app.config["ANALYTICS_EXACT_MAX_DAYS"]
    assert error["details"]["estimate"] == (date(2199, 1, 1) - date(1900, 1, 1)).days  # in UTC, whole days
    assert "ANALYTICS_EXACT_MAX_DAYS" in error["message"]
    assert _keys(redis_client) - before == set()  # nothing written (a key may go: a worker acks)
    assert db_session.query(Job).filter_by(org_id=tenant.org_id).count() == 0


def test_an_exact_read_spends_one_more_request_per_30_days(tenant, app, monkeypatch):
    monkeypatch.setitem(app.config["RATE_LIMITS_PER_MINUTE"], "analytics", 20)
    if time.time() % 60 > 55:  # both requests in one budget window
        time.sleep(60 - time.time() % 60 + 0.1)
    url = "/api/v1/analytics/time-series/ticket_count?start=2026-01-01&end=2026-10-28&tz=UTC&exact=true"
    # 300 days: 1 for the request, 10 for its raw scan.
    assert tenant.viewer.get(url).status_code == 200
    refused = tenant.viewer.get(url)
    assert refused.status_code == 429, refused.get_json()
    assert refused.get_json()["error"]["details"]["units"] == 10
    assert int(refused.headers["Retry-After"]) >= 1


def _hourly_rule(tenant) -> dict:
    """An hourly ticket_count rule of the tenant's, as its admin made it."""
    return tenant.admin.post(
        "/api/v1/alerts",
        json={
            "name": "volume",
            "metric": "ticket_count",
            "granularity": "hourly",
            "condition": {"type": "above", "value": 5},
            "channels": [{"type": "websocket"}],
        },
    ).get_json()


def test_alert_simulation_shares_the_limit(tenant, app, monkeypatch):
    rule = _hourly_rule(tenant)
    monkeypatch.setitem(app.config, "ANALYTICS_MAX_CELLS", 1_000)
    simulated = tenant.viewer.post(
        f"/api/v1/alerts/{rule['id']}/simulate", json={"start": "2026-01-01", "end": "2026-02-01"}
    )
    assert _too_costly(simulated)["details"]["estimate"] == 31 * 24 * 4


def test_a_simulation_over_too_many_buckets_names_its_estimate_and_limit(make_tenant):
    tenant = make_tenant(timezone="America/New_York")
    rule = _hourly_rule(tenant)
    simulated = tenant.viewer.post(
        f"/api/v1/alerts/{rule['id']}/simulate", json={"start": "2025-01-01", "end": "2026-01-01"}
    )
    assert simulated.status_code == 400, simulated.get_json()
    error = simulated.get_json()["error"]
    assert error["code"] == "too_costly"
    # The real hours between the two local midnights (in UTC: Python subtracts times of one zone as
    # wall-clock times), a spring hour short and an autumn hour long.
    zone = ZoneInfo("America/New_York")
    start, end = (datetime(year, 1, 1, tzinfo=zone).astimezone(UTC) for year in (2025, 2026))
    hours = int((end - start).total_seconds() // 3600)
    limit = 5000  # the most buckets a simulation evaluates (alerts.evaluation)
    assert error["details"] == {"field": "end", "estimate": hours, "limit": limit}
    assert f"{hours:,}" in error["message"]
    assert f"{limit:,}" in error["message"]


@pytest.mark.parametrize("route", ["/api/v1/analytics/agents", "/api/v1/analytics/time-in-status"])
def test_reads_of_raw_rows_spend_one_more_request_per_30_days(tenant, app, monkeypatch, route):
    monkeypatch.setitem(app.config["RATE_LIMITS_PER_MINUTE"], "analytics", 20)
    if time.time() % 60 > 55:  # both requests in one budget window
        time.sleep(60 - time.time() % 60 + 0.1)
    url = f"{route}?start=2026-01-01&end=2026-10-28&tz=UTC"
    # 300 days: 1 for the request, 10 for its read of raw rows.
    first = tenant.viewer.get(url)
    assert first.status_code == 200, first.get_json()
    refused = tenant.viewer.get(url)
    assert refused.status_code == 429, refused.get_json()
    assert refused.get_json()["error"]["details"]["units"] == 10
