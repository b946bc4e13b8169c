"""An organization's worker time: its jobs' runs charged by the minute in Redis, and new jobs refused
with 429 and Retry-After while the last minute's time is at JOB_WORKER_SECONDS_PER_MINUTE, nothing
stored; other organizations unaffected."""

from __future__ import annotations

import redis

from webapp.jobs import worker_time
from webapp.models import Job

REFRESH = "/api/v1/analytics/refresh-cache"


def _jobs(db_session, org_id: int) -> int:
    return db_session.query(Job).filter_by(org_id=org_id).count()


def test_the_last_minute_slides_over_two_windows(services, make_tenant):
    client = redis.Redis.from_url(services.redis_url)
    org_id = make_tenant().org_id
    start = 1_800_000_000.0 - 1_800_000_000.0 % 60  # the start of a window
    worker_time.charge(client, org_id, 40.0, now=start + 10)
    worker_time.charge(client, org_id, 2.5, now=start + 50)
    assert worker_time.spent(client, org_id, now=start + 55).seconds == 42.5
    # 15 s into the next window, a quarter of the last one has left the minute.
    later = worker_time.spent(client, org_id, now=start + 75)
    assert later.seconds == 42.5 * 0.75
    assert later.retry_after == 45
    # Under a budget of 30: the previous window's 42.5 fades to 30 at 42.5 x (1 - t / 60) = 30, t = 17.6.
    assert worker_time.spent(client, org_id, now=start + 75, budget=30.0).retry_after == 3
    worker_time.charge(client, org_id, 1.0, now=start + 75)
    assert worker_time.spent(client, org_id, now=start + 75).seconds == 42.5 * 0.75 + 1.0
    assert worker_time.spent(client, org_id, now=start + 125).seconds == 1.0 * (1 - 5 / 60)
    assert worker_time.spent(client, org_id, now=start + 185).seconds == 0.0


def test_retry_after_is_when_the_last_minute_falls_under_the_budget(services, make_tenant):
    """Waiting Retry-After seconds is enough, and not much more, with nothing else charged (found
    from outside: a Retry-After of 28 s was still refused after 28 s, then with 60)."""
    client = redis.Redis.from_url(services.redis_url)
    start = 1_800_000_000.0 - 1_800_000_000.0 % 60
    alone, both = make_tenant("Alone").org_id, make_tenant("Both").org_id
    worker_time.charge(client, alone, 80.0, now=start + 20)  # one long run, over the budget by itself
    worker_time.charge(client, both, 50.0, now=start - 30)  # the window before, then this one
    worker_time.charge(client, both, 30.0, now=start + 5)
    for org_id, moments in ((alone, (30, 59, 61, 70)), (both, (1, 10, 20))):
        for moment in moments:
            now = start + moment
            seen = worker_time.spent(client, org_id, now=now, budget=60.0)
            assert seen.seconds >= 60.0, (org_id, moment)
            wait = seen.retry_after
            assert worker_time.spent(client, org_id, now=now + wait).seconds < 60.0, (org_id, moment)
            assert worker_time.spent(client, org_id, now=now + wait - 1.5).seconds >= 60.0, (org_id, moment)


def test_a_busy_organization_is_known_from_the_last_charge_without_a_round_trip(services, make_tenant):
    client = redis.Redis.from_url(services.redis_url)
    busy_org, quiet_org = make_tenant("Busy").org_id, make_tenant("Quiet").org_id
    start = 1_800_000_000.0 - 1_800_000_000.0 % 60
    worker_time.charge(client, busy_org, 25.0, now=start + 5)
    assert not worker_time.busy(busy_org, 30.0, now=start + 6)
    worker_time.charge(client, busy_org, 6.0, now=start + 30)  # Redis answers the window's total: 31
    assert worker_time.busy(busy_org, 30.0, now=start + 31)
    assert not worker_time.busy(busy_org, 0.0, now=start + 31)  # 0: never busy
    # The previous window fades out of the last minute as `spent` counts it.
    assert worker_time.busy(busy_org, 30.0, now=start + 61)
    assert not worker_time.busy(busy_org, 30.0, now=start + 90)
    assert not worker_time.busy(busy_org, 30.0, now=start + 130)
    worker_time.charge(client, quiet_org, 0.5, now=start + 31)
    assert not worker_time.busy(quiet_org, 30.0, now=start + 31)


