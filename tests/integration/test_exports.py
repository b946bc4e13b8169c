"""Exports end to end: a real worker writes each format, real readers read it back against the database."""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import itertools
import json
import re
import string
import time
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import itsdangerous
import openpyxl
import psycopg
import pytest
import redis
from flask import Flask
from openpyxl.utils.escape import unescape
from sqlalchemy import text

from tests.conftest import Tenant, _make_tenant, db_scalar, run_task, wait_for_job
from webapp.api.schemas.exports import ExportRequest
from webapp.core.timeutil import utcnow
from webapp.exports import encoders, files
from webapp.exports.formulas import FORMULA_PREFIXES
from webapp.exports.spec import CONTENT_TYPES, TICKET_COLUMNS
from webapp.infra.db import get_session as get_db_session
from webapp.models.jobs import Export
from webapp.security import ratelimit, signing
from webapp.tickets import seeding

pytestmark = pytest.mark.worker

TZ = ZoneInfo("Europe/Berlin")
RANGE = {"start": "2026-01-01", "end": "2026-01-11", "tz": "Europe/Berlin"}
PREFIXES = FORMULA_PREFIXES
DB_COLUMNS = list(TICKET_COLUMNS)


def _ticket_bodies() -> list[dict[str, Any]]:
    """Tickets whose text holds every formula prefix, CSV's special characters, Unicode and NULLs."""
    bodies = [
        {
            "subject": f"{prefix}1+1",
            "category": ['=HYPERLINK("http://x")', "+cat", "-cat", "@cat", "billing"][i % 5],
            "assigned_to": [None, "@agent", "bob"][i % 3],
            "sentiment_score": [-0.5, None, 0.25][i % 3],
            "priority": ["low", "normal", "high", "urgent"][i % 4],
            "created_at": f"2026-01-0{1 + i}T09:{10 + i}:07.123456+01:00",
            "first_response_at": f"2026-01-0{1 + i}T11:00:00+01:00",
        }
        for i, prefix in enumerate(PREFIXES)
    ]
    bodies += [
        {
            "subject": 'comma, "quotes" and\nnewline',
            "category": "billing",
            "created_at": "2026-01-08T00:00:00Z",
        },
        {
            "subject": "ünïcödé ✓ 日本",
            "category": "billing",
            "created_at": "2026-01-09T23:59:59+01:00",
            "first_response_at": "2026-01-10T01:00:00+01:00",
            "resolved_at": "2026-01-10T02:30:00+01:00",
        },
        {"subject": "outside the range", "category": "billing", "created_at": "2026-02-01T00:00:00Z"},
        {"subject": "summer time", "category": "billing", "created_at": "2026-07-01T12:00:00.5+02:00"},
    ]
    return bodies


@pytest.fixture(scope="module")
def data(base_app: Flask, celery_worker: Any) -> Tenant:
    """One organization with the tickets above, created through the API (so events are written too)."""
    tenant = _make_tenant(base_app, "Export", "Europe/Berlin")
    for body in _ticket_bodies():
        response = tenant.agent.post("/api/v1/tickets", json=body)
        assert response.status_code == 201, response.get_json()
    return tenant


def _db_tickets(
    engine: Any, org_id: int, start: str = "2026-01-01T00:00:00+01:00", end: str = "2026-01-11T00:00:00+01:00"
) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        rows = conn.execute(
            text(
                f"SELECT {', '.join(DB_COLUMNS)} FROM tickets WHERE org_id = :org"
                " AND created_at >= :start AND created_at < :end ORDER BY created_at, id"
            ),
            {"org": org_id, "start": start, "end": end},
        )
        return [dict(row._mapping) for row in rows]


def _export(api: Any, body: dict[str, Any]) -> dict[str, Any]:
    response = api.post("/api/v1/analytics/export", json=body)
    assert response.status_code == 202, response.get_json()
    job = wait_for_job(api, response.get_json()["job_id"])
    assert job["state"] == "succeeded", job
    assert job["progress"] == 1.0
    return job["result"]


def _download(api: Any, result: dict[str, Any]) -> bytes:
    response = api.get(result["download_url"])
    assert response.status_code == 200, response.data[:300]
    assert response.headers["Content-Type"].startswith(CONTENT_TYPES[result["format"]].split(";")[0])
    assert response.headers["Content-Disposition"] == f"attachment; filename={result['filename']}"
    body = response.data
    assert len(body) == result["bytes"]
    assert hashlib.sha256(body).hexdigest() == result["sha256"]
    return body


def _safe(value: str | None) -> str:
    """What a CSV cell holds for `value`: a leading quote before a formula prefix."""
    if value is None:
        return ""
    return "'" + value if value[:1] in PREFIXES else value


def _parse_ts(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


def _csv_rows(body: bytes) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(body.decode("utf-8"), newline="")))


def _text(value: Any) -> Any:
    # XLSX writes control characters as _xHHHH_ (a raw CR would not survive XML); Excel decodes
    # them, openpyxl leaves inline strings encoded.
    return unescape(value) if isinstance(value, str) else value


