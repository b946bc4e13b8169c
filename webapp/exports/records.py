"""The export rows: one per job's file, found again by job, by id, and checked before a download."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from pathlib import Path

from sqlalchemy import func, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from webapp.exports.files import Written, discard, write_export
from webapp.exports.progress import Report
from webapp.exports.spec import ExportSpec
from webapp.models.jobs import Export


def record(
    session: Session, written: Written, *, job_id: uuid.UUID, org_id: int, retention_days: int, now: datetime
) -> Export:
    """The export row of the job (inserted, or updated by a rerun of the same job)."""
    values = {
        "format": written.format,
        "path": str(written.path),
        "filename": written.filename,
        "rows": written.rows,
        "bytes": written.bytes,
        "sha256": written.sha256,
        "expires_at": now + timedelta(days=retention_days),
        "deleted_at": None,
    }
    statement = (
        insert(Export)
        .values(id=uuid.uuid4(), job_id=job_id, org_id=org_id, **values)
        .on_conflict_do_update(index_elements=[Export.job_id], set_=values)
        .returning(Export.id)
    )
    export_id = session.execute(statement).scalar_one()
    export = session.get(Export, export_id, populate_existing=True)
    assert export is not None
    return export


def produce(
    session: Session,
    *,
    job_id: uuid.UUID,
    org_id: int,
    spec: ExportSpec,
    directory: Path,
    retention_days: int,
    now: datetime,
    report: Report | None = None,
) -> Export:
    """Write job `job_id`'s export file (see write_export) and its row, kept `retention_days`."""
    written = write_export(
        session, org_id=org_id, job_id=job_id, spec=spec, directory=directory, now=now, report=report
    )
    return record(session, written, job_id=job_id, org_id=org_id, retention_days=retention_days, now=now)


def find(session: Session, *, job_id: uuid.UUID) -> Export | None:
    """The live export of a job whose file is still there, if any (a redelivered job reuses it)."""
    export = session.scalar(select(Export).where(Export.job_id == job_id, Export.deleted_at.is_(None)))
    if export is None or not Path(export.path).is_file():
        return None
    return export


def get(session: Session, *, org_id: int, export_id: str, lock: bool = False) -> Export | None:
    """Export `export_id` of `org_id`, or None (also for ids that are not UUIDs); `lock` takes its row
    lock until the transaction ends."""
    try:
        key = uuid.UUID(export_id)
    except ValueError:
        return None
    query = select(Export).where(Export.id == key, Export.org_id == org_id)
    return session.scalar(query.with_for_update() if lock else query)


def remove(session: Session, export: Export, directory: Path) -> None:
    """Delete the export's row and commit, then its file: from then on the export is unknown (404),
    to its links too.

    The row goes first: a download that found it may still be sending the file (an open file
    outlives its unlink), one that comes after finds nothing.
    """
    org_id, job_id, fmt = export.org_id, export.job_id, export.format
    session.delete(export)
    session.commit()
    discard(directory, org_id, job_id, fmt)


def is_available(export: Export, directory: Path, now: datetime) -> bool:
    """Whether the file can still be served: not past retention, not deleted, present under `directory`."""
    if export.deleted_at is not None or export.expires_at <= now:
        return False
    path = Path(export.path).resolve()
    return path.is_relative_to(directory.resolve()) and path.is_file()


def stored_bytes(session: Session, org_id: int, now: datetime) -> int:
    """The bytes of the organization's export files still kept (not deleted, not expired)."""
    total = session.scalar(
        select(func.coalesce(func.sum(Export.bytes), 0)).where(
            Export.org_id == org_id, Export.deleted_at.is_(None), Export.expires_at > now
        )
    )
    return int(total or 0)