def test_the_runs_of_a_busy_organization_are_demoted_from_their_start(services, make_tenant):
    client = redis.Redis.from_url(services.redis_url)
    busy_org, quiet_org = make_tenant("Busy").org_id, make_tenant("Quiet").org_id
    worker_time.charge(client, busy_org, 45.0)
    worker_time.charge(client, quiet_org, 2.0)
    assert worker_time.demotion_delay(busy_org, 0.5, 30.0) == 0.0
    assert worker_time.demotion_delay(quiet_org, 0.5, 30.0) == 0.5
    assert worker_time.demotion_delay(None, 0.5, 30.0) == 0.5
    assert worker_time.demotion_delay(busy_org, 0.5, 0.0) == 0.5  # 0: never from the start


def test_an_organization_past_its_worker_time_gets_429_and_nothing_is_stored(
    services, make_tenant, app, db_session, monkeypatch
):
    monkeypatch.setitem(app.config, "JOB_WORKER_SECONDS_PER_MINUTE", 30.0)
    client = redis.Redis.from_url(services.redis_url)
    busy, other = make_tenant("Busy"), make_tenant("Other")
    worker_time.charge(client, busy.org_id, 31.0)
    refused = busy.admin.post(REFRESH)
    assert refused.status_code == 429
    error = refused.get_json()["error"]
    assert error["code"] == "worker_time_budget"
    assert error["details"]["limit_seconds"] == 30.0
    assert error["details"]["spent_seconds"] >= 30.0
    # Past the budget within the current window, its charge fades over the next one too: up to the
    # rest of this window plus part of the next (62 s was seen when the charge fell right at a
    # window's start), never more than two windows.
    assert 1 <= int(refused.headers["Retry-After"]) <= 2 * worker_time.WINDOW_SECONDS
    assert error["details"]["retry_after"] == int(refused.headers["Retry-After"])
    # Every kind of job goes through the same budget.
    assert busy.agent.post("/api/v1/tickets/import", json=[{"subject": "one"}]).status_code == 429
    assert (
        busy.viewer.post("/api/v1/analytics/export", json={"format": "csv", "dataset": "tickets"}).status_code
        == 429
    )
    assert _jobs(db_session, busy.org_id) == 0
    assert other.admin.post(REFRESH).status_code == 202
    # Without a budget the same organization is taken.
    monkeypatch.setitem(app.config, "JOB_WORKER_SECONDS_PER_MINUTE", 0.0)
    assert busy.admin.post(REFRESH).status_code == 202


def test_a_new_windows_first_charge_keeps_the_minute_before_in_view(services, make_tenant):
    """Found in review: the first charge of a minute replaced the process's view with that minute's
    total alone, so an organization that spent 70 s just before looked idle at once."""
    client = redis.Redis.from_url(services.redis_url)
    org_id = make_tenant().org_id
    start = 1_800_000_000.0 - 1_800_000_000.0 % 60
    worker_time.charge(client, org_id, 70.0, now=start + 50)
    worker_time.charge(client, org_id, 1.0, now=start + 65)  # the next window's first
    # 1 + 70 x (1 - 6 / 60) = 64 over the last minute.
    assert worker_time.busy(org_id, 60.0, now=start + 66)
    assert not worker_time.busy(org_id, 60.0, now=start + 90)  # 1 + 70 x 0.5 = 36


def test_work_that_began_in_the_window_before_is_charged_to_both(services, make_tenant):
    client = redis.Redis.from_url(services.redis_url)
    org_id = make_tenant().org_id
    start = 1_800_000_000.0 - 1_800_000_000.0 % 60
    # 25 s of work from start + 50 to start + 75: 10 s in the first window, 15 s in the second.
    worker_time.charge(client, org_id, 25.0, now=start + 75, started=start + 50)
    first, second = client.mget(
        f"an:jt:{org_id}:{int(start // 60)}", f"an:jt:{org_id}:{int(start // 60) + 1}"
    )
    assert (float(first), float(second)) == (10.0, 15.0)
