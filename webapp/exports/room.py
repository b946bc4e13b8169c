"""Room for another export: the organization's stored bytes under EXPORT_QUOTA_BYTES and its queued or
running exports under EXPORT_MAX_ACTIVE_PER_ORG. Every path that makes an export file asks here first:
a request, a report's manual run and beat's scheduled runs."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import and_, exists, func, select
from sqlalchemy.orm import Session

from webapp.core.vocabulary import ACTIVE_STATES
from webapp.exports.records import stored_bytes
from webapp.jobs.submission import REUSABLE_STATE
from webapp.models import Export, Job

# How long a refused client is told to wait: a running export ends in seconds, files expire in hours.
ACTIVE_RETRY_AFTER = 10
QUOTA_RETRY_AFTER = 3600


@dataclass(frozen=True)
class ExportLimits:
    quota_bytes: int
    max_active: int
    # The cells of the analytics answer one export may write (ANALYTICS_MAX_CELLS).
    max_cells: int

    @classmethod
    def from_settings(cls, settings: dict[str, int]) -> ExportLimits:
        return cls(
            settings["EXPORT_QUOTA_BYTES"],
            settings["EXPORT_MAX_ACTIVE_PER_ORG"],
            settings["ANALYTICS_MAX_CELLS"],
        )


@dataclass
class NoRoom(Exception):
    """Another export now would break a limit: the words, a stable code, details and the wait."""

    message: str
    code: str
    retry_after: int
    details: dict[str, int] = field(default_factory=dict)

    def __str__(self) -> str:
        return self.message


def check_quota(session: Session, org_id: int, limits: ExportLimits, now: datetime) -> None:
    """NoRoom while the organization's export files hold the quota or more (files are never removed
    early to make room: one being downloaded stays until it expires or is deleted)."""
    check_stored(stored_bytes(session, org_id, now), limits)


def check_stored(stored: int, limits: ExportLimits) -> None:
    """NoRoom when `stored` bytes of export files reach the quota."""
    if stored < limits.quota_bytes:
        return
    raise NoRoom(
        f"the organization's export files hold {stored} bytes, the quota of {limits.quota_bytes} "
        "(EXPORT_QUOTA_BYTES); delete exports or wait for them to expire",
        "export_quota_exceeded",
        QUOTA_RETRY_AFTER,
        {"quota_bytes": limits.quota_bytes, "stored_bytes": stored, "retry_after": QUOTA_RETRY_AFTER},
    )


def check_active(active: int, limits: ExportLimits) -> None:
    """NoRoom when `active` exports (queued or running) already reach the cap."""
    if active < limits.max_active:
        return
    raise NoRoom(
        f"the organization already has {active} exports queued or running, the limit of "
        f"{limits.max_active} (EXPORT_MAX_ACTIVE_PER_ORG); retry once one has finished",
        "too_many_active_exports",
        ACTIVE_RETRY_AFTER,
        {"limit": limits.max_active, "active": active, "retry_after": ACTIVE_RETRY_AFTER},
    )


@dataclass(frozen=True)
class Occupancy:
    """What an organization's exports hold at one snapshot: stored bytes, queued or running export
    jobs, and whether a queued one is identical to the request at hand."""

    stored_bytes: int
    active: int
    identical_active: bool


def occupancy(session: Session, org_id: int, now: datetime, digest: str | None = None) -> Occupancy:
    """Occupancy in one statement, with no lock: the cheap first look of `refuse_if_full`."""
    active_export = and_(Job.org_id == org_id, Job.kind == "export", Job.state.in_(ACTIVE_STATES))
    stored = (
        select(func.coalesce(func.sum(Export.bytes), 0))
        .where(Export.org_id == org_id, Export.deleted_at.is_(None), Export.expires_at > now)
        .scalar_subquery()
    )
    active = select(func.count()).select_from(Job).where(active_export).scalar_subquery()
    # Only a queued identical export answers the request, as job_submit reuses one.
    identical = exists().where(active_export, Job.state == REUSABLE_STATE, Job.params_hash == (digest or ""))
    row = session.execute(select(stored, active, identical)).one()
    return Occupancy(int(row[0]), int(row[1]), bool(row[2]) and digest is not None)


def refuse_if_full(
    session: Session, org_id: int, limits: ExportLimits, now: datetime, digest: str | None = None
) -> None:
    """NoRoom at once when the organization's exports are already full (one statement, no lock), so a
    flood of refused requests costs one look each and never queues behind the cap's lock. An
    identical queued export (`digest`) is not refused: the request is answered with that job.

    Room seen here is not a promise: the caller still counts under the lock before it adds a job.
    """
    seen = occupancy(session, org_id, now, digest)
    check_stored(seen.stored_bytes, limits)
    if not seen.identical_active:
        check_active(seen.active, limits)
