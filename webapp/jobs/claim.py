"""A worker's claim of a job: its organization's share slot, its run lock and its start, in one statement.

At most JOB_MAX_RUNNING_PER_ORG jobs of one organization run at once. A running job holds one of its
organization's share slots: a session advisory lock (org_id, -1 - i) on the connection that holds its
run lock (a session advisory lock on recovery.run_lock_key), which is the worker's state connection.
A dead worker's slot and run lock go with its connection, and two deliveries cannot both take the last
slot: the lock decides, not a count each read before either ran. (Submissions lock (org_id, n) with
n >= 0, so the keys never meet.) `job_claim(...)` (PL/pgSQL, migration 0016) takes both and starts
the job in one round trip.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from dataclasses import dataclass

from sqlalchemy import bindparam, text
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.engine import Connection
from sqlalchemy.types import DateTime, String, Uuid

from webapp.core.timeutil import utcnow
from webapp.core.vocabulary import ACTIVE_STATES
from webapp.jobs.transitions import loaded_job
from webapp.models import Job


def running_share(configured: int | None, slots: int | None) -> int:
    """Jobs one organization may run at once: JOB_MAX_RUNNING_PER_ORG when set, else half of the
    worker's `slots` (see worker_slots), at least one, so that one organization's flood always leaves
    slots to the others (the Procfile's worker of 2 keeps 1)."""
    if configured:
        return configured
    return max(1, (slots or 1) // 2)


def worker_slots(worker: object, configured: object = None) -> int:
    """The most pool processes a starting worker runs: the maximum of --autoscale when given, else
    --concurrency (or the configured one), a number or "auto" (the CPUs), as Celery reads them."""
    options = getattr(worker, "options", None) or {}
    autoscale = options.get("autoscale") if isinstance(options, dict) else None
    if autoscale:
        most = autoscale.partition(",")[0] if isinstance(autoscale, str) else autoscale[0]
        with contextlib.suppress(TypeError, ValueError):
            return max(1, int(most))
    for value in (getattr(worker, "concurrency", None), configured):
        with contextlib.suppress(TypeError, ValueError):
            if value:
                return max(1, int(value))  # type: ignore[call-overload]
    return os.cpu_count() or 1


@dataclass(frozen=True)
class Claim:
    """What a delivery got: whether it holds the run lock, whether the job waits for a slot (nothing
    held then), the job's organization (None for an unknown job), the share slot held if any, and the
    job if it started."""

    held: bool
    waits: bool
    org_id: int | None
    slot: int | None
    started: Job | None


_CLAIM = text(
    "SELECT c.held, c.waits, c.org_id AS slot_org_id, c.slot, (c.job).* "
    "FROM job_claim(:id, :lock_key, :slots, :now, :active_states, :max_attempts) AS c"
).bindparams(
    bindparam("id", type_=Uuid()),
    bindparam("now", type_=DateTime(timezone=True)),
    bindparam("active_states", type_=ARRAY(String())),
)


def claim(conn: Connection, job_id: uuid.UUID, *, lock_key: int, slots: int, max_attempts: int) -> Claim:
    """On `conn` (an autocommit connection): for a queued job, one of its organization's `slots` share
    slots; then the run lock `lock_key`; then the job's start, when it is active, no cancel was asked
    for and fewer than `max_attempts` attempts were made.

    A queued job whose organization holds every slot waits (its wait written to updated_at; nothing
    held). Without the run lock (another delivery runs the job) no slot is kept either. A job that
    could not start with the lock taken (unknown, final, cancel asked for, out of attempts) comes
    back as None: the caller looks at it with the lock held. The started job is detached, its
    attributes (parameters included) loaded.
    """
    row = conn.execute(
        _CLAIM,
        {
            "id": job_id,
            "lock_key": lock_key,
            "slots": slots,
            "now": utcnow(),
            "active_states": list(ACTIVE_STATES),
            "max_attempts": max_attempts,
        },
    ).one()
    values = dict(row._mapping)
    held, waits = bool(values.pop("held")), bool(values.pop("waits"))
    org_id, slot = values.pop("slot_org_id"), values.pop("slot")
    started = loaded_job(values) if held and values["id"] is not None else None
    return Claim(held, waits, org_id, slot, started)


@dataclass(frozen=True)
class Waiting:
    """A queued job of an organization whose delivery found every share slot held (it waits)."""

    id: uuid.UUID
    kind: str


_RELEASE = text("SELECT pg_advisory_unlock(:lock_key)")
# With the slot: both locks given back, and the organization's next job that has waited for a slot
# (its wait written to updated_at by job_claim), in the same statement: the oldest a user asked for,
# else the oldest the platform asked for itself (created_by NULL: beat's snapshots, recomputed
# snapshots, cache refreshes and scheduled report runs; also the jobs of a user since deleted). A
# backfill import leaves hundreds of stale snapshots to recompute; oldest first, a user's next job
# waited behind all of them (36 s seen). The organization's queued jobs are read from the partial
# index ix_jobs_org_queued and sorted (its caps keep them few, but for beat's).
_RELEASE_WITH_SLOT = text(
    "SELECT pg_advisory_unlock(:lock_key), "
    "pg_advisory_unlock(CAST(:org_id AS integer), -1 - CAST(:slot AS integer)), w.id, w.kind "
    "FROM (SELECT 1) AS one LEFT JOIN LATERAL ("
    " SELECT j.id, j.kind FROM jobs j WHERE j.org_id = :org_id AND j.state = 'queued'"
    " AND NOT j.cancel_requested AND j.updated_at > j.created_at AND j.id <> :job_id"
    " ORDER BY j.created_by IS NULL, j.created_at, j.id LIMIT 1) AS w ON true"
).bindparams(bindparam("job_id", type_=Uuid()))


def release(conn: Connection, taken: Claim, lock_key: int, job_id: uuid.UUID | None = None) -> Waiting | None:
    """Give back the run lock and slot `taken` holds on `conn`, in one statement (ending the connection
    gives them back too). A claim without the run lock holds nothing.

    With a slot given back: the organization's next job (other than `job_id`) waiting for one, if
    any, to be sent again now rather than when its own delivery asks again: the oldest of its users'
    jobs, else its oldest job the platform asked for itself.
    """
    if not taken.held:
        return None
    if taken.slot is None:
        conn.execute(_RELEASE, {"lock_key": lock_key})
        return None
    row = conn.execute(
        _RELEASE_WITH_SLOT,
        {"lock_key": lock_key, "org_id": taken.org_id, "slot": taken.slot, "job_id": job_id or _NO_JOB},
    ).one()
    return None if row.id is None else Waiting(row.id, row.kind)


_NO_JOB = uuid.UUID(int=0)
