"""Idempotency-Key: a retry gets the first answer and writes nothing, whatever happened to the first."""

from __future__ import annotations

import threading
import uuid
from typing import Any

import pytest
from sqlalchemy import text

from tests.conftest import db_scalar
from webapp.api import tickets as tickets_view
from webapp.infra.db import get_session

OFFICE = [{"day": "mon", "start": "09:00", "end": "17:00"}]


def _key() -> dict[str, str]:
    return {"Idempotency-Key": str(uuid.uuid4())}


def _tickets(engine: Any, org_id: int, subject: str) -> int:
    return db_scalar(
        engine, "SELECT count(*) FROM tickets WHERE org_id = :o AND subject = :s", o=org_id, s=subject
    )


def test_a_retry_gets_the_first_answer_and_writes_nothing(tenant, db_session):
    key = _key()
    body = {"subject": "once", "priority": "high"}
    first = tenant.agent.post("/api/v1/tickets", json=body, headers=key)
    assert first.status_code == 201, first.get_json()
    assert "Idempotent-Replayed" not in first.headers
    again = tenant.agent.post("/api/v1/tickets", json=body, headers=key)
    assert again.status_code == 201
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.get_json() == first.get_json()
    assert again.headers["Location"] == first.headers["Location"]
    count = db_session.execute(
        text("SELECT count(*) FROM tickets WHERE org_id = :o AND subject = 'once'"), {"o": tenant.org_id}
    ).scalar()
    assert count == 1

    # The same key with another body is refused, and writes nothing either.
    other = tenant.agent.post("/api/v1/tickets", json={**body, "priority": "low"}, headers=key)
    assert other.status_code == 422
    assert other.get_json()["error"]["code"] == "idempotency_key_reused"
    # ... as on another route.
    elsewhere = tenant.admin.post(
        "/api/v1/schedules", json={"name": "S", "timezone": "UTC", "intervals": OFFICE}, headers=key
    )
    assert elsewhere.status_code == 201  # keys are per user: the admin's is another key
    # Without a key, every request writes.
    for _ in range(2):
        assert tenant.agent.post("/api/v1/tickets", json=body).status_code == 201
    count = db_session.execute(
        text("SELECT count(*) FROM tickets WHERE org_id = :o AND subject = 'once'"), {"o": tenant.org_id}
    ).scalar()
    assert count == 3


def test_a_retry_that_writes_the_same_json_otherwise_is_the_same_request(tenant, db_session):
    key = _key()
    first = tenant.agent.post(
        "/api/v1/tickets",
        data='{"subject": "reordered", "priority": "high", "category": "billing"}',
        content_type="application/json",
        headers=key,
    )
    assert first.status_code == 201, first.get_json()
    # Keys in another order, other spacing: the same object, so the first answer again.
    again = tenant.agent.post(
        "/api/v1/tickets",
        data='{"category":"billing","priority":"high","subject":"reordered"}',
        content_type="application/json",
        headers=key,
    )
    assert again.status_code == 201, again.get_json()
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.get_json() == first.get_json()
    # Another value is another request.
    swapped = tenant.agent.post(
        "/api/v1/tickets",
        data='{"category": "billing ", "priority": "high", "subject": "reordered"}',
        content_type="application/json",
        headers=key,
    )
    assert swapped.status_code == 422
    count = db_session.execute(
        text("SELECT count(*) FROM tickets WHERE org_id = :o AND subject = 'reordered'"), {"o": tenant.org_id}
    ).scalar()
    assert count == 1


@pytest.mark.parametrize("key", ["", "has space", "x" * 256, "tab\there", "ünï"])
def test_a_malformed_key_is_400(tenant, key):
    response = tenant.agent.post("/api/v1/tickets", json={"subject": "k"}, headers={"Idempotency-Key": key})
    assert response.status_code == 400
    assert response.get_json()["error"]["details"]["field"] == "Idempotency-Key"