def _xlsx_rows(body: bytes, sheet: str = "data") -> tuple[list[str], list[tuple[Any, ...]], Any]:
    book = openpyxl.load_workbook(io.BytesIO(body))
    rows = [tuple(_text(v) for v in row) for row in book[sheet].iter_rows(values_only=True)]
    return list(rows[0]), rows[1:], book


def test_csv_export_reads_back_as_the_database(data, db_engine):
    result = _export(data.viewer, {"format": "csv", "dataset": "tickets", "query": RANGE})
    expected = _db_tickets(db_engine, data.org_id)
    rows = _csv_rows(_download(data.viewer, result))
    assert result["rows"] == len(rows) == len(expected) == 9
    assert result["filename"].startswith("tickets-")
    assert result["filename"].endswith(".csv")
    assert datetime.fromisoformat(result["expires_at"]) > utcnow()
    for got, want in zip(rows, expected, strict=True):
        assert list(got) == DB_COLUMNS
        assert int(got["id"]) == want["id"]
        for name in ("subject", "status", "priority", "channel", "category", "assigned_to"):
            assert got[name] == _safe(want[name]), name
        assert (float(got["sentiment_score"]) if got["sentiment_score"] else None) == want["sentiment_score"]
        for name in ("created_at", "updated_at", "first_response_at", "resolved_at"):
            assert _parse_ts(got[name]) == want[name], name
            # Written as isoformat() in the export's zone: the offset with its minutes,
            # fractions of a second only where there are some.
            berlin = want[name].astimezone(ZoneInfo("Europe/Berlin")) if want[name] else None
            assert got[name] == (berlin.isoformat() if berlin else ""), name
        assert int(got["reopen_count"]) == want["reopen_count"]
    # Timestamps carry the export's zone (Berlin in January: +01:00).
    assert rows[0]["created_at"] == "2026-01-01T09:10:07.123456+01:00"
    assert rows[-1]["first_response_at"] == "2026-01-10T01:00:00+01:00"


def test_csv_times_keep_an_offset_with_seconds(base_app, celery_worker):
    """Monrovia kept -00:44:30 until 1972: the CSV writes that offset whole, as JSON does (the clock
    time was always computed with it; TZH:TZM alone named an instant 30 s off)."""
    tenant = _make_tenant(base_app, "Monrovia", "UTC")
    created = {"created_at": "1971-06-01T12:00:00Z", "resolved_at": "1971-06-01T12:00:01.25Z"}
    assert tenant.agent.post("/api/v1/tickets", json=created).status_code == 201
    query = {"start": "1971-06-01", "end": "1971-06-02", "tz": "Africa/Monrovia"}
    for fmt in ("csv", "json"):
        body = _download(
            tenant.viewer, _export(tenant.viewer, {"format": fmt, "dataset": "tickets", "query": query})
        )
        [row] = _csv_rows(body) if fmt == "csv" else json.loads(body)
        assert row["created_at"] == "1971-06-01T11:15:30-00:44:30", fmt
        resolved = datetime(1971, 6, 1, 12, 0, 1, 250000, tzinfo=ZoneInfo("UTC"))
        assert datetime.fromisoformat(row["resolved_at"]) == resolved, fmt
        assert row["resolved_at"].endswith("-00:44:30"), fmt
        assert datetime.fromisoformat(row["created_at"]) == datetime(1971, 6, 1, 12, tzinfo=ZoneInfo("UTC"))


@pytest.mark.parametrize("fmt", ["json", "ndjson"])
def test_json_export_reads_back_as_the_database(data, db_engine, fmt):
    result = _export(data.viewer, {"format": fmt, "dataset": "tickets", "query": RANGE})
    body = _download(data.viewer, result).decode("utf-8")
    items = json.loads(body) if fmt == "json" else [json.loads(line) for line in body.splitlines()]
    expected = _db_tickets(db_engine, data.org_id)
    assert result["rows"] == len(items) == len(expected)
    for got, want in zip(items, expected, strict=True):
        assert list(got) == DB_COLUMNS
        for name in DB_COLUMNS:
            value = _parse_ts(got[name]) if name.endswith("_at") else got[name]
            # JSON is data, not a spreadsheet: text comes back exactly as stored.
            assert value == want[name], name


def _offset(number_format: str) -> timedelta:
    """The UTC offset a date cell's format shows after its time, as in yyyy-mm-dd hh:mm:ss"+01:00"."""
    match = re.search(r'"([+-])(\d\d):(\d\d)"$', number_format)
    assert match, number_format
    sign = -1 if match[1] == "-" else 1
    return sign * timedelta(hours=int(match[2]), minutes=int(match[3]))


