"""An organization's read time: the seconds its analytics answers took to compute, charged by the
minute, and new computations refused with 429 and Retry-After while the last minute's time is at
ANALYTICS_READ_SECONDS_PER_MINUTE; cached answers still served, nothing stored for a refusal, other
organizations unaffected."""

from __future__ import annotations

import time

import redis

from webapp.analytics import read_time
from webapp.infra.time_windows import window_of

SERIES = "/api/v1/analytics/time-series/ticket_count?start=2026-10-{day:02d}&end=2026-11-01&granularity=daily"


def _charge_in_redis(client: redis.Redis, org_id: int, seconds: float) -> None:
    """What other web processes charged: in Redis, not yet in this process's view."""
    index, _ = window_of(time.time())
    client.incrbyfloat(read_time.requests(0).windows.key(org_id, index), seconds)


def test_past_the_read_time_new_computations_get_429_and_cached_answers_still_come(
    services, app, make_tenant
):
    client = redis.Redis.from_url(services.redis_url)
    spender, other = make_tenant("Spender"), make_tenant("Bystander")
    budget = app.config["ANALYTICS_READ_SECONDS_PER_MINUTE"]
    assert budget > 0
    _charge_in_redis(client, spender.org_id, budget + 5)

    # This process has not seen the organization's time yet: the next computation runs, and its
    # charge tells the total.
    first = spender.viewer.get(SERIES.format(day=1))
    assert first.status_code == 200, first.get_json()
    refused = spender.viewer.get(SERIES.format(day=2))
    assert refused.status_code == 429
    error = refused.get_json()["error"]
    assert error["code"] == "read_time_budget"
    assert error["details"]["limit_seconds"] == budget
    assert 1 <= int(refused.headers["Retry-After"]) <= 2 * 60
    assert "still served" in error["message"]
    # Nothing stored for the refusal: asked again, it is refused again (not a hit).
    assert spender.viewer.get(SERIES.format(day=2)).status_code == 429
    # The answer computed before is a hit, served as ever; another organization computes freely.
    again = spender.viewer.get(SERIES.format(day=1))
    assert again.status_code == 200
    assert again.get_json()["meta"]["cache"] == "hit"
    assert other.viewer.get(SERIES.format(day=2)).status_code == 200
    # The dashboard is a read like the others.
    assert spender.viewer.get("/api/v1/analytics/dashboard?period=7d").status_code == 429


def test_with_no_budget_nothing_is_refused(services, app, make_tenant, monkeypatch):
    client = redis.Redis.from_url(services.redis_url)
    tenant = make_tenant()
    _charge_in_redis(client, tenant.org_id, 10_000)
    monkeypatch.setitem(app.config, "ANALYTICS_READ_SECONDS_PER_MINUTE", 0.0)
    for day in (1, 2, 3):
        assert tenant.viewer.get(SERIES.format(day=day)).status_code == 200


def test_a_computation_is_charged_with_the_time_it_took(services, app, make_tenant):
    client = redis.Redis.from_url(services.redis_url)
    tenant = make_tenant()
    assert tenant.viewer.get(SERIES.format(day=3)).status_code == 200
    spent = read_time.requests(0).windows.spent(client, tenant.org_id)
    assert 0 < spent.seconds < 30
    before = spent.seconds
    # A hit costs nothing.
    assert tenant.viewer.get(SERIES.format(day=3)).status_code == 200
    assert read_time.requests(0).windows.spent(client, tenant.org_id).seconds == before


def test_a_synchronous_export_and_an_alert_simulation_spend_read_time(services, live_app, make_live_tenant):
    # Committed data: a synchronous export streams from a session of its own.
    client = redis.Redis.from_url(services.redis_url)
    tenant = make_live_tenant()
    budget = live_app.config["ANALYTICS_READ_SECONDS_PER_MINUTE"]
    rule = tenant.admin.post(
        "/api/v1/alerts",
        json={
            "name": "Surge",
            "metric": "ticket_count",
            "granularity": "hourly",
            "condition": {"type": "above", "value": 5},
            "channels": [{"type": "websocket"}],
        },
    )
    assert rule.status_code == 201, rule.get_json()
    simulate = f"/api/v1/alerts/{rule.get_json()['id']}/simulate"
    export = {
        "format": "csv",
        "dataset": "time-series",
        "query": {
            "metric": "ticket_count",
            "granularity": "daily",
            "start": "2026-10-01",
            "end": "2026-11-01",
        },
    }
    assert tenant.viewer.post(simulate, json={"start": "2026-10-01", "end": "2026-10-02"}).status_code == 200
    _charge_in_redis(client, tenant.org_id, budget + 5)
    # The next computation learns the total as it is charged; the one after it is refused.
    assert tenant.viewer.post("/api/v1/analytics/export?mode=sync", json=export).status_code == 200
    refused = tenant.viewer.post(simulate, json={"start": "2026-10-01", "end": "2026-10-03"})
    assert refused.status_code == 429
    assert refused.get_json()["error"]["code"] == "read_time_budget"
    refused = tenant.viewer.post("/api/v1/analytics/export?mode=sync", json=export)
    assert refused.status_code == 429
    assert refused.get_json()["error"]["code"] == "read_time_budget"
    assert "Retry-After" in refused.headers