def test_a_refused_request_keeps_nothing_under_its_key(tenant):
    key = _key()
    bad = tenant.agent.post("/api/v1/tickets", json={"subject": "r", "priority": "none"}, headers=key)
    assert bad.status_code == 400
    good = tenant.agent.post("/api/v1/tickets", json={"subject": "r", "priority": "none"}, headers=key)
    assert good.status_code == 400  # asked again, not replayed: nothing was kept
    assert "Idempotent-Replayed" not in good.headers


def test_a_write_whose_connection_died_after_its_commit_is_answered_on_retry(
    live_app, make_live_tenant, db_engine, monkeypatch
):
    """The commit went through, then the connection died: the client saw a 503 and retries."""
    tenant = make_live_tenant("Dropped")
    key = _key()
    body = {"subject": "dropped-after-commit"}
    original = tickets_view.after_ticket_change
    killed: list[int] = []

    def commit_then_lose_the_connection(session, *args, **kwargs):
        own = session.connection().connection.driver_connection.info.backend_pid
        with db_engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            assert conn.execute(text("SELECT pg_terminate_backend(:p)"), {"p": own}).scalar()
        killed.append(own)
        get_session().execute(text("SELECT 1"))  # the dead connection: the request fails here
        return original(session, *args, **kwargs)

    monkeypatch.setattr(tickets_view, "after_ticket_change", commit_then_lose_the_connection)
    first = tenant.agent.post("/api/v1/tickets", json=body, headers=key)
    assert killed
    assert first.status_code == 503, first.get_json()
    monkeypatch.setattr(tickets_view, "after_ticket_change", original)
    assert _tickets(db_engine, tenant.org_id, body["subject"]) == 1

    retry = tenant.agent.post("/api/v1/tickets", json=body, headers=key)
    assert retry.status_code == 201, retry.get_json()
    assert retry.headers["Idempotent-Replayed"] == "true"
    assert retry.get_json()["subject"] == body["subject"]
    assert _tickets(db_engine, tenant.org_id, body["subject"]) == 1
    stored = tenant.agent.get(retry.headers["Location"])
    assert stored.status_code == 200
    assert stored.get_json()["id"] == retry.get_json()["id"]


# Tickets hand their answer over before their commit; schedules store theirs in a second commit after
# a placeholder, which a racing retry must wait for rather than call lost.
RACED = {
    "tickets": ("agent", "/api/v1/tickets", {"subject": "raced"}, "tickets WHERE subject = 'raced'"),
    "schedules": (
        "admin",
        "/api/v1/schedules",
        {"name": "Raced", "timezone": "UTC", "intervals": OFFICE},
        "schedules WHERE name = 'Raced'",
    ),
}


