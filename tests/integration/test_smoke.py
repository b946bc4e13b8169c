def test_health_answers(client):
    response = client.get("/api/v1/health")
    assert response.status_code == 200
    body = response.get_json()
    assert body["database"]["ok"] is True
    assert body["redis"]["ok"] is True


def test_health_is_degraded_without_a_worker_or_with_a_silent_beat(client, services):
    from datetime import UTC, datetime, timedelta

    import redis

    from webapp.infra import heartbeat

    store = redis.Redis.from_url(services.redis_url)
    saved_workers = store.zrange(heartbeat.WORKERS_KEY, 0, -1, withscores=True)
    saved_beat = store.get(heartbeat.BEAT_KEY)
    try:
        store.delete(heartbeat.WORKERS_KEY)
        store.set(heartbeat.BEAT_KEY, datetime.now(UTC).isoformat())
        body = client.get("/api/v1/health").get_json()
        assert (body["status"], body["workers"]["ok"], body["beat"]["ok"]) == ("degraded", False, True)

        heartbeat.worker_beat(store, "health-test@localhost")
        store.set(heartbeat.BEAT_KEY, (datetime.now(UTC) - timedelta(minutes=3)).isoformat())
        body = client.get("/api/v1/health").get_json()
        assert (body["status"], body["workers"]["ok"], body["beat"]["ok"]) == ("degraded", True, False)

        heartbeat.beat_ran(store)
        assert client.get("/api/v1/health").get_json()["status"] == "ok"
    finally:
        store.zrem(heartbeat.WORKERS_KEY, "health-test@localhost")
        if saved_workers:
            store.zadd(heartbeat.WORKERS_KEY, dict(saved_workers))
        if saved_beat is not None:
            store.set(heartbeat.BEAT_KEY, saved_beat)
