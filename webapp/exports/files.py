"""Export files: written to a temporary name with their size and sha256, then renamed into place."""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import uuid
from collections.abc import Generator
from contextlib import closing
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from sqlalchemy.orm import Session

from webapp.exports.encoders import Block, stream
from webapp.exports.progress import Progress, Report
from webapp.exports.spec import ExportSpec
from webapp.exports.tables import open_table
from webapp.exports.xlsx import XLSX_SHEET_ROWS, write_xlsx


@dataclass(frozen=True)
class Written:
    """An export file in its final place."""

    path: Path
    filename: str
    format: str
    rows: int
    bytes: int
    sha256: str


def file_paths(directory: Path, org_id: int, job_id: uuid.UUID | str, fmt: str) -> tuple[Path, Path]:
    """(final, temporary) paths of a job's export: named by the job, so a rerun replaces, never duplicates."""
    folder = directory / str(org_id)
    return folder / f"{job_id}.{fmt}", folder / f".{job_id}.{fmt}.part"


def _digest_and_sync(path: Path) -> tuple[int, str]:
    """Size and sha256 of a file another library wrote, flushed to disk."""
    sha = hashlib.sha256()
    size = 0
    with path.open("rb") as handle:
        while block := handle.read(1024 * 1024):
            sha.update(block)
            size += len(block)
        os.fsync(handle.fileno())
    return size, sha.hexdigest()


def _write_blocks(path: Path, blocks: Generator[Block, None, None]) -> tuple[int, str]:
    """Write `blocks` to a new file at `path`, hashing each on its way: size and sha256, the file on disk."""
    sha = hashlib.sha256()
    size = 0
    # Unbuffered: each block goes to the kernel as it is, with no copy into a file buffer first.
    with closing(blocks), path.open("wb", buffering=0) as out:  # a failed write stops the COPY at once
        for block in blocks:
            sha.update(block)
            size += _write_all(out, block)
        # The file must be on disk before the rename publishes it (and its sha256).
        os.fsync(out.fileno())
    return size, sha.hexdigest()


def _write_all(out: io.FileIO, block: Block) -> int:
    """Write the whole of `block` (a raw write may take only part of it)."""
    written = 0
    with memoryview(block) as view:
        while written < len(view):
            written += out.write(view[written:])
    return written


def write_export(
    session: Session,
    *,
    org_id: int,
    job_id: uuid.UUID | str,
    spec: ExportSpec,
    directory: Path,
    now: datetime,
    report: Report | None = None,
    sheet_rows: int = XLSX_SHEET_ROWS,
) -> Written:
    """Write the export `spec` to a temporary file, then rename it into place.

    `report(rows, total)` is called at least twice a second and once more just before the rename, so
    a cancel it raises leaves no file behind; `total` is exact in that last call. The session must be
    outside a transaction (see open_table).
    """
    fmt = spec.format
    final, part = file_paths(directory, org_id, job_id, fmt)
    final.parent.mkdir(parents=True, exist_ok=True)
    # CSV and JSON count their rows as they stream, so a count first would only add a scan of them
    # (at 1M rows ~0.15 s before a ~1.6 s COPY). XLSX keeps it: exact progress for the slow format,
    # at a cost lost beside XlsxWriter's.
    table = open_table(session, org_id=org_id, query=spec.query, count=fmt == "xlsx")
    progress = Progress(table.total, report, exact=table.exact)
    progress.checkpoint()
    try:
        if fmt == "xlsx":
            rows = write_xlsx(
                table,
                part,
                progress,
                metadata=spec.describe(now),
                sheet_rows=sheet_rows,
                tmpdir=part.parent,
            )
            size, sha256 = _digest_and_sync(part)
        else:
            size, sha256 = _write_blocks(part, stream(fmt, table, progress))
            rows = progress.rows
        session.commit()  # ends the snapshot: nothing more is read
        progress.finish()
        progress.checkpoint()
        os.replace(part, final)
    except BaseException:
        part.unlink(missing_ok=True)
        raise
    _fsync_directory(final.parent)
    return Written(final, spec.filename(now), fmt, rows, size, sha256)


def _fsync_directory(folder: Path) -> None:
    # The rename is durable only once the directory entry is on disk.
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def discard(directory: Path, org_id: int, job_id: uuid.UUID | str, fmt: str) -> None:
    """Remove whatever a job wrote (after a cancel or a failure)."""
    for path in file_paths(directory, org_id, job_id, fmt):
        path.unlink(missing_ok=True)


# What killed export writers left is deleted once at least this old (and twice the task time limit).
SCRATCH_MIN_AGE = timedelta(hours=6)


def remove_scratch(directory: Path, older_than: datetime) -> int:
    """Delete what killed writers left under `directory` and last changed before `older_than`: the
    temporary files of exports (`.<job>.<fmt>.part`) and the XLSX writer's scratch folders
    (`.xlsx-*`), which no export row names. How many were deleted."""
    if not directory.is_dir():
        return 0
    cutoff = older_than.timestamp()
    removed = 0
    for path in list(directory.rglob(".*")):
        try:
            if path.stat().st_mtime >= cutoff:
                continue
            if path.is_dir() and path.name.startswith(".xlsx-"):
                shutil.rmtree(path, ignore_errors=True)
            elif path.is_file() and path.name.endswith(".part"):
                path.unlink(missing_ok=True)
            else:
                continue
        except FileNotFoundError:
            continue
        removed += 1
    return removed
