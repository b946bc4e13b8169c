"""How long finished jobs are kept: an import's rows until an hour after it finished, the job row
(and what hangs on it: its export row, a report run) for JOB_RETENTION_DAYS."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import text
from sqlalchemy.orm import Session

from webapp.core.vocabulary import FINAL_STATES

BATCH = 1000
# A finished import's rows serve nothing once an identical resubmission no longer joins it
# (submission.IMPORT_REPEAT_SECONDS) and nobody retries it: its row_count and report remain.
IMPORT_PAYLOAD_HOURS = 1

_STRIP = text(
    "UPDATE jobs SET params = params - 'rows' WHERE id IN ("
    " SELECT id FROM jobs WHERE kind = 'import' AND state = ANY(:final) AND finished_at < :before"
    " AND params ? 'rows' LIMIT :batch FOR UPDATE SKIP LOCKED)"
)
# A job whose export file is still served stays until the export expires (cleanup_exports).
_DELETE = text(
    "DELETE FROM jobs WHERE id IN ("
    " SELECT j.id FROM jobs j WHERE j.state = ANY(:final) AND j.finished_at < :before"
    " AND NOT EXISTS (SELECT 1 FROM exports x WHERE x.job_id = j.id AND x.deleted_at IS NULL)"
    " LIMIT :batch FOR UPDATE SKIP LOCKED)"
)


def purge(session: Session, *, now: datetime, retention_days: int) -> tuple[int, int]:
    """Strip finished imports' rows and delete finished jobs past their retention, in batches, each
    committed: (payloads stripped, jobs deleted)."""
    final = list(FINAL_STATES)
    counts = []
    for statement, before in (
        (_STRIP, now - timedelta(hours=IMPORT_PAYLOAD_HOURS)),
        (_DELETE, now - timedelta(days=retention_days)),
    ):
        total = 0
        while True:
            done = session.execute(statement, {"final": final, "before": before, "batch": BATCH}).rowcount
            session.commit()
            total += done
            if done < BATCH:
                break
        counts.append(total)
    return counts[0], counts[1]