def test_xlsx_export_reads_back_as_the_database(data, db_engine):
    # Winter and summer time in Berlin: each cell keeps its own offset.
    query = {"start": "2026-01-01", "end": "2026-08-01", "tz": "Europe/Berlin"}
    result = _export(data.viewer, {"format": "xlsx", "dataset": "tickets", "query": query})
    header, rows, book = _xlsx_rows(_download(data.viewer, result))
    expected = _db_tickets(db_engine, data.org_id, "2026-01-01T00:00:00+01:00", "2026-08-01T00:00:00+02:00")
    assert header == DB_COLUMNS
    assert result["rows"] == len(rows) == len(expected)
    assert {want["created_at"].astimezone(TZ).utcoffset() for want in expected} == {
        timedelta(hours=1),
        timedelta(hours=2),
    }
    assert book.sheetnames == ["data", "metadata"]
    assert book["data"].freeze_panes == "A2"
    cells = list(book["data"].iter_rows(min_row=2))
    for got, want, line in zip(rows, expected, cells, strict=True):
        values = dict(zip(header, got, strict=True))
        formats = {name: cell.number_format for name, cell in zip(header, line, strict=True)}
        assert isinstance(values["id"], int)
        assert values["id"] == want["id"]
        assert values["sentiment_score"] == want["sentiment_score"]
        for name in ("subject", "category", "assigned_to"):
            assert values[name] == want[name], name
        for name in ("created_at", "updated_at", "first_response_at", "resolved_at"):
            if want[name] is None:
                assert values[name] is None
            else:
                # Excel keeps wall-clock time in the export's zone, to the millisecond, and the
                # cell's format shows that time's UTC offset: together they are the instant.
                assert isinstance(values[name], datetime)
                offset = _offset(formats[name])
                assert offset == want[name].astimezone(TZ).utcoffset(), name
                instant = values[name].replace(tzinfo=timezone(offset))
                assert abs(instant - want[name]) <= timedelta(milliseconds=1), name
    meta = {row[0]: row[1] for row in book["metadata"].iter_rows(values_only=True)}
    assert meta["rows"] == len(expected)
    assert meta["time_zone"] == "Europe/Berlin"
    assert meta["dataset"] == "tickets"
    assert json.loads(meta["query"])["tz"] == "Europe/Berlin"
    assert datetime.fromisoformat(meta["generated_at"])


def test_dangerous_prefixes_read_back_as_literal_text(data):
    subjects = {f"{prefix}1+1" for prefix in PREFIXES}
    response = data.viewer.post(
        "/api/v1/analytics/export?mode=sync", json={"format": "csv", "dataset": "tickets", "query": RANGE}
    )
    assert response.status_code == 200
    cells = {row["subject"] for row in _csv_rows(response.data)}
    assert {"'" + s for s in subjects} <= cells
    assert not any(cell[:1] in PREFIXES for cell in cells)

    response = data.viewer.post(
        "/api/v1/analytics/export?mode=sync", json={"format": "xlsx", "dataset": "tickets", "query": RANGE}
    )
    assert response.status_code == 200
    header, _, book = _xlsx_rows(response.data)
    column = header.index("subject") + 1
    seen = set()
    for row in book["data"].iter_rows(min_row=2, min_col=column, max_col=column):
        cell = row[0]
        if _text(cell.value) in subjects:
            # A string cell (never a formula) flagged as text, the way Excel marks a typed ' prefix.
            assert cell.data_type == "s"
            assert cell.quotePrefix
            seen.add(_text(cell.value))
    assert seen == subjects


def test_time_series_export_matches_the_analytics_api(data):
    for metric, fmt in (("ticket_count", "csv"), ("response_time", "json")):
        query = {**RANGE, "metric": metric, "granularity": "daily"}
        result = _export(data.viewer, {"format": fmt, "dataset": "time-series", "query": query})
        body = _download(data.viewer, result)
        api = data.viewer.get(
            f"/api/v1/analytics/time-series/{metric}?start={RANGE['start']}&end={RANGE['end']}"
            f"&tz={RANGE['tz']}&granularity=daily"
        ).get_json()
        if fmt == "csv":
            rows = _csv_rows(body)
            got = [(_parse_ts(r["bucket"]), int(r["value"]), int(r["count"])) for r in rows]
            want = [(_parse_ts(p["bucket"]), p["value"], p["count"]) for p in api["points"]]
        else:
            rows = json.loads(body)
            got = [(_parse_ts(r["bucket"]), r["value"], r["count"], r["min"], r["max"]) for r in rows]
            want = [
                (_parse_ts(p["bucket"]), p["value"], p["count"], p["min"], p["max"]) for p in api["points"]
            ]
        assert got == want
        assert result["rows"] == len(want) == 10


