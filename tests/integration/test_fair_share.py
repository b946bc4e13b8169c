"""One organization's flood of jobs leaves worker slots to the others: on the suite's worker of 2 slots
(JOB_MAX_RUNNING_PER_ORG unset: half of them), the flooding organization never runs two jobs at once,
and another organization's small job runs while the flood is still queued."""

from __future__ import annotations

import itertools
import os
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tests.conftest import wait_for_job
from webapp.jobs import claim

pytestmark = pytest.mark.worker

FLOOD = 4
ROWS = 4_000


def _rows(tag: str, n: int) -> list[dict[str, Any]]:
    start = datetime(2026, 9, 1, tzinfo=UTC)
    return [
        {
            "subject": f"{tag} {i}",
            "priority": ("low", "normal", "high", "urgent")[i % 4],
            "created_at": (start + timedelta(minutes=7 * i)).isoformat(),
            "replies": [{"author": "agent", "at": (start + timedelta(minutes=7 * i + 30)).isoformat()}],
        }
        for i in range(n)
    ]


def test_the_share_is_half_the_slots_unless_set():
    assert [claim.running_share(None, slots) for slots in (None, 1, 2, 3, 8)] == [1, 1, 1, 1, 4]
    assert claim.running_share(3, 2) == 3


def test_a_flood_of_one_organization_leaves_a_slot_to_another(celery_worker, make_live_tenant):
    flooding, other = make_live_tenant("Flood"), make_live_tenant("Small")
    flood = []
    for n in range(FLOOD):
        answer = flooding.agent.post("/api/v1/tickets/import", json=_rows(f"flood{n}", ROWS))
        assert answer.status_code == 202, answer.get_json()
        flood.append(answer.get_json()["job_id"])
    small = other.agent.post("/api/v1/tickets/import", json=_rows("small", 1))
    assert small.status_code == 202, small.get_json()

    done = wait_for_job(other.agent, small.get_json()["job_id"], timeout=120)
    flooded = [wait_for_job(flooding.agent, job, timeout=240) for job in flood]
    assert done["state"] == "succeeded", done
    assert [job["state"] for job in flooded] == ["succeeded"] * FLOOD

    spans = sorted(
        (datetime.fromisoformat(job["started_at"]), datetime.fromisoformat(job["finished_at"]))
        for job in flooded
    )
    # One at a time: each of the flood's jobs started after the one before it ended.
    assert all(later[0] >= earlier[1] for earlier, later in itertools.pairwise(spans)), spans
    # The small job did not wait for the flood to drain.
    assert datetime.fromisoformat(done["finished_at"]) < spans[-1][0], (done, spans)


def test_a_worker_counts_its_slots_as_celery_reads_its_options():
    from types import SimpleNamespace

    def worker(concurrency=None, **options):
        return SimpleNamespace(concurrency=concurrency, options=options)

    assert claim.worker_slots(worker(2)) == 2
    assert claim.worker_slots(worker(8, autoscale="4,1")) == 4  # the autoscale maximum, not --concurrency
    assert claim.worker_slots(worker(2, autoscale=[16, 2])) == 16
    assert claim.worker_slots(worker(None), configured=3) == 3
    assert claim.worker_slots(worker("auto")) == (os.cpu_count() or 1)
    assert claim.worker_slots(worker("6")) == 6
