from webapp.core.vocabulary import QUEUES


def test_health_answers(client, tenant):
    response = tenant.admin.get("/api/v1/health")
    assert response.status_code == 200
    body = response.get_json()
    assert body["database"]["ok"] is True
    assert body["redis"]["ok"] is True


def test_health_tells_only_an_admin_more_than_up_or_degraded(client, tenant, services):
    import redis

    from webapp.infra import heartbeat

    store = redis.Redis.from_url(services.redis_url)
    heartbeat.worker_beat(store, "secret-host@internal", QUEUES)
    try:
        # The contract's parts, each only up or not: no host names, latencies or errors.
        public = {
            "status": "ok",
            **{part: {"ok": True} for part in ("database", "redis", "broker", "workers", "beat")},
        }
        heartbeat.beat_ran(store)
        for api in (client, tenant.viewer, tenant.agent):
            response = api.get("/api/v1/health")
            assert response.status_code == 200
            assert response.get_json() == public
        for header in ("Bearer garbage", "Basic abc"):
            answer = client.get("/api/v1/health", headers={"Authorization": header}).get_json()
            assert answer == public
        assert "secret-host@internal" not in client.get("/api/v1/health").get_data(as_text=True)
        assert "secret-host@internal" in tenant.admin.get("/api/v1/health").get_data(as_text=True)
    finally:
        heartbeat.worker_gone(store, "secret-host@internal")


def test_health_is_degraded_without_a_worker_or_with_a_silent_beat(tenant, services):
    client = tenant.admin
    from datetime import UTC, datetime, timedelta

    import redis

    from webapp.infra import heartbeat

    store = redis.Redis.from_url(services.redis_url)
    saved_workers = store.zrange(heartbeat.WORKERS_KEY, 0, -1, withscores=True)
    saved_queues = store.hgetall(heartbeat.WORKER_QUEUES_KEY)
    saved_beat = store.get(heartbeat.BEAT_KEY)
    try:
        store.delete(heartbeat.WORKERS_KEY, heartbeat.WORKER_QUEUES_KEY)
        store.set(heartbeat.BEAT_KEY, datetime.now(UTC).isoformat())
        body = client.get("/api/v1/health").get_json()
        assert (body["status"], body["workers"]["ok"], body["beat"]["ok"]) == ("degraded", False, True)

        heartbeat.worker_beat(store, "health-test@localhost", QUEUES)
        store.set(heartbeat.BEAT_KEY, (datetime.now(UTC) - timedelta(minutes=3)).isoformat())
        body = client.get("/api/v1/health").get_json()
        assert (body["status"], body["workers"]["ok"], body["beat"]["ok"]) == ("degraded", True, False)

        heartbeat.beat_ran(store)
        assert client.get("/api/v1/health").get_json()["status"] == "ok"
    finally:
        heartbeat.worker_gone(store, "health-test@localhost")
        if saved_workers:
            store.zadd(heartbeat.WORKERS_KEY, dict(saved_workers))
        if saved_queues:
            store.hset(heartbeat.WORKER_QUEUES_KEY, mapping=saved_queues)
        if saved_beat is not None:
            store.set(heartbeat.BEAT_KEY, saved_beat)


def test_health_names_the_queues_no_worker_takes(tenant, services, celery_worker, monkeypatch):
    """A worker alive on some queues only (the background worker with the jobs' worker down) is not
    a healthy platform: jobs wait in queues nobody takes."""
    from datetime import datetime

    import redis

    from webapp.infra import heartbeat

    store = redis.Redis.from_url(services.redis_url)
    body = tenant.admin.get("/api/v1/health").get_json()
    assert body["workers"]["ok"] is True
    assert body["workers"]["unserved_queues"] == []
    # The suite's own worker says which queues it takes.
    assert any(set(seen["queues"]) == set(QUEUES) for seen in body["workers"]["seen"])
    # Times are ISO 8601 with an offset, as everywhere in the API.
    for seen in body["workers"]["seen"]:
        assert datetime.fromisoformat(seen["last_seen"]).utcoffset() is not None

    # From here health sees only this test's workers (read from Redis as ever): the suite's worker
    # keeps beating every 10 s and would be seen again between two lines.
    real = heartbeat.workers_seen
    monkeypatch.setattr(
        heartbeat, "workers_seen", lambda client: [w for w in real(client) if w["hostname"].endswith("@test")]
    )
    try:
        heartbeat.worker_beat(store, "background@test", ["background", "periodic", "deliveries"])
        body = tenant.admin.get("/api/v1/health").get_json()
        assert body["status"] == "degraded"
        assert body["workers"]["ok"] is False
        assert body["workers"]["count"] == 1
        assert body["workers"]["unserved_queues"] == [
            q for q in QUEUES if q not in ("background", "periodic", "deliveries")
        ]
        assert tenant.viewer.get("/api/v1/health").get_json()["workers"] == {"ok": False}

        heartbeat.worker_beat(store, "worker@test", [q for q in QUEUES if q != "background"])
        body = tenant.admin.get("/api/v1/health").get_json()
        assert body["workers"]["ok"] is True
        assert body["workers"]["unserved_queues"] == []

        # A worker that names no queues (an older one, mid-deploy) may take any: none is unserved.
        heartbeat.worker_gone(store, "worker@test")
        heartbeat.worker_beat(store, "older@test", [])
        body = tenant.admin.get("/api/v1/health").get_json()
        assert body["workers"]["count"] == 2
        assert body["workers"]["unserved_queues"] == []
    finally:
        for host in ("background@test", "worker@test", "older@test"):
            heartbeat.worker_gone(store, host)