def test_aggregation_export_matches_the_analytics_api(data):
    query = {**RANGE, "metrics": ["ticket_count", "response_time"], "group_by": ["category"]}
    api = data.viewer.post("/api/v1/analytics/aggregations", json=query).get_json()
    want = [
        (
            row["group"]["category"],
            row["ticket_count"]["count"],
            row["response_time"]["count"],
            row["response_time"]["avg"],
            row["response_time"]["p95"],
        )
        for row in api["rows"]
    ]
    csv_result = _export(data.viewer, {"format": "csv", "dataset": "aggregations", "query": query})
    rows = _csv_rows(_download(data.viewer, csv_result))
    assert [
        (
            r["category"],
            int(r["ticket_count"]),
            int(r["response_time_count"]),
            float(r["response_time_avg"]) if r["response_time_avg"] else None,
            float(r["response_time_p95"]) if r["response_time_p95"] else None,
        )
        for r in rows
    ] == [(_safe(c), *rest) for c, *rest in want]

    xlsx_result = _export(data.viewer, {"format": "xlsx", "dataset": "aggregations", "query": query})
    header, cells, _ = _xlsx_rows(_download(data.viewer, xlsx_result))
    got = [dict(zip(header, row, strict=True)) for row in cells]
    # Excel keeps 15 significant digits, so floats come back to within that precision.
    assert [
        (
            r["category"],
            r["ticket_count"],
            r["response_time_count"],
            r["response_time_avg"],
            r["response_time_p95"],
        )
        for r in got
    ] == [
        (c, n, m, pytest.approx(avg, rel=1e-14), pytest.approx(p95, rel=1e-14)) for c, n, m, avg, p95 in want
    ]


def test_xlsx_continues_on_further_sheets_and_reruns_replace_the_file(live_app, data, db_engine, tmp_path):
    spec = ExportRequest.model_validate({"format": "xlsx", "dataset": "tickets", "query": RANGE}).root.spec(
        default_tz="UTC", now=utcnow()
    )
    job_id = uuid.uuid4()
    with live_app.app_context():
        factory = live_app.extensions["db_sessionmaker"]
        written = []
        for _ in range(2):
            with factory() as session:
                written.append(
                    files.write_export(
                        session,
                        org_id=data.org_id,
                        job_id=job_id,
                        spec=spec,
                        directory=tmp_path,
                        now=utcnow(),
                        sheet_rows=4,
                    )
                )
    assert written[0].path == written[1].path
    assert [p.name for p in (tmp_path / str(data.org_id)).iterdir()] == [f"{job_id}.xlsx"]
    book = openpyxl.load_workbook(written[1].path, read_only=True)
    assert book.sheetnames == ["data", "data 2", "data 3", "metadata"]
    ids = []
    for name in book.sheetnames[:-1]:
        rows = list(book[name].iter_rows(values_only=True))
        assert list(rows[0]) == DB_COLUMNS
        assert 1 < len(rows) <= 4
        ids += [row[0] for row in rows[1:]]
    assert ids == [row["id"] for row in _db_tickets(db_engine, data.org_id)]
    assert written[1].rows == 9
    meta = {row[0]: row[1] for row in book["metadata"].iter_rows(values_only=True)}
    assert meta["sheets"] == 3
    assert meta["rows"] == 9


@pytest.fixture(scope="module")
def link(data) -> dict[str, Any]:
    return _export(
        data.viewer, {"format": "csv", "dataset": "tickets", "query": {**RANGE, "columns": ["id"]}}
    )


def test_tampered_link_is_403(data, link):
    url = link["download_url"]
    path, token = url.split("?token=")
    flipped = token[:-3] + ("A" if token[-3] != "A" else "B") + token[-2:]
    assert data.viewer.get(f"{path}?token={flipped}").status_code == 403
    assert data.viewer.get(f"{path}?token=not-a-token").status_code == 403
    # A valid token of one export does not open another.
    other = f"/api/v1/exports/{uuid.uuid4()}/download?token={token}"
    assert data.viewer.get(other).status_code == 403
    # A link whose token was cut off is a link that is not valid, as a tampered one (it was a 400).
    assert data.viewer.get(path).status_code == 403
    assert data.viewer.client.get(path).status_code == 403
    assert data.viewer.client.get(f"{path}?token=").status_code == 403
    assert data.viewer.get(url).status_code == 200
    # Every other last character is refused too, those that differ only in the bits base64 leaves
    # spare past the signature's 32 bytes included.
    alphabet = string.ascii_letters + string.digits + "-_"
    for other in alphabet.replace(token[-1], ""):
        assert data.viewer.get(f"{path}?token={token[:-1]}{other}").status_code == 403, other


def test_expired_link_is_410(live_app, data, link):
    export_id = link["export_id"]
    with live_app.app_context():
        token = signing.sign(export_id, data.org_id, utcnow() - timedelta(seconds=1))
    response = data.viewer.get(f"/api/v1/exports/{export_id}/download?token={token}")
    assert response.status_code == 410
    assert data.viewer.client.get(f"/api/v1/exports/{export_id}/download?token={token}").status_code == 410
    assert response.get_json()["error"]["code"] == "gone"
    # A fresh link comes from the export itself, with expires_at the instant it stops working (as in
    # the job's result); the file stays until file_expires_at.
    fresh = data.viewer.get(f"/api/v1/exports/{export_id}").get_json()
    assert data.viewer.get(fresh["download_url"]).status_code == 200
    with live_app.app_context():
        claims = signing.verify(fresh["download_url"].split("?token=")[1])
    assert datetime.fromisoformat(fresh["expires_at"]) == claims.expires_at
    assert fresh["link_expires_at"] == fresh["expires_at"]
    assert datetime.fromisoformat(fresh["file_expires_at"]) >= claims.expires_at


