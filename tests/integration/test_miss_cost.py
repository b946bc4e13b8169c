"""A question the cache cannot answer costs ANALYTICS_MISS_COST requests of the organization's
analytics budget: an organization asking a new question each time is refused (429) before any query
once its budget is spent, and another organization's questions are not."""

from __future__ import annotations

import time

import pytest
import redis

from tests.integration.test_cost_estimates import _keys


@pytest.fixture
def redis_client(services):
    return redis.Redis.from_url(services.redis_url)


def _series(client, day: int):
    query = f"start=2026-01-{day:02d}&end=2026-02-01&tz=UTC"
    return client.get(f"/api/v1/analytics/time-series/ticket_count?{query}")


def test_new_questions_spend_the_budget_and_are_refused_before_any_query(
    make_tenant, app, monkeypatch, redis_client
):
    monkeypatch.setitem(app.config, "ANALYTICS_MISS_COST", 100)
    monkeypatch.setitem(app.config["RATE_LIMITS_PER_MINUTE"], "analytics", 1_000)
    if time.time() % 60 > 50:  # every request in one budget window
        time.sleep(60 - time.time() % 60 + 0.1)
    flood, other = make_tenant("Flood"), make_tenant("Other")

    answered = 0
    refused = None
    for day in range(1, 29):
        answer = _series(flood.viewer, day)
        if answer.status_code == 429:
            refused = (day, answer)
            break
        assert answer.status_code == 200, answer.get_json()
        assert answer.get_json()["meta"]["cache"] == "miss"
        answered += 1
    # 1,000 requests a minute at 100 a miss: about ten new questions (a process's lease of hits counts).
    assert refused is not None
    assert 5 <= answered <= 10, answered
    day, answer = refused
    error = answer.get_json()["error"]
    assert "analytics budget of 1000 requests per minute is spent" in error["message"]
    assert error["details"]["units"] in (1, 99)  # refused at admission, or at the miss
    assert int(answer.headers["Retry-After"]) >= 1

    # Refused before any query: nothing was computed or stored for it.
    before = _keys(redis_client)
    assert _series(flood.viewer, day).status_code == 429
    assert _keys(redis_client) == before
    # Another organization's budget is its own.
    assert _series(other.viewer, day).status_code == 200


def test_a_cached_answer_costs_one_request(make_tenant, app, monkeypatch):
    monkeypatch.setitem(app.config, "ANALYTICS_MISS_COST", 100)
    monkeypatch.setitem(app.config["RATE_LIMITS_PER_MINUTE"], "analytics", 1_000)
    if time.time() % 60 > 50:
        time.sleep(60 - time.time() % 60 + 0.1)
    tenant = make_tenant()
    assert _series(tenant.viewer, 1).get_json()["meta"]["cache"] == "miss"
    for _ in range(40):  # 40 hits: 40 requests, far below the budget a miss each would spend
        answer = _series(tenant.viewer, 1)
        assert answer.status_code == 200, answer.get_json()
        assert answer.get_json()["meta"]["cache"] == "hit"
