"""Room for another export: the organization's stored bytes under EXPORT_QUOTA_BYTES and its queued or
running exports under EXPORT_MAX_ACTIVE_PER_ORG. Every path that makes an export file asks here first:
a request, a report's manual run and beat's scheduled runs."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy.orm import Session

from webapp.exports.records import stored_bytes

# How long a refused client is told to wait: a running export ends in seconds, files expire in hours.
ACTIVE_RETRY_AFTER = 10
QUOTA_RETRY_AFTER = 3600


@dataclass(frozen=True)
class ExportLimits:
    quota_bytes: int
    max_active: int

    @classmethod
    def from_settings(cls, settings: dict[str, int]) -> ExportLimits:
        return cls(settings["EXPORT_QUOTA_BYTES"], settings["EXPORT_MAX_ACTIVE_PER_ORG"])


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
    stored = stored_bytes(session, org_id, now)
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