@pytest.mark.parametrize("route", sorted(RACED))
def test_concurrent_requests_with_one_key_write_once(route, live_app, make_live_tenant, db_engine):
    role, path, body, rows = RACED[route]
    tenant = make_live_tenant("Racing")
    key = _key()
    answers: list[Any] = []
    start = threading.Barrier(10)

    def send() -> None:
        client = live_app.test_client()
        start.wait()
        answers.append(
            client.post(
                path, json=body, headers={**key, "Authorization": f"Bearer {tenant.users[role]['token']}"}
            )
        )

    threads = [threading.Thread(target=send) for _ in range(10)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert [a.status_code for a in answers] == [201] * 10, [a.get_json() for a in answers]
    assert len({a.get_json()["id"] for a in answers}) == 1
    assert sum(1 for a in answers if "Idempotent-Replayed" not in a.headers) == 1
    assert db_scalar(db_engine, f"SELECT count(*) FROM {rows} AND org_id = :o", o=tenant.org_id) == 1


def test_a_job_submission_is_answered_again_with_the_same_job(tenant, db_session):
    key = _key()
    rows = [{"subject": "imported once"}]
    first = tenant.agent.post("/api/v1/tickets/import", json=rows, headers=key)
    assert first.status_code == 202, first.get_json()
    again = tenant.agent.post("/api/v1/tickets/import", json=rows, headers=key)
    assert again.status_code == 202
    assert again.get_json() == first.get_json()
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.headers["Location"] == first.headers["Location"]
    jobs = db_session.execute(
        text("SELECT count(*) FROM jobs WHERE org_id = :o AND kind = 'import'"), {"o": tenant.org_id}
    ).scalar()
    assert jobs == 1
    other = tenant.agent.post("/api/v1/tickets/import", json=[{"subject": "other"}], headers=key)
    assert other.status_code == 422


def test_other_create_routes_replay_too(tenant, db_session):
    key = _key()
    body = {"name": "Office", "timezone": "UTC", "intervals": OFFICE}
    first = tenant.admin.post("/api/v1/schedules", json=body, headers=key)
    assert first.status_code == 201, first.get_json()
    again = tenant.admin.post("/api/v1/schedules", json=body, headers=key)
    assert again.status_code == 201
    assert again.get_json() == first.get_json()
    count = db_session.execute(
        text("SELECT count(*) FROM schedules WHERE org_id = :o"), {"o": tenant.org_id}
    ).scalar()
    assert count == 1


def test_a_key_is_kept_a_day(tenant, db_session):
    key = _key()
    body = {"subject": "a day"}
    assert tenant.agent.post("/api/v1/tickets", json=body, headers=key).status_code == 201
    expires = db_session.execute(
        text("SELECT expires_at - created_at FROM idempotency_keys WHERE key = :k"),
        {"k": key["Idempotency-Key"]},
    ).scalar()
    assert expires.total_seconds() == pytest.approx(24 * 3600, abs=5)
    db_session.execute(
        text("UPDATE idempotency_keys SET expires_at = now() - interval '1 second' WHERE key = :k"),
        {"k": key["Idempotency-Key"]},
    )
    db_session.commit()
    # Past its day the key names nothing: the request is carried out again.
    again = tenant.agent.post("/api/v1/tickets", json=body, headers=key)
    assert again.status_code == 201
    assert "Idempotent-Replayed" not in again.headers


def test_the_document_names_the_header_on_every_create_route(client):
    spec = client.get("/api/v1/openapi.json").get_json()
    keyed = {
        (method.upper(), path)
        for path, item in spec["paths"].items()
        for method, op in item.items()
        if any(p["name"] == "Idempotency-Key" and p["in"] == "header" for p in op["parameters"])
    }
    assert {
        ("POST", "/api/v1/tickets"),
        ("POST", "/api/v1/tickets/import"),
        ("POST", "/api/v1/analytics/export"),
        ("POST", "/api/v1/analytics/snapshots"),
        ("POST", "/api/v1/analytics/refresh-cache"),
        ("POST", "/api/v1/schedules"),
        ("POST", "/api/v1/alerts"),
        ("POST", "/api/v1/webhooks"),
        ("POST", "/api/v1/report-schedules"),
        ("POST", "/api/v1/users"),
    } <= keyed
    for method, path in keyed:
        assert {"409", "422"} <= set(spec["paths"][path][method.lower()]["responses"]), (method, path)


def test_a_reply_is_added_once(tenant, db_session):
    ticket = tenant.agent.post("/api/v1/tickets", json={"subject": "replied"}).get_json()
    key = _key()
    body = {"author": "agent"}
    first = tenant.agent.post(f"/api/v1/tickets/{ticket['id']}/replies", json=body, headers=key)
    assert first.status_code == 201, first.get_json()
    again = tenant.agent.post(f"/api/v1/tickets/{ticket['id']}/replies", json=body, headers=key)
    assert again.status_code == 201
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.get_json() == first.get_json()
    assert first.get_json()["ticket"]["id"] == ticket["id"]
    count = db_session.execute(
        text("SELECT count(*) FROM ticket_replies WHERE ticket_id = :t"), {"t": ticket["id"]}
    ).scalar()
    assert count == 1
