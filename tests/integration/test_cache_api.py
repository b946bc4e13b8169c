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
