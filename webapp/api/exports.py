"""Exports: request one (a job, or streamed at once when small), fetch its link, download the file."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from flask import Blueprint, Response, current_app, jsonify, request, send_file
from sqlalchemy.orm import Session
from werkzeug.http import quote_header_value

from webapp.analytics import read_time
from webapp.api.plumbing import costs
from webapp.api.plumbing.errors import ApiError, not_found
from webapp.api.plumbing.export_room import room_errors
from webapp.api.plumbing.file_requests import check_preconditions, ignore_unservable_range
from webapp.api.plumbing.idempotency import idempotent
from webapp.api.plumbing.jobs_submit import submit_job
from webapp.api.plumbing.organization import current_organization, requested_clock
from webapp.api.plumbing.query_errors import client_errors
from webapp.api.plumbing.spec import document, json_body, parse_model, parse_query
from webapp.api.plumbing.writes import no_content
from webapp.api.schemas.common import JobAccepted
from webapp.api.schemas.exports import (
    EXPORT_REQUESTS,
    DatasetExport,
    DownloadQuery,
    ExportInfo,
    ExportMode,
    ExportRequest,
)
from webapp.core.timeutil import utcnow
from webapp.exports import encoders, records, room, tables, xlsx
from webapp.exports.progress import Progress
from webapp.exports.spec import CONTENT_TYPES, MEDIA_TYPES, ExportSpec
from webapp.infra.db import close_quietly, get_session, session_factory
from webapp.infra.redis_client import get_redis
from webapp.jobs import submission as job_domain
from webapp.models.jobs import Export, Job
from webapp.security import signing
from webapp.security.admission import (
    Principal,
    current_principal,
    presented_principal,
    require_role,
    spend_budget,
)

bp = Blueprint("exports", __name__)


def _media_type(fmt: str) -> str:
    """The bare media type of a format: werkzeug adds the charset of text types itself."""
    return CONTENT_TYPES[fmt].split(";")[0]


def _directory() -> Path:
    return Path(current_app.config["EXPORT_DIR"])


def _disposition(filename: str) -> str:
    return f"attachment; filename={quote_header_value(filename)}"


def _export_request() -> DatasetExport:
    """The body, validated by the request model of the dataset it names; an unknown dataset is refused
    by the model of every dataset (the 400 lists them)."""
    body = json_body()
    dataset = body.get("dataset")
    model = EXPORT_REQUESTS.get(dataset) if isinstance(dataset, str) else None
    return parse_model(model, body) if model is not None else parse_model(ExportRequest, body).root


@bp.post("/analytics/export")
@document(
    "Export tickets, a time series or an aggregation as CSV, JSON, NDJSON or XLSX: a job (202), "
    "or with ?mode=sync the file itself when it has at most EXPORT_SYNC_MAX_ROWS rows",
    tag="exports",
    query=ExportMode,
    body=ExportRequest,
    responses={202: JobAccepted, 200: None},
    binary={200: MEDIA_TYPES},
    errors=(400, 401, 403, 404, 422, 429, 503),
)
@require_role("viewer")
@idempotent
def request_export() -> Response | tuple[Response, int, dict[str, str]]:
    mode = parse_query(ExportMode).mode
    body = _export_request()
    org = current_organization()
    with client_errors():
        clock = requested_clock(org.id, body.query)
        spec = body.spec(default_tz=org.timezone, now=utcnow(), clock=clock)
        costs.check_export(spec, org.id)
    if mode == "async":
        _check_room(org.id, spec)
        return submit_job("export", spec.params())
    # Its count and (XLSX) its file are computed here, as a read no cache answers: read time.
    with client_errors(), read_time.charged(get_redis(), org.id, costs.read_budget()):
        return _sync_export(org.id, spec)


def _check_room(org_id: int, spec: ExportSpec) -> None:
    """429 when the organization's export files hold the quota, or it already has the most exports
    queued or running (a request identical to a queued export is let through: it is answered with
    that job). A full organization is refused after one look; one with room is counted again under a
    per-organization lock held until the new job row commits."""
    limits = room.ExportLimits.from_settings(current_app.config)
    session = get_session()
    digest = job_domain.params_hash("export", spec.params(), current_principal().user_id)
    with room_errors():
        room.refuse_if_full(session, org_id, limits, utcnow(), digest)
        active = job_domain.count_active(session, org_id, "export", lock=True)
        if active >= limits.max_active and job_domain.find_active(session, org_id, "export", digest):
            return
        room.check_active(active, limits)


def _sync_table(session: Session, org_id: int, spec: ExportSpec) -> tables.Table:
    """The export's rows for mode=sync: counted up to one past the cap, 422 beyond it."""
    cap = current_app.config["EXPORT_SYNC_MAX_ROWS"]
    with client_errors():
        table = tables.open_table(
            session,
            org_id=org_id,
            query=spec.query,
            limit=cap + 1,
            statement_timeout_ms=current_app.config["ANALYTICS_STATEMENT_TIMEOUT_MS"],
        )
    if table.total > cap:
        raise ApiError(
            422,
            f"the export has more than {cap} rows, the limit of mode=sync; request it without mode=sync",
            code="export_too_large",
            details={"max_rows": cap},
        )
    return table


