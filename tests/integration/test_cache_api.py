"""The analytics cache seen through the API: spellings share an entry, events invalidate exactly
their families, and an answered write is never followed by an answer from before it."""

from __future__ import annotations

SERIES = "/api/v1/analytics/time-series/ticket_count?granularity=daily&start=2026-01-01&end=2026-01-08"


def _cache(api, path):
    response = api.get(path)
    assert response.status_code == 200, response.get_json()
    return response.get_json()["meta"]["cache"]


def test_equivalent_spellings_share_one_entry(make_tenant):
    tenant = make_tenant(timezone="America/New_York")
    assert _cache(tenant.viewer, SERIES) == "miss"
    for spelling in [
        "/api/v1/analytics/time-series/ticket_count?end=2026-01-08&start=2026-01-01&granularity=daily",
        "/api/v1/analytics/time-series/ticket_count?granularity=daily&start=2026-01-01T00:00:00&end=2026-01-08",
        "/api/v1/analytics/time-series/ticket_count?granularity=daily&start=2026-01-01T05:00:00Z&end=2026-01-08",
        "/api/v1/analytics/time-series/ticket_count?granularity=daily&start=2026-01-01&end=2026-01-08"
        "&tz=America/New_York",
    ]:
        assert _cache(tenant.viewer, spelling) == "hit", spelling
    base = "/api/v1/analytics/distribution/channel?start=2026-01-01&end=2026-01-08"
    assert _cache(tenant.viewer, base + "&priority=high,low") == "miss"
    assert _cache(tenant.viewer, base + "&priority=low,high") == "hit"
    assert _cache(tenant.viewer, base + "&priority=low,%20high,low") == "hit"


def test_each_change_invalidates_only_what_it_touches(make_tenant):
    tenant = make_tenant()
    ticket = tenant.agent.post("/api/v1/tickets", json={"priority": "low"}).get_json()
    paths = {
        "volume": "/api/v1/analytics/time-series/ticket_count?granularity=daily",
        "response": "/api/v1/analytics/time-series/response_time?granularity=daily",
        "status": "/api/v1/analytics/distribution/status",
        "assigned": "/api/v1/analytics/distribution/assigned_to",
        "priority": "/api/v1/analytics/distribution/priority",
    }

    def states():
        return {name: _cache(tenant.viewer, path) for name, path in paths.items()}

    states()
    assert set(states().values()) == {"hit"}

    tenant.agent.patch(f"/api/v1/tickets/{ticket['id']}", json={"assigned_to": "ana"})
    assert states() == {
        "volume": "hit",
        "response": "hit",
        "status": "hit",
        "assigned": "miss",
        "priority": "hit",
    }
    assigned = tenant.viewer.get(paths["assigned"]).get_json()
    assert {v["value"]: v["count"] for v in assigned["values"]} == {"ana": 1}

    tenant.agent.patch(f"/api/v1/tickets/{ticket['id']}", json={"status": "pending"})
    assert states() == {
        "volume": "hit",
        "response": "hit",
        "status": "miss",
        "assigned": "hit",
        "priority": "hit",
    }

    tenant.agent.patch(f"/api/v1/tickets/{ticket['id']}", json={"priority": "urgent"})
    assert states() == {
        "volume": "hit",
        "response": "hit",
        "status": "hit",
        "assigned": "hit",
        "priority": "miss",
    }

    tenant.agent.patch(f"/api/v1/tickets/{ticket['id']}", json={"first_response_at": ticket["created_at"]})
    after = states()
    assert after["response"] == "miss"
    assert after["volume"] == "hit"
    response = tenant.viewer.get(paths["response"]).get_json()
    assert response["summary"]["total_count"] == 1

    tenant.agent.post("/api/v1/tickets", json={})
    assert states()["volume"] == "miss"
    assert tenant.viewer.get(paths["volume"]).get_json()["summary"]["total_count"] == 2


