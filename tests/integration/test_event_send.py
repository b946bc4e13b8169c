"""An event sent with its reply read later (events.send) lands in the stream as publish's does, ahead
of anything sent after it on another connection, and leaves no connection behind when Redis is away."""

from __future__ import annotations

import redis

from webapp.live import events


def test_a_sent_event_precedes_what_is_published_after_it(services):
    client = redis.Redis.from_url(services.redis_url)
    org_id = 91_001
    client.delete(events.stream_key(org_id))
    sent = events.send(client, org_id, "job_update", {"job_id": "a", "state": "queued"})
    # Sent on another connection while the first reply is unread (the broker's send, in a submission).
    client.lpush("an:test:elsewhere", b"x")
    later = events.publish(client, org_id, "job_update", {"job_id": "a", "state": "running"})
    first = sent.done()
    assert first is not None
    assert later is not None
    stream = events.read_since(client, org_id, "0-0")
    assert [(e["id"], e["data"]["state"]) for e in stream] == [(first, "queued"), (later, "running")]
    assert stream[0]["type"] == "job_update"
    assert stream[0]["organization_id"] == org_id
    assert sent.done() is None  # read once
    assert len(client.connection_pool._in_use_connections) == 0
    client.delete(events.stream_key(org_id), "an:test:elsewhere")


def test_a_send_to_a_redis_that_is_away_is_none_and_holds_no_connection():
    client = redis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.2)
    sent = events.send(client, 1, "job_update", {"state": "queued"})
    assert sent.done() is None
    assert len(client.connection_pool._in_use_connections) == 0


def test_a_send_on_a_connection_the_server_dropped_goes_out_on_a_fresh_one(services):
    client = redis.Redis.from_url(services.redis_url)
    org_id = 91_002
    client.delete(events.stream_key(org_id))
    client.ping()
    # The server drops the pooled connection (as a restart would): killed from another client.
    conn = client.connection_pool.get_connection()
    conn.send_command("CLIENT", "ID")
    client_id = conn.read_response()
    client.connection_pool.release(conn)
    assert redis.Redis.from_url(services.redis_url).client_kill_filter(_id=client_id) == 1
    sent = events.send(client, org_id, "job_update", {"state": "queued"})
    event_id = sent.done()
    assert event_id is not None
    assert [e["id"] for e in events.read_since(client, org_id, "0-0")] == [event_id]
    assert len(client.connection_pool._in_use_connections) == 0
    client.delete(events.stream_key(org_id))
