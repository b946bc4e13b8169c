"""Bulk ticket import: the body is checked and stored with the job, a worker writes it all or nothing.

The parsed rows travel in the job's params (JSONB in PostgreSQL): a worker on any machine reads
them from the database it already uses, the row is committed before the task is enqueued, it goes
when the organization goes, and identical bodies hash to the same params so a resubmission while the
first import is still queued or running returns the same job instead of importing twice.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, current_app, request
from pydantic import RootModel

from webapp.api.plumbing.errors import ApiError
from webapp.api.plumbing.idempotency import idempotent
from webapp.api.plumbing.jobs_submit import refuse_if_full, submit_job
from webapp.api.plumbing.organization import current_organization
from webapp.api.plumbing.spec import check_json_text, document
from webapp.api.schemas.common import JobAccepted
from webapp.security.admission import require_role
from webapp.tickets import import_formats as formats
from webapp.tickets import imports
from webapp.tickets.fields import ImportedTicket

bp = Blueprint("ticket_imports", __name__, url_prefix="/tickets")


class TicketImport(RootModel[list[ImportedTicket]]):
    """A JSON array of tickets (each as POST /tickets takes it, with its replies, rating and status
    history if known); NDJSON holds one such object a line, CSV one a row under a header."""


def _format() -> str:
    fmt = formats.format_for(request.content_type)
    if fmt is None:
        raise ApiError(
            415,
            "send the tickets as application/json (an array), application/x-ndjson or text/csv",
            details={"content_types": sorted(formats.MEDIA_TYPES)},
        )
    return fmt


def _body(max_bytes: int) -> bytes:
    too_large = ApiError(
        413,
        f"an import body may hold at most {max_bytes} bytes; split the file into several imports",
        details={"max_bytes": max_bytes},
    )
    if request.content_length is not None and request.content_length > max_bytes:
        raise too_large
    body = request.get_data(cache=True)  # read whole, and checked complete, before the view
    if len(body) > max_bytes:
        raise too_large
    return body


def _rows(body: bytes, fmt: str, max_rows: int) -> list[Any]:
    """The body's records, each checked as POST /tickets checks its body (400 naming every failing row,
    nothing submitted): its fields, and every rule between them that needs no database (times in the
    organization's zone, their order, the status history), so a job is only made for rows it can write
    and a refused import holds no job slot."""
    try:
        rows, lines = formats.parse_rows_and_lines(body, fmt, max_rows=max_rows)
    except formats.ImportTooLarge as exc:
        raise ApiError(413, str(exc), details={"max_rows": max_rows}) from exc
    except formats.ImportFormatError as exc:
        raise ApiError(400, str(exc), details={"format": fmt, "line": exc.line}) from exc
    if formats.may_hide_text(body, fmt):
        for index, row in enumerate(rows):
            try:
                check_json_text(row, f"row {index + 1}")
            except ApiError as exc:
                # Which row, and its line in the body, as the other row errors say.
                where = {"row": index + 1, **({"line": lines[index]} if lines is not None else {})}
                raise ApiError(400, exc.message, details={"field": "body", **where}) from exc
    report = imports.check_rows(current_organization(), rows)
    if report.invalid:
        details = report.to_dict()
        if lines is not None:
            # Each failing row's line in the body too: "row 2" is hard to find past blank lines.
            for error in details["errors"]:
                error["line"] = lines[error["row"] - 1]
        raise ApiError(
            400,
            f"{report.invalid} of {report.rows} rows are not tickets as POST /tickets takes them; "
            "nothing was submitted",
            details={"field": "body", **details},
        )
    return rows


@bp.post("/import")
@document(
    "Import tickets (JSON array, NDJSON or CSV) in a job: all or nothing, with a per-row error report",
    tag="tickets",
    body=TicketImport,
    body_content_types=("application/json", "application/x-ndjson", "text/csv"),
    responses={202: JobAccepted},
    errors=(400, 401, 403, 413, 415, 429, 503),
)
@require_role("agent")
@idempotent
def create() -> tuple[Response, int, dict[str, str]]:
    """Store the parsed rows with an import job and answer 202 with where to poll it."""
    fmt = _format()
    body = _body(current_app.config["IMPORT_MAX_BYTES"])
    # A full organization's import is refused before its rows are parsed and checked (the costly part;
    # a 415 or 413 comes first: a retry would not help those).
    refuse_if_full("import")
    rows = _rows(body, fmt, current_app.config["IMPORT_MAX_ROWS"])
    # A write: every send imports its rows (a retry that must not is what Idempotency-Key is for).
    return submit_job("import", {"format": fmt, "row_count": len(rows), "rows": rows}, dedup=False)
