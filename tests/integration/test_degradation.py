"""Redis stopped in the middle of a test: reads still answer from PostgreSQL, jobs say 503, and
caching resumes with no restart once Redis is back."""

from __future__ import annotations

import time

import redis

from tests.conftest import wait_redis
from webapp.analytics import generations


def test_redis_down_then_back(live_app, make_live_tenant, stoppable_redis, services):
    tenant = make_live_tenant()
    assert tenant.agent.post("/api/v1/tickets", json={"priority": "high"}).status_code == 201

    stoppable_redis.stop()
    try:
        health = tenant.admin.get("/api/v1/health")
        assert health.status_code == 200
        assert health.get_json()["status"] == "degraded"
        assert health.get_json()["redis"]["ok"] is False

        listed = tenant.viewer.get("/api/v1/tickets")
        assert listed.status_code == 200
        assert len(listed.get_json()["items"]) == 1

        created = tenant.agent.post("/api/v1/tickets", json={"priority": "low"})
        assert created.status_code == 201

        analytics = tenant.viewer.get("/api/v1/analytics/time-series/ticket_count?granularity=daily")
        assert analytics.status_code == 200, analytics.get_json()
        assert analytics.get_json()["meta"]["cache"] == "bypass"
        assert analytics.get_json()["summary"]["total_count"] == 2

        job = tenant.admin.post("/api/v1/analytics/refresh-cache")
        assert job.status_code == 503
        assert job.get_json()["error"]["message"]
        assert job.headers["Retry-After"]
    finally:
        stoppable_redis.start()
    wait_redis(services.redis_url)

    assert tenant.admin.get("/api/v1/health").get_json()["redis"]["ok"] is True
    first = tenant.viewer.get("/api/v1/analytics/time-series/ticket_count?granularity=daily").get_json()
    assert first["meta"]["cache"] == "miss"
    # Cached again: a hit soon (the invalidations held back while Redis was away may land between
    # two reads first and make the next one a miss once more), and the same answer.
    deadline = time.monotonic() + 10
    while True:
        again = tenant.viewer.get("/api/v1/analytics/time-series/ticket_count?granularity=daily").get_json()
        assert again["summary"]["total_count"] == 2
        if again["meta"]["cache"] == "hit":
            break
        assert time.monotonic() < deadline, again["meta"]
        time.sleep(0.2)


def test_a_change_made_while_redis_was_away_is_not_hidden_by_answers_cached_before(
    live_app, make_live_tenant, stoppable_redis, services
):
    """Redis keeps its data through the restart (append-only file), answers cached before included;
    the generation bump the change could not make is made once Redis is back."""
    tenant = make_live_tenant()
    series = "/api/v1/analytics/time-series/ticket_count?granularity=daily"
    assert tenant.agent.post("/api/v1/tickets", json={"priority": "high"}).status_code == 201
    for _ in range(3):
        cached = tenant.viewer.get(series).get_json()
    assert (cached["summary"]["total_count"], cached["meta"]["cache"]) == (1, "hit")

    stoppable_redis.stop()
    try:
        assert tenant.agent.post("/api/v1/tickets", json={"priority": "low"}).status_code == 201
    finally:
        stoppable_redis.start()
    wait_redis(services.redis_url)

    # At once in this process (it owes the bump and reads without the cache meanwhile)...
    assert tenant.viewer.get(series).get_json()["summary"]["total_count"] == 2
    # ...and in Redis for every process, as soon as the owed bump has landed.
    time.sleep(1.0)
    client = redis.Redis.from_url(services.redis_url)
    assert int(client.get(generations.gen_key(tenant.org_id, "volume")) or 0) >= 2
    answers = [tenant.viewer.get(series).get_json() for _ in range(2)]
    assert [a["summary"]["total_count"] for a in answers] == [2, 2]
    assert answers[-1]["meta"]["cache"] == "hit"


def test_changes_made_while_redis_was_away_are_told_to_live_clients_once_it_is_back(
    live_app, make_live_tenant, stoppable_redis, services
):
    """Their metric_updates could not be published; one catch-up naming them all is, as soon as Redis
    answers, after what the stream held (a client resuming from its last id reads it)."""
    import json

    tenant = make_live_tenant()
    client = redis.Redis.from_url(services.redis_url)
    before = tenant.agent.post("/api/v1/tickets", json={"priority": "high"}).get_json()
    last_id = client.xrevrange(f"an:events:{tenant.org_id}", count=1)[0][0]

    stoppable_redis.stop()
    try:
        away = [tenant.agent.post("/api/v1/tickets", json={"priority": "low"}) for _ in range(3)]
        assert [r.status_code for r in away] == [201, 201, 201]
        ticket = away[0].get_json()
        answer = tenant.agent.post(f"/api/v1/tickets/{ticket['id']}/replies", json={"author": "agent"})
        assert answer.status_code == 201
    finally:
        stoppable_redis.start()
    wait_redis(services.redis_url)

    deadline = time.monotonic() + 10
    while True:
        told = [
            json.loads(fields[b"data"])
            for _, fields in client.xrange(f"an:events:{tenant.org_id}", min=f"({last_id.decode()}")
            if fields[b"type"] == b"metric_update"
        ]
        if told or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    [catch_up] = told
    assert catch_up["catch_up"] is True
    assert catch_up["changes"] == 4
    assert catch_up["ticket_ids"] == sorted(r.get_json()["id"] for r in away)
    assert before["id"] not in catch_up["ticket_ids"]
    assert {"created", "first_response"} <= set(catch_up["events"])
    assert {"ticket_count", "response_time"} <= set(catch_up["metrics"])
    assert {"volume", "response", "sla"} <= set(catch_up["families"])