def test_link_of_another_organization_is_404(base_app, data, link):
    other = _make_tenant(base_app, "Other", "UTC")
    assert other.admin.get(link["download_url"]).status_code == 404
    assert other.admin.get(f"/api/v1/exports/{link['export_id']}").status_code == 404
    assert other.admin.delete(f"/api/v1/exports/{link['export_id']}").status_code == 404
    assert data.viewer.get(link["download_url"]).status_code == 200


def test_a_link_alone_downloads_the_file(data, link):
    """No Authorization header: the signed link is the credential (a browser, a mail client, curl)."""
    anonymous = data.viewer.client
    response = anonymous.get(link["download_url"])
    assert response.status_code == 200, response.get_json()
    assert hashlib.sha256(response.data).hexdigest() == link["sha256"]
    assert response.headers["Cache-Control"] == "private, no-store"
    assert response.headers["Referrer-Policy"] == "no-referrer"
    path, token = link["download_url"].split("?token=")
    flipped = token[:-3] + ("A" if token[-3] != "A" else "B") + token[-2:]
    assert anonymous.get(f"{path}?token={flipped}").status_code == 403
    # A token that is not valid (garbage, expired, revoked, another scheme) is as if not sent: a
    # client that attaches its token to every request keeps the link when its token runs out.
    for header in ("Bearer not-a-token", "Basic abc", "Bearer"):
        sent = anonymous.get(link["download_url"], headers={"Authorization": header})
        assert sent.status_code == 200, (header, sent.get_json())
        assert hashlib.sha256(sent.data).hexdigest() == link["sha256"]


def test_a_revoked_token_sent_with_a_link_is_as_if_not_sent(base_app, data, link):
    signed_out = _make_tenant(base_app, "SignedOut", "UTC")
    assert signed_out.viewer.post("/api/v1/auth/logout").status_code == 200
    assert signed_out.viewer.get("/api/v1/tickets").status_code == 401
    sent = data.viewer.client.get(
        link["download_url"], headers={"Authorization": f"Bearer {signed_out.viewer.token}"}
    )
    assert sent.status_code == 200, sent.get_json()
    assert hashlib.sha256(sent.data).hexdigest() == link["sha256"]


def test_a_link_ignores_parameters_a_mail_client_or_tracker_adds(data, link):
    anonymous = data.viewer.client
    url = link["download_url"]
    path, token = url.split("?token=")
    for tracked in (f"{url}&utm_source=mail&utm_medium=email", f"{path}?fbclid=x&token={token}"):
        response = anonymous.get(tracked)
        assert response.status_code == 200, (tracked, response.get_json())
        assert hashlib.sha256(response.data).hexdigest() == link["sha256"]
    # The token is still required, and still checked.
    assert anonymous.get(f"{path}?utm_source=mail").status_code == 403
    assert anonymous.get(f"{path}?utm_source=mail&token=not-a-token").status_code == 403


def test_a_link_answers_one_byte_range_and_ignores_ranges_it_cannot_serve(data, link):
    """One byte range: 206 with that part; past the end: 416. Another unit, a malformed range or several
    ranges: the whole file with 200 (RFC 9110 has a server ignore what it does not serve)."""
    anonymous = data.viewer.client
    whole = anonymous.get(link["download_url"]).data
    size = len(whole)
    assert size > 12

    def get(header: str):
        return anonymous.get(link["download_url"], headers={"Range": header})

    first = get("bytes=0-9")
    assert first.status_code == 206
    assert first.data == whole[:10]
    assert first.headers["Content-Range"] == f"bytes 0-9/{size}"
    assert get("bytes=-5").data == whole[-5:]
    assert get("bytes=3-").data == whole[3:]
    past = get(f"bytes={size + 10}-")
    assert past.status_code == 416
    assert past.headers["Content-Range"] == f"bytes */{size}"
    assert past.get_json()["error"]["code"] == "range_not_satisfiable"
    for ignored in ("bytes=0-1,5-6", "items=0-3", "bytes=5-2", "bytes=x-y"):
        response = get(ignored)
        assert response.status_code == 200, ignored
        assert response.data == whole, ignored
    unchanged = anonymous.get(link["download_url"], headers={"If-None-Match": f'"{link["sha256"]}"'})
    assert unchanged.status_code == 304


