"""Per-organization budgets answer 429 with Retry-After, and one organization's use is not another's."""

from __future__ import annotations


def test_analytics_budget(app, make_tenant, monkeypatch):
    monkeypatch.setitem(app.config, "RATE_LIMITS_PER_MINUTE", {"analytics": 3, "jobs": 3, "exports": 3})
    alpha = make_tenant("Alpha")
    beta = make_tenant("Beta")
    path = "/api/v1/analytics/distribution/priority"
    statuses = [alpha.viewer.get(path).status_code for _ in range(4)]
    assert statuses[:3] == [200, 200, 200]
    assert statuses[3] == 429
    limited = alpha.viewer.get(path)
    assert limited.status_code == 429
    assert 1 <= int(limited.headers["Retry-After"]) <= 61
    error = limited.get_json()["error"]
    assert error["code"] == "too_many_requests"
    assert "analytics" in error["message"]
    assert beta.viewer.get(path).status_code == 200
    assert alpha.viewer.get("/api/v1/tickets").status_code == 200