def _sync_xlsx(session: Session, spec: ExportSpec, table: tables.Table) -> Response:
    """XLSX through a temporary file: a zip's directory comes last, so it cannot stream as it is made."""
    # The temp file is unlinked at once and vanishes when the response closes it.
    handle = tempfile.TemporaryFile()  # noqa: SIM115 (send_file closes it)
    xlsx.write_xlsx(table, handle, Progress(table.total), metadata=spec.describe(utcnow()))
    close_quietly(session)
    handle.seek(0)
    filename = spec.filename(utcnow())
    return send_file(handle, mimetype=_media_type(spec.format), as_attachment=True, download_name=filename)


def _streamed(session: Session, spec: ExportSpec, table: tables.Table) -> Response:
    """CSV and JSON straight from COPY as the response body, closing the session when it ends."""
    chunks = encoders.encode(spec.format, table, Progress(table.total))
    # The first block is made here, before the status line is sent: a database that fails the
    # query is still answered with a 503 (past this point only the connection can be cut).
    first = next(chunks, b"")

    def body() -> Iterator[bytes]:
        try:
            yield first
            yield from chunks
        finally:
            chunks.close()
            close_quietly(session)

    def close() -> None:
        # Closing a generator that never started skips its finally: the response closes both too.
        chunks.close()
        close_quietly(session)

    response = Response(body(), content_type=CONTENT_TYPES[spec.format])
    response.headers["Content-Disposition"] = _disposition(spec.filename(utcnow()))
    response.call_on_close(close)
    return response


def _sync_export(org_id: int, spec: ExportSpec) -> Response:
    """The export in the response body, streamed: CSV and JSON straight from COPY, XLSX via a temp file."""
    # A session of its own: the response streams after the request's session is gone.
    session = session_factory()()
    try:
        table = _sync_table(session, org_id, spec)
        response = (_sync_xlsx if spec.format == "xlsx" else _streamed)(session, spec, table)
    except BaseException:
        close_quietly(session)
        raise
    response.headers["X-Export-Rows"] = str(table.total)
    response.headers["Cache-Control"] = "private, no-store"
    return response


def _export_or_404(export_id: str, org_id: int, *, lock: bool = False) -> Export:
    export = records.get(get_session(), org_id=org_id, export_id=export_id, lock=lock)
    if export is None:
        raise not_found("export")
    return export


def _available(export: Export, now: datetime) -> Export:
    """`export`, if its file can still be served (else 410)."""
    if not records.is_available(export, _directory(), now):
        raise ApiError(410, "the export file is no longer available; request a new export")
    return export