def test_a_link_evaluates_preconditions_before_any_range(data, link):
    """RFC 9110 13.2.2: If-Match (or If-Unmodified-Since) failing is 412 with the error body and no
    file; If-None-Match matching (or If-Modified-Since not passed) is 304 even with a Range."""
    anonymous = data.viewer.client
    whole = anonymous.get(link["download_url"])
    etag = f'"{link["sha256"]}"'
    modified = whole.headers["Last-Modified"]

    def get(**headers: str):
        return anonymous.get(link["download_url"], headers=headers)

    for failing in ({"If-Match": '"nope"'}, {"If-Unmodified-Since": "Sat, 01 Jan 2000 00:00:00 GMT"}):
        refused = get(**failing)
        assert refused.status_code == 412, failing
        assert refused.mimetype == "application/json"
        assert refused.get_json()["error"]["code"] == "precondition_failed"
        assert len(refused.data) < 500
    for passing in ({"If-Match": etag}, {"If-Match": "*"}, {"If-Unmodified-Since": modified}):
        assert get(**passing).data == whole.data, passing
    assert get(**{"If-Match": etag, "Range": "bytes=0-4"}).data == whole.data[:5]
    for current in (
        {"If-None-Match": etag, "Range": "bytes=0-9"},
        {"If-None-Match": f"W/{etag}", "Range": "bytes=0-9"},
        {"If-Modified-Since": modified, "Range": "bytes=0-9"},
    ):
        answer = get(**current)
        assert answer.status_code == 304, current
        assert answer.data == b""
        assert answer.headers["ETag"] == etag
    # If-None-Match not matching wins over an If-Modified-Since that would say unchanged.
    assert get(**{"If-None-Match": '"other"', "If-Modified-Since": modified}).status_code == 200
    assert get(**{"If-None-Match": '"other"', "Range": "bytes=0-9"}).status_code == 206


def test_links_are_signed_with_hmac_sha256_under_a_key_of_their_own(live_app, link):
    """The link's signature is HMAC-SHA256 (32 bytes), and the JWT secret does not make one."""
    token = link["download_url"].split("?token=")[1]
    signature = token.rsplit(".", 1)[1]
    assert len(base64.urlsafe_b64decode(signature + "=" * (-len(signature) % 4))) == 32
    payload = token.rsplit(".", 1)[0]
    forged = itsdangerous.URLSafeSerializer(
        live_app.config["JWT_SECRET_KEY"], salt=signing.SALT, signer_kwargs={"digest_method": hashlib.sha256}
    ).dumps(json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))))
    assert forged != token
    with live_app.test_request_context():
        with pytest.raises(signing.BadLink):
            signing.verify(forged)
        assert signing.verify(token).export_id == link["export_id"]


def test_deleting_an_export_removes_its_file_and_revokes_its_links(base_app, data, db_engine):
    result = _export(data.viewer, {"format": "csv", "dataset": "tickets", "query": RANGE})
    export_id = result["export_id"]
    path = Path(db_scalar(db_engine, "SELECT path FROM exports WHERE id = :id", id=export_id))
    assert path.is_file()
    fresh = data.viewer.get(f"/api/v1/exports/{export_id}").get_json()["download_url"]
    # Only its maker or an admin deletes it.
    assert data.agent.delete(f"/api/v1/exports/{export_id}").status_code == 403
    response = data.viewer.delete(f"/api/v1/exports/{export_id}")
    assert response.status_code == 204
    assert response.data == b""
    assert not path.exists()
    assert db_scalar(db_engine, "SELECT count(*) FROM exports WHERE id = :id", id=export_id) == 0
    for url in (result["download_url"], fresh):
        assert data.viewer.client.get(url).status_code == 404
        assert data.viewer.get(url).status_code == 404
    assert data.viewer.get(f"/api/v1/exports/{export_id}").status_code == 404
    assert data.viewer.delete(f"/api/v1/exports/{export_id}").status_code == 404
    assert data.viewer.delete("/api/v1/exports/not-a-uuid").status_code == 404
    # An admin deletes anyone's.
    other = _export(data.agent, {"format": "json", "dataset": "tickets", "query": RANGE})
    assert data.admin.delete(f"/api/v1/exports/{other['export_id']}").status_code == 204
    assert data.viewer.client.get(other["download_url"]).status_code == 404


def test_files_past_retention_are_removed_and_links_answer_410(base_app, data, db_engine):
    result = _export(data.viewer, {"format": "ndjson", "dataset": "tickets", "query": RANGE})
    with db_engine.begin() as conn:
        path = conn.execute(
            text("UPDATE exports SET created_at = now() - interval '30 days' WHERE id = :id RETURNING path"),
            {"id": result["export_id"]},
        ).scalar_one()
    assert Path(path).is_file()
    # What beat schedules, run by the worker.
    run_task(base_app.extensions["celery"], "maintenance.cleanup_exports")
    assert not Path(path).exists()
    assert data.viewer.get(result["download_url"]).status_code == 410
    assert data.viewer.client.get(result["download_url"]).status_code == 410
    assert data.viewer.get(f"/api/v1/exports/{result['export_id']}").status_code == 410


def test_sync_mode_streams_small_exports_and_refuses_large_ones(live_app, data, monkeypatch):
    response = data.viewer.post(
        "/api/v1/analytics/export?mode=sync", json={"format": "ndjson", "dataset": "tickets", "query": RANGE}
    )
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "application/x-ndjson"
    assert response.headers["Content-Disposition"].startswith("attachment; filename=tickets-")
    assert response.headers["X-Export-Rows"] == "9"
    assert len(response.data.splitlines()) == 9

    monkeypatch.setitem(live_app.config, "EXPORT_SYNC_MAX_ROWS", 5)
    response = data.viewer.post(
        "/api/v1/analytics/export?mode=sync", json={"format": "csv", "dataset": "tickets", "query": RANGE}
    )
    assert response.status_code == 422
    assert response.get_json()["error"]["details"] == {"max_rows": 5}


