"""Per-organization budgets answer 429 with Retry-After, and one organization's use is not another's."""

from __future__ import annotations

import time


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


def test_budget_blocks_never_admit_more_than_the_limit(services):
    """Two processes taking blocks of one window admit exactly the limit between them, then refuse."""
    import secrets

    import redis

    from webapp.security import ratelimit

    client = redis.Redis.from_url(services.redis_url)
    limit = 5_000  # blocks of 5
    assert ratelimit.block_size(limit) == 5
    window = ratelimit.Window(f"an:rl:test:{secrets.token_hex(4)}", time.time() + 60)
    processes = [ratelimit.Leases(), ratelimit.Leases()]
    admitted = [0, 0]
    refused = [0, 0]
    round_trips = 0
    for n in range(6_000):
        which = n % 2 if n < 5_500 else 1  # near the end only one process still asks
        leases = processes[which]
        wait = leases.take(window)
        if wait is None:
            round_trips += 1
            taken = client.execute_command(*leases.commands(window, limit)[0])
            wait = leases.settle(window, limit, taken)
        if wait:
            assert 1 <= wait <= 61
            refused[which] += 1
        else:
            admitted[which] += 1
    # Process 0 may hold up to 4 unused requests of its last block; none of it goes to process 1.
    assert limit - 4 <= sum(admitted) <= limit
    while processes[0].take(window) == 0:
        admitted[0] += 1
    assert sum(admitted) == limit
    assert round_trips < 6_000 / 4
    assert int(client.get(window.key)) >= limit


def test_small_budgets_are_counted_one_by_one():
    from webapp.security import ratelimit

    assert [ratelimit.block_size(n) for n in (1, 300, 999, 1_000, 1_999, 2_000, 60_000, 10**9)] == [
        1,
        1,
        1,
        1,
        1,
        2,
        32,
        32,
    ]