def _linked(export_id: str, token: str, now: datetime, principal: Principal | None) -> Export:
    """The export a download link opens: 403 for a link that is not valid for it, 404 for a deleted
    export or (with a bearer token) another organization's, 410 once expired or gone.

    The link is the credential: without a token it spends the export's own download budget (a link
    passed around can throttle its own downloads, never the organization's other requests)."""
    try:
        claims = signing.verify(token)
    except signing.BadLink as exc:
        raise ApiError(403, "the download link is not valid") from exc
    if claims.export_id != export_id:
        raise ApiError(403, "the download link is not valid")
    if principal is None:
        spend_budget(claims.org_id, "downloads", scope=claims.export_id)
    elif claims.org_id != principal.org_id:
        raise not_found("export")
    export = _export_or_404(export_id, claims.org_id)
    if claims.expired(now):
        raise ApiError(410, f"the download link has expired; GET /api/v1/exports/{export_id} for a fresh one")
    return _available(export, now)


def _info(export: Export, now: datetime) -> dict[str, Any]:
    """The export's file details, with a fresh signed link."""
    url, link_expires_at = signing.download_link(export, now)
    return {
        "id": str(export.id),
        "job_id": str(export.job_id),
        "format": export.format,
        "filename": export.filename,
        "content_type": CONTENT_TYPES[export.format],
        "rows": export.rows,
        "bytes": export.bytes,
        "sha256": export.sha256,
        "created_at": export.created_at.isoformat(),
        # As in the job's result: when download_url stops working (the file may stay longer).
        "expires_at": link_expires_at.isoformat(),
        "download_url": url,
        "link_expires_at": link_expires_at.isoformat(),
        "file_expires_at": export.expires_at.isoformat(),
    }


@bp.get("/exports/<export_id>")
@document(
    "An export's file details and a fresh signed download link",
    tag="exports",
    responses={200: ExportInfo},
    errors=(401, 403, 404, 410),
)
@require_role("viewer")
def get(export_id: str) -> Response:
    now = utcnow()
    return jsonify(_info(_available(_export_or_404(export_id, current_principal().org_id), now), now))


@bp.delete("/exports/<export_id>")
@document(
    "Delete an export (its maker's or, for an admin, any of the organization's): the file is removed "
    "and every download link of it answers 404 from then on",
    tag="exports",
    responses={204: None},
    errors=(401, 403, 404, 429),
)
@require_role("viewer")
def delete(export_id: str) -> Response:
    principal = current_principal()
    session = get_session()
    export = _export_or_404(export_id, principal.org_id, lock=True)
    job = session.get(Job, export.job_id)
    if principal.role != "admin" and (job is None or job.created_by != principal.user_id):
        raise ApiError(403, "only the export's maker or an admin may delete it")
    records.remove(session, export, _directory())
    return no_content()


@bp.get("/exports/<export_id>/download")
@document(
    "Download an export file through its signed link, which is credential enough until it expires "
    "or the export is deleted; a valid bearer token, if sent, must be of the same organization (one "
    "that is not valid is ignored)",
    tag="exports",
    query=DownloadQuery,
    # Range requests get their part (206), conditional ones 304 when the file is unchanged (a Range
    # or not) and 412 when If-Match or If-Unmodified-Since fails.
    responses={200: None, 206: None, 304: None},
    binary={200: MEDIA_TYPES, 206: MEDIA_TYPES},
    headers={
        200: ("ETag", "Last-Modified", "Content-Disposition", "Accept-Ranges"),
        206: ("ETag", "Last-Modified", "Content-Disposition", "Content-Range"),
        304: ("ETag",),
    },
    errors=(400, 403, 404, 410, 412, 416, 429),
    auth="optional",
)
def download(export_id: str) -> Response:
    if not request.args.get("token"):
        # A link whose token was cut off is a link that is not valid, as a tampered one (not a 400).
        raise ApiError(403, "the download link is not valid")
    token = parse_query(DownloadQuery).token
    export = _linked(export_id, token, utcnow(), presented_principal())
    path = Path(export.path)
    current = check_preconditions(export.sha256, datetime.fromtimestamp(path.stat().st_mtime, UTC))
    ignore_unservable_range()
    response = current or send_file(
        path,
        mimetype=_media_type(export.format),
        as_attachment=True,
        download_name=export.filename,
        conditional=True,
        etag=export.sha256,
        max_age=0,
    )
    # The token is in the URL: keep it out of shared caches and of other sites' Referer headers.
    response.headers["Cache-Control"] = "private, no-store"
    response.headers["Referrer-Policy"] = "no-referrer"
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response