@pytest.mark.parametrize("fmt", ["csv", "ndjson"])
def test_sync_export_whose_database_connection_dies_before_the_first_row_is_a_503(
    live_app, data, db_engine, monkeypatch, fmt
):
    """The first block is made before the status line: a lost connection is a JSON 503, not a 500
    from the server once the body has begun."""
    original = encoders.encode

    def encode_on_a_lost_connection(fmt, table, progress):
        pid = table._driver().info.backend_pid
        with db_engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            assert conn.execute(text("SELECT pg_terminate_backend(:p)"), {"p": pid}).scalar()
            while conn.execute(
                text("SELECT count(*) FROM pg_stat_activity WHERE pid = :p"), {"p": pid}
            ).scalar():
                time.sleep(0.02)
        return original(fmt, table, progress)

    monkeypatch.setattr(encoders, "encode", encode_on_a_lost_connection)
    body = {"format": fmt, "dataset": "tickets", "query": RANGE}
    response = data.viewer.post("/api/v1/analytics/export?mode=sync", json=body)
    assert response.status_code == 503, response.data[:300]
    assert response.get_json()["error"]["code"] == "database_unavailable"
    assert response.headers["Retry-After"]

    monkeypatch.setattr(encoders, "encode", original)
    response = data.viewer.post("/api/v1/analytics/export?mode=sync", json=body)
    assert response.status_code == 200
    text_body = response.data.decode()
    rows = list(csv.reader(io.StringIO(text_body))) if fmt == "csv" else text_body.splitlines()
    assert len(rows) == 9 + (fmt == "csv")  # nine tickets (and the CSV header)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"format": "pdf", "dataset": "tickets"}, "format"),
        ({"format": "csv", "dataset": "users"}, "dataset"),
        ({"format": "csv", "dataset": "tickets", "query": {"sql": "x"}}, "query"),
        ({"format": "csv", "dataset": "tickets", "query": {"columns": ["password"]}}, "columns"),
        ({"format": "csv", "dataset": "tickets", "query": {"filters": {"status": ["bogus"]}}}, "status"),
        ({"format": "csv", "dataset": "tickets", "query": {"tz": "Mars/Base"}}, None),
        ({"format": "csv", "dataset": "time-series", "query": {"metric": "nope"}}, "metric"),
        ({"format": "csv", "dataset": "aggregations", "query": {"metrics": []}}, "metrics"),
    ],
)
def test_invalid_requests_are_400(data, body, field):
    response = data.viewer.post("/api/v1/analytics/export", json=body)
    assert response.status_code == 400, response.get_json()
    if field in ("status", "metric", "metrics", "columns", "query"):
        assert response.get_json()["error"]["details"]["field"] == field


def test_cancelled_running_export_leaves_no_file(base_app, celery_worker, services):
    tenant = _make_tenant(base_app, "Cancel", "UTC")
    with psycopg.connect(services.database_url.replace("+psycopg", "")) as conn:
        seeding.seed_tickets(conn, org_id=tenant.org_id, tickets=60_000, days=30, seed=6)
    stream = redis.Redis.from_url(services.redis_url)
    response = tenant.viewer.post("/api/v1/analytics/export", json={"format": "xlsx", "dataset": "tickets"})
    job_id = response.get_json()["job_id"]
    wait_for_job(tenant.viewer, job_id, until=("running", "succeeded", "failed"))
    # Watch progress for a while: rows written out of the total, more than once a second. (Up to 8 s
    # for the first four: a loaded machine is slow to start the export; done as soon as they came.)
    deadline = time.monotonic() + 8
    updates: list[tuple[int, float]] = []
    while time.monotonic() < deadline and len(updates) < 4:
        updates = [
            (int(entry_id.split(b"-")[0]), event["progress"])
            for entry_id, fields in stream.xrange(f"an:events:{tenant.org_id}")
            if fields[b"type"] == b"job_update"
            and (event := json.loads(fields[b"data"]))["job_id"] == job_id
            and event["state"] == "running"
            and event["progress"] > 0
        ]
        time.sleep(0.1)
    assert len(updates) >= 3, updates
    assert all(b[1] > a[1] for a, b in itertools.pairwise(updates))
    # Reported every 0.5 s of writing; a machine whose CPUs the rest of the suite fills stretches that
    # (1.14 s seen with three test workers on two CPUs), so the bound is twice the product's second.
    assert max(b[0] - a[0] for a, b in itertools.pairwise(updates)) <= 2000
    assert updates[-1][1] < 1.0

    assert tenant.admin.delete(f"/api/v1/jobs/{job_id}").status_code == 200
    done = wait_for_job(tenant.viewer, job_id)
    assert done["state"] == "cancelled"
    folder = Path(base_app.config["EXPORT_DIR"]) / str(tenant.org_id)
    assert not folder.exists() or list(folder.iterdir()) == []
    with psycopg.connect(services.database_url.replace("+psycopg", "")) as conn:
        assert conn.execute("SELECT count(*) FROM exports WHERE job_id = %s", (job_id,)).fetchone() == (0,)


