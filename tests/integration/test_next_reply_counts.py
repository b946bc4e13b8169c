"""next_reply compliance of GET /analytics/performance, counted from the replies in one statement,
against each ticket's own GET /tickets/{id}/sla (clocks.evaluation, one ticket at a time): the same
state for every ticket, those without a pair (achieved) included, on the calendar and on a
business schedule, overall, by priority and per group.

Replies come in random orders: customers writing before any agent reply, several customer replies
in a row (one pair only), private replies (no clock), replies sharing an instant (ordered by id),
and pairs still waiting for their agent reply.
"""

from __future__ import annotations

import random
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tests.integration.test_business_clock import schedule_body
from tests.integration.test_sla_compliance_writes import _iso, performance_sla

PRIORITIES = ("low", "normal", "high", "urgent")
TARGETS = {
    "urgent": {"first_reply_hours": 1, "next_reply_hours": 0.5, "resolution_hours": 8},
    "high": {"first_reply_hours": 2, "next_reply_hours": 1, "resolution_hours": 16},
    "normal": {"first_reply_hours": 4, "next_reply_hours": 3, "resolution_hours": 24},
    "low": {"first_reply_hours": None, "next_reply_hours": None, "resolution_hours": 40},
}
OUTCOME = {"achieved": "achieved", "breached": "breached", "active": "pending"}


def _write(tenant: Any, rng: random.Random, now: datetime) -> list[int]:
    ids = []
    for _ in range(45):
        created = now - timedelta(minutes=rng.randint(60, 60 * 60))
        body = {
            "subject": "replies",
            "priority": rng.choice(PRIORITIES),
            "channel": rng.choice(("email", "chat")),
            "assigned_to": rng.choice(("ana", "ben", None)),
            "created_at": _iso(created),
        }
        made = tenant.agent.post("/api/v1/tickets", json=body)
        assert made.status_code == 201, made.get_json()
        ticket = made.get_json()["id"]
        ids.append(ticket)
        at = created
        for _ in range(rng.randint(0, 8)):
            if rng.random() > 0.2:  # else the same instant as the reply before
                at = min(at + timedelta(minutes=rng.randint(1, 300)), now - timedelta(seconds=1))
            reply = {
                "author": rng.choice(("agent", "customer")),
                "at": _iso(at),
                "public": rng.random() < 0.85,
            }
            posted = tenant.agent.post(f"/api/v1/tickets/{ticket}/replies", json=reply)
            assert posted.status_code == 201, posted.get_json()
    return ids


def _expected(tenant: Any, ids: list[int], field: str) -> dict[tuple[str, str | None], Counter]:
    """Per (priority or field, value) and overall (None, None): next_reply outcomes of every ticket
    whose priority has the target, as each ticket's own evaluation states them."""
    out: dict[tuple[str, str | None], Counter] = {}
    for ticket_id in ids:
        ticket = tenant.viewer.get(f"/api/v1/tickets/{ticket_id}").get_json()
        own = tenant.viewer.get(f"/api/v1/tickets/{ticket_id}/sla").get_json()
        for target in own["targets"]:
            if target["metric"] != "next_reply":
                continue
            if not target["pairs"]:
                assert target["state"] == "achieved", target
            outcome = OUTCOME[target["state"]]
            for key in ((None, None), ("priority", ticket["priority"]), (field, ticket[field])):
                out.setdefault(key, Counter())[outcome] += 1
    return out


def _counted(part: dict[str, Any]) -> Counter:
    return Counter({v: part[v] for v in ("achieved", "breached", "pending") if part[v]})


@pytest.mark.parametrize("clock", ["calendar", "business"])
def test_next_reply_counts_agree_with_each_tickets_evaluation(tenant, clock):
    schedule_id = None
    if clock == "business":
        schedule_id = tenant.admin.post("/api/v1/schedules", json=schedule_body()).get_json()["id"]
    policy = {"schedule_id": schedule_id, "pause_statuses": ["on_hold"], "targets": TARGETS}
    assert tenant.admin.put("/api/v1/sla-policy", json=policy).status_code == 200
    now = datetime.now(UTC)
    ids = _write(tenant, random.Random(17), now)
    sla = performance_sla(tenant, now - timedelta(days=4), now + timedelta(hours=1), "assigned_to")
    expected = _expected(tenant, ids, "assigned_to")

    assert _counted(sla["overall"]["next_reply"]) == expected[None, None]
    assert sla["next_reply"] == sla["overall"]["next_reply"]
    for priority in PRIORITIES:
        got = _counted(sla["by_priority"][priority]["next_reply"])
        assert got == expected.get(("priority", priority), Counter()), priority
    for group in sla["groups"]:
        agent = group["group"]["assigned_to"]
        assert _counted(group["next_reply"]) == expected.get(("assigned_to", agent), Counter()), agent
    # Every outcome occurs, and every ticket of a measured priority counts, with a pair or not.
    assert set(expected[None, None]) == {"achieved", "breached", "pending"}
    measured = [t for t in ids if tenant.viewer.get(f"/api/v1/tickets/{t}").get_json()["priority"] != "low"]
    assert sum(expected[None, None].values()) == len(measured)
