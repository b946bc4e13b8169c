"""Changes of one ticket sent at the same time are made one after another: the events written
always agree with the ticket stored."""

from __future__ import annotations

import threading

from sqlalchemy import text

from tests.conftest import Api


def test_concurrent_status_flips_leave_events_that_match_the_ticket(live_app, make_live_tenant):
    tenant = make_live_tenant("Concurrent")
    token = tenant.users["agent"]["token"]
    ticket = tenant.agent.post("/api/v1/tickets", json={"subject": "flip"}).get_json()
    statuses: list[int] = []
    lock = threading.Lock()

    def flip(worker: int) -> None:
        api = Api(live_app.test_client(), token)
        for n in range(10):
            status = "resolved" if (worker + n) % 2 else "open"
            answer = api.patch(f"/api/v1/tickets/{ticket['id']}", json={"status": status})
            with lock:
                statuses.append(answer.status_code)

    threads = [threading.Thread(target=flip, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert set(statuses) == {200}

    stored = tenant.viewer.get(f"/api/v1/tickets/{ticket['id']}").get_json()
    with live_app.extensions["db_engine"].connect() as conn:
        counts = dict(
            conn.execute(
                text(
                    "SELECT event_type, count(*) FROM ticket_events WHERE ticket_id = :id GROUP BY event_type"
                ),
                {"id": ticket["id"]},
            ).all()
        )
    resolved_now = stored["status"] == "resolved"
    # Every resolution but the current one was undone by a reopen.
    assert counts.get("resolved", 0) == stored["reopen_count"] + resolved_now
    assert counts.get("reopened", 0) == stored["reopen_count"]
