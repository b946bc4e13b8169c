"""The job platform end to end: a real worker runs a refresh-cache job that REST clients poll."""

from __future__ import annotations

import json

import pytest
import redis

from tests.conftest import wait_for_job

pytestmark = pytest.mark.worker


def test_refresh_cache_job_lifecycle(celery_worker, make_live_tenant, services):
    tenant = make_live_tenant()
    stream = redis.Redis.from_url(services.redis_url)
    response = tenant.admin.post("/api/v1/analytics/refresh-cache")
    assert response.status_code == 202, response.get_json()
    body = response.get_json()
    job_id = body["job_id"]
    assert body["status_url"] == f"/api/v1/jobs/{job_id}"

    first = tenant.viewer.get(body["status_url"])
    assert first.status_code == 200
    if first.get_json()["state"] in ("queued", "running"):
        assert first.headers["Retry-After"]

    done = wait_for_job(tenant.viewer, job_id)
    assert done["state"] == "succeeded", done
    assert done["kind"] == "cache_refresh"
    assert done["progress"] == 1.0
    assert done["started_at"]
    assert done["finished_at"]
    assert "Retry-After" not in tenant.viewer.get(body["status_url"]).headers

    states = [
        json.loads(fields[b"data"])["state"]
        for _, fields in stream.xrange(f"an:events:{tenant.org_id}")
        if fields[b"type"] == b"job_update" and json.loads(fields[b"data"])["job_id"] == job_id
    ]
    assert states[0] == "queued"
    assert "running" in states
    assert states[-1] == "succeeded"
    # The job's row is its record: Celery stores neither a STARTED state nor a result for it.
    assert not stream.exists(f"celery-task-meta-{job_id}")


def test_jobs_of_another_organization_are_404(celery_worker, make_live_tenant):
    alpha = make_live_tenant("Alpha")
    beta = make_live_tenant("Beta")
    job_id = alpha.admin.post("/api/v1/analytics/refresh-cache").get_json()["job_id"]
    assert beta.admin.get(f"/api/v1/jobs/{job_id}").status_code == 404
    assert beta.admin.delete(f"/api/v1/jobs/{job_id}").status_code == 404
    assert beta.admin.get("/api/v1/jobs").get_json()["items"] == []
    assert [j["id"] for j in alpha.viewer.get("/api/v1/jobs").get_json()["items"]] == [job_id]
    wait_for_job(alpha.viewer, job_id)


def test_job_list_filters_and_validation(celery_worker, make_live_tenant):
    tenant = make_live_tenant()
    job_id = tenant.admin.post("/api/v1/analytics/refresh-cache").get_json()["job_id"]
    wait_for_job(tenant.viewer, job_id)
    listed = tenant.viewer.get("/api/v1/jobs?state=succeeded&kind=cache_refresh").get_json()
    assert [j["id"] for j in listed["items"]] == [job_id]
    assert tenant.viewer.get("/api/v1/jobs?state=failed").get_json()["items"] == []
    assert tenant.viewer.get("/api/v1/jobs?state=bogus").status_code == 400
    assert tenant.viewer.get("/api/v1/jobs?kind=bogus").status_code == 400
    assert tenant.viewer.get("/api/v1/jobs/not-a-uuid").status_code == 404


def test_refresh_needs_admin(live_app, make_live_tenant):
    tenant = make_live_tenant()
    assert tenant.viewer.post("/api/v1/analytics/refresh-cache").status_code == 403
    assert tenant.agent.post("/api/v1/analytics/refresh-cache").status_code == 403


def test_finished_job_cannot_be_cancelled(celery_worker, make_live_tenant):
    tenant = make_live_tenant()
    job_id = tenant.admin.post("/api/v1/analytics/refresh-cache").get_json()["job_id"]
    wait_for_job(tenant.viewer, job_id)
    response = tenant.admin.delete(f"/api/v1/jobs/{job_id}")
    assert response.status_code == 409


def test_refresh_recomputes_the_popular_queries(celery_worker, make_live_tenant):
    tenant = make_live_tenant()
    tenant.agent.post("/api/v1/tickets", json={})
    path = "/api/v1/analytics/time-series/ticket_count?granularity=daily"
    first = tenant.viewer.get(path).get_json()
    assert first["meta"]["cache"] == "miss"
    job_id = tenant.admin.post("/api/v1/analytics/refresh-cache").get_json()["job_id"]
    done = wait_for_job(tenant.viewer, job_id)
    assert done["result"]["refreshed"] >= 1
    again = tenant.viewer.get(path).get_json()
    assert again["meta"]["cache"] == "hit"
    assert again["meta"]["computed_at"] > first["meta"]["computed_at"]
    assert again["summary"] == first["summary"]


def test_a_refresh_drops_popular_queries_that_are_refused_and_warms_the_rest(
    live_app, celery_worker, make_live_tenant
):
    """A request is counted as popular before it is answered: one the platform refuses must not fail
    every later refresh of its organization."""
    tenant = make_live_tenant()
    tenant.agent.post("/api/v1/tickets", json={})
    path = "/api/v1/analytics/time-series/ticket_count?granularity=daily"
    assert tenant.viewer.get(path).status_code == 200
    client = redis.Redis.from_url(live_app.config["REDIS_URL"])
    key = f"an:popular:{tenant.org_id}"
    (good,) = client.zrange(key, 0, -1)
    entry = json.loads(good)
    # Hourly over ten years: more buckets than any read builds (refused as the API refuses it).
    entry["params"] |= {"granularity": "hourly", "start": "2016-01-01T00:00:00+00:00"}
    refused = json.dumps(entry, sort_keys=True, separators=(",", ":"))
    unknown = json.dumps({"kind": "read", "params": {"route": "no_such_route"}})
    client.zadd(key, {refused: 50, unknown: 40})
    job_id = tenant.admin.post("/api/v1/analytics/refresh-cache").get_json()["job_id"]
    done = wait_for_job(tenant.viewer, job_id)
    assert done["state"] == "succeeded", done
    assert done["result"] == {"queries": 3, "refreshed": 1, "dropped": 2}
    assert client.zrange(key, 0, -1) == [good]
    again = tenant.admin.post("/api/v1/analytics/refresh-cache").get_json()["job_id"]
    assert wait_for_job(tenant.viewer, again)["result"] == {"queries": 1, "refreshed": 1, "dropped": 0}