def test_manual_invalidation(make_tenant):
    tenant = make_tenant()
    path = "/api/v1/analytics/distribution/priority"
    _cache(tenant.viewer, path)
    assert _cache(tenant.viewer, path) == "hit"
    assert tenant.agent.delete("/api/v1/analytics/cache").status_code == 403
    response = tenant.admin.delete("/api/v1/analytics/cache")
    assert response.status_code == 200
    assert _cache(tenant.viewer, path) == "miss"


def test_a_public_reply_is_never_followed_by_an_sla_answer_from_before_it(make_tenant, services):
    """A customer's reply after an agent's makes the SLA's next_reply target pending with no event of
    its own, and the agent's answer closes it: the performance report, the dashboard and the snapshot
    listing (cached, warm) show each at once, and live clients are told the SLA moved."""
    import json
    from datetime import UTC, datetime, timedelta

    import redis

    tenant = make_tenant()
    targets = {
        p: {"first_reply_hours": 8, "next_reply_hours": 2, "resolution_hours": 48}
        for p in ("low", "normal", "high", "urgent")
    }
    assert tenant.admin.put("/api/v1/sla-policy", json={"targets": targets}).status_code == 200
    now = datetime.now(UTC).replace(microsecond=0)
    ticket = tenant.agent.post(
        "/api/v1/tickets", json={"priority": "high", "created_at": (now - timedelta(hours=10)).isoformat()}
    ).get_json()
    replies = f"/api/v1/tickets/{ticket['id']}/replies"
    agent_first = {"author": "agent", "at": (now - timedelta(hours=9)).isoformat()}
    assert tenant.agent.post(replies, json=agent_first).status_code == 201
    day = f"start={(now - timedelta(days=2)).date()}&end={(now + timedelta(days=1)).date()}"
    reads = {
        "performance": (f"/api/v1/analytics/performance?{day}", lambda b: b["sla"]["overall"]["next_reply"]),
        "dashboard": (f"/api/v1/analytics/dashboard?{day}", lambda b: b["sla"]["overall"]["next_reply"]),
    }

    def counts() -> dict[str, tuple[int, int, int]]:
        out = {}
        for name, (path, pick) in reads.items():
            body = tenant.viewer.get(path).get_json()
            counted = pick(body)
            out[name] = (counted["achieved"], counted["breached"], counted["pending"])
        return out

    # A ticket answered once: no customer reply waits, so no next reply is due (nothing counted yet).
    before = counts()
    assert counts() == before  # warm: what follows is answered from the cache unless invalidated
    assert {_cache(tenant.viewer, path) for path, _ in reads.values()} == {"hit"}

    customer = {"author": "customer", "at": (now - timedelta(minutes=30)).isoformat()}
    assert tenant.agent.post(replies, json=customer).status_code == 201
    assert counts() == dict.fromkeys(reads, (0, 0, 1))  # the customer waits: pending at once

    agent_again = {"author": "agent", "at": now.isoformat()}
    assert tenant.agent.post(replies, json=agent_again).status_code == 201
    assert counts() == dict.fromkeys(reads, (1, 0, 0))  # answered in 0.5 h of 2: achieved at once

    # A private note moves nothing and invalidates nothing.
    assert _cache(tenant.viewer, reads["performance"][0]) == "hit"
    note = {"author": "agent", "public": False}
    assert tenant.agent.post(replies, json=note).status_code == 201
    assert _cache(tenant.viewer, reads["performance"][0]) == "hit"

    told = [
        json.loads(fields[b"data"])
        for _, fields in redis.Redis.from_url(services.redis_url).xrange(f"an:events:{tenant.org_id}")
        if fields[b"type"] == b"metric_update"
    ]
    # The customer's reply and the agent's answer (the private note told nobody anything).
    assert [u["families"] for u in told if u.get("ticket_id") == ticket["id"]][-2:] == [
        ["performance", "sla"],
        ["performance", "replies", "sla"],
    ]