def test_support_metric_exports_match_the_analytics_api(data):
    for metric in ("backlog", "csat", "net_flow"):
        query = {**RANGE, "metric": metric, "granularity": "daily"}
        result = _export(data.viewer, {"format": "json", "dataset": "time-series", "query": query})
        rows = json.loads(_download(data.viewer, result))
        api = data.viewer.get(
            f"/api/v1/analytics/time-series/{metric}?start={RANGE['start']}&end={RANGE['end']}"
            f"&tz={RANGE['tz']}&granularity=daily"
        ).get_json()
        got = [(_parse_ts(r["bucket"]), r["value"], r["count"]) for r in rows]
        assert got == [(_parse_ts(p["bucket"]), p["value"], p["count"]) for p in api["points"]]

    query = {**RANGE, "metrics": ["backlog", "one_touch"], "group_by": ["category"]}
    api = data.viewer.post("/api/v1/analytics/aggregations", json=query).get_json()
    want = [
        (
            row["group"]["category"],
            row["backlog"]["value"],
            row["one_touch"]["count"],
            row["one_touch"]["avg"],
        )
        for row in api["rows"]
    ]
    result = _export(data.viewer, {"format": "json", "dataset": "aggregations", "query": query})
    rows = json.loads(_download(data.viewer, result))
    got = [(r["category"], r["backlog_value"], r["one_touch_count"], r["one_touch_avg"]) for r in rows]
    assert got == want


def test_links_are_absolute_on_the_public_the_requested_or_the_local_address(base_app, data, link, db_engine):
    """A link works on its own (a mail client, curl -O): absolute on PUBLIC_BASE_URL, else on the
    address the request came to (GET /exports/{id}), else on LOCAL_BASE_URL (a worker's job result)."""
    with base_app.app_context():
        export = get_db_session().get(Export, link["export_id"])
        now = utcnow()
        config = base_app.config
        saved = {name: config.get(name) for name in ("PUBLIC_BASE_URL", "LOCAL_BASE_URL")}
        try:
            config.update(PUBLIC_BASE_URL=None, LOCAL_BASE_URL="http://127.0.0.1:8123")
            assert signing.download_link(export, now)[0].startswith("http://127.0.0.1:8123/api/v1/exports/")
            with base_app.test_request_context(base_url="https://support.example:8443/"):
                url = signing.download_link(export, now)[0]
                assert url.startswith(
                    f"https://support.example:8443/api/v1/exports/{export.id}/download?token="
                )
            config.update(PUBLIC_BASE_URL="https://analytics.example/")
            with base_app.test_request_context(base_url="https://support.example:8443/"):
                assert signing.download_link(export, now)[0].startswith("https://analytics.example/api/v1/")
            config.update(PUBLIC_BASE_URL=None, LOCAL_BASE_URL=None)
            assert signing.download_link(export, now)[0].startswith("/api/v1/exports/")
        finally:
            config.update(saved)
    fresh = data.viewer.get(f"/api/v1/exports/{link['export_id']}").get_json()["download_url"]
    assert fresh.startswith("http://localhost/api/v1/exports/")
    assert data.viewer.client.get(fresh).status_code == 200


def test_downloads_without_a_token_spend_the_links_budget_not_the_organizations(base_app, data, monkeypatch):
    """A link in the open can throttle its own downloads, never its organization's other requests."""
    monkeypatch.setitem(base_app.config["RATE_LIMITS_PER_MINUTE"], "downloads", 3)
    link = _export(
        data.viewer, {"format": "json", "dataset": "tickets", "query": {**RANGE, "columns": ["subject"]}}
    )
    other = _export(
        data.viewer, {"format": "json", "dataset": "tickets", "query": {**RANGE, "columns": ["id"]}}
    )
    if time.time() % 60 > 55:  # one budget window for the whole test
        time.sleep(61 - time.time() % 60)
    client = redis.Redis.from_url(base_app.config["REDIS_URL"])
    spent = ratelimit.window(data.org_id, "exports").key
    before = client.get(spent)
    anonymous = data.viewer.client
    statuses = [anonymous.get(link["download_url"]).status_code for _ in range(6)]
    assert statuses == [200, 200, 200, 429, 429, 429]
    assert client.get(spent) == before
    refused = anonymous.get(link["download_url"])
    assert refused.status_code == 429
    assert "this link's downloads budget of 3" in refused.get_json()["error"]["message"]
    assert 1 <= int(refused.headers["Retry-After"]) <= 61
    # The organization's own requests, and another export's link, are untouched.
    assert anonymous.get(other["download_url"]).status_code == 200
    assert data.viewer.get(link["download_url"]).status_code == 200
    assert data.viewer.get(f"/api/v1/exports/{link['export_id']}").status_code == 200
