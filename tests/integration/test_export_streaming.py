"""The streaming CSV / JSON export path: blocks of any size, rows counted as they stream instead of a
count query, progress against the planner's estimate, a cancel mid-stream, and copies for responses.

Expected values come from the database read back with plain SQL and from the rules spelled out here,
never from the export code.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import event, text
from sqlalchemy.orm import Session

from tests.conftest import _make_tenant
from webapp.api.schemas.exports import ExportRequest
from webapp.core.timeutil import utcnow
from webapp.exports import encoders, files, tables
from webapp.exports.progress import Progress
from webapp.exports.spec import ExportSpec

RANGE = {"start": "2026-03-01", "end": "2026-03-08", "tz": "UTC"}
# Text starting with each formula prefix, and with characters close to them that are not prefixes
# (the SQL tests a code range before the list), plus quoting, Unicode and the empty string.
SUBJECTS = (
    "=SUM(A1)",
    "+1",
    "-1",
    "@who",
    "\ttab",
    "\rcr",
    "\nlf",
    "1 apple",
    " leading space",
    "#hash",
    "'quoted",
    "(paren",
    "<tag",
    "?q",
    "!bang",
    'say "hi", twice',
    "A plain one",
    "ünïcödé ✓",
    "",
)
# What a spreadsheet would evaluate (Excel, LibreOffice, Google Sheets), written out independently.
DANGEROUS = ("=", "+", "-", "@", "\t", "\r", "\n")
TICKETS = 400
COLUMNS = ("id", "subject", "category", "assigned_to", "sentiment_score", "created_at", "reopen_count")


def _safe(value: str | None) -> str:
    if value is None:
        return ""
    return "'" + value if value[:1] in DANGEROUS else value


@pytest.fixture(scope="module")
def org(base_app: Flask) -> int:
    """A committed organization with TICKETS tickets in RANGE and a few outside it."""
    org_id = _make_tenant(base_app, "Streaming", "UTC").org_id
    start = datetime(2026, 3, 1, tzinfo=UTC)
    rows = [
        {
            "org": org_id,
            "subject": SUBJECTS[i % len(SUBJECTS)],
            "category": ("billing", "=cmd", "@ops", "returns")[i % 4],
            "assigned_to": (None, "+agent", "bob")[i % 3],
            "sentiment": (None, -0.5, 0.25)[i % 3],
            # Some share a creation time, so the id breaks the tie in the order.
            "created": start + timedelta(minutes=25 * (i // 2)),
        }
        for i in range(TICKETS)
    ]
    rows += [
        {**rows[0], "created": start - timedelta(seconds=1)},
        {**rows[1], "created": start + timedelta(days=7)},
    ]
    with base_app.extensions["db_engine"].begin() as conn:
        conn.execute(
            text(
                "INSERT INTO tickets (org_id, subject, status, priority, channel, category, assigned_to,"
                " sentiment_score, created_at, reopen_count)"
                " VALUES (:org, :subject, 'open', 'normal', 'email', :category, :assigned_to, :sentiment,"
                " :created, 0)"
            ),
            rows,
        )
    return org_id


def _db_rows(base_app: Flask, org_id: int) -> list[dict[str, Any]]:
    with base_app.extensions["db_engine"].connect() as conn:
        result = conn.execute(
            text(
                f"SELECT {', '.join(COLUMNS)} FROM tickets WHERE org_id = :org"
                " AND created_at >= '2026-03-01T00:00:00Z' AND created_at < '2026-03-08T00:00:00Z'"
                " ORDER BY created_at, id"
            ),
            {"org": org_id},
        )
        return [dict(row._mapping) for row in result]


def _spec(fmt: str, **query: str) -> ExportSpec:
    request = {"format": fmt, "dataset": "tickets", "query": {**RANGE, "columns": list(COLUMNS), **query}}
    return ExportRequest.model_validate(request).root.spec(default_tz="UTC", now=utcnow())


def _session(app: Flask) -> Session:
    return app.extensions["db_sessionmaker"]()


def _check_csv(body: bytes, expected: list[dict[str, Any]]) -> None:
    rows = list(csv.DictReader(io.StringIO(body.decode(), newline="")))
    assert [list(row) for row in rows[:1]] == [list(COLUMNS)]
    assert len(rows) == len(expected)
    for got, want in zip(rows, expected, strict=True):
        assert int(got["id"]) == want["id"]
        for name in ("subject", "category", "assigned_to"):
            assert got[name] == _safe(want[name]), (name, want[name])
        assert (float(got["sentiment_score"]) if got["sentiment_score"] else None) == want["sentiment_score"]
        assert datetime.fromisoformat(got["created_at"]) == want["created_at"]


def _check_json(items: list[dict[str, Any]], expected: list[dict[str, Any]]) -> None:
    assert len(items) == len(expected)
    for got, want in zip(items, expected, strict=True):
        assert list(got) == list(COLUMNS)
        # JSON is data, not a spreadsheet: text comes back exactly as stored.
        assert {**got, "created_at": datetime.fromisoformat(got["created_at"])} == want


def _parse(fmt: str, body: bytes) -> list[dict[str, Any]]:
    lines = body.decode().split("\n")
    assert lines[-1] == ""  # every line ends with a newline
    if fmt == "ndjson":
        return [json.loads(line) for line in lines[:-1]]
    # An array of objects, one a line: "[", "{...},", ..., "{...}", "]".
    assert lines[0] == "["
    assert lines[-2] == "]"
    elements = lines[1:-2]
    assert all(line.endswith("},") for line in elements[:-1])
    assert json.loads("[" + "".join(elements) + "]") == json.loads(body)
    return json.loads(body)


class Clock:
    """A monotonic clock that moves on a second each time it is read: every progress update reports."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        self.now += 1.0
        return self.now


@pytest.mark.parametrize("block_bytes", [1, 700, encoders.BLOCK_BYTES])
@pytest.mark.parametrize("fmt", ["csv", "json", "ndjson"])
def test_exports_read_back_as_the_database_whatever_the_block_size(
    live_app, org, tmp_path, monkeypatch, fmt, block_bytes
):
    monkeypatch.setattr(encoders, "BLOCK_BYTES", block_bytes)
    expected = _db_rows(live_app, org)
    assert len(expected) == TICKETS
    with _session(live_app) as session:
        written = files.write_export(
            session, org_id=org, job_id="blocks", spec=_spec(fmt), directory=tmp_path, now=utcnow()
        )
    body = written.path.read_bytes()
    assert written.rows == TICKETS
    assert written.bytes == len(body)
    assert written.sha256 == hashlib.sha256(body).hexdigest()
    if fmt == "csv":
        _check_csv(body, expected)
    else:
        _check_json(_parse(fmt, body), expected)
    assert body.endswith(b"\n")
    assert [p.name for p in written.path.parent.iterdir()] == [written.path.name]


@pytest.mark.parametrize("fmt", ["csv", "json", "ndjson"])
def test_an_empty_range_is_a_header_or_an_empty_array(live_app, org, tmp_path, fmt):
    spec = _spec(fmt, start="2020-01-01T00:00:00+00:00", end="2020-01-02T00:00:00+00:00")
    with _session(live_app) as session:
        written = files.write_export(
            session, org_id=org, job_id="empty", spec=spec, directory=tmp_path, now=utcnow()
        )
    assert written.rows == 0
    body = written.path.read_bytes()
    assert body == {"csv": ",".join(COLUMNS).encode() + b"\n", "json": b"[\n]\n", "ndjson": b""}[fmt]


def test_stream_exports_count_as_they_write_and_report_the_exact_total_last(
    live_app, org, tmp_path, monkeypatch
):
    monkeypatch.setattr(encoders, "BLOCK_BYTES", 2000)
    monkeypatch.setattr("webapp.exports.progress.monotonic", Clock())
    statements: list[str] = []

    def seen(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        statements.append(statement)

    engine = live_app.extensions["db_engine"]
    event.listen(engine, "before_cursor_execute", seen)
    reports: list[tuple[int, int]] = []
    try:
        with _session(live_app) as session:
            written = files.write_export(
                session,
                org_id=org,
                job_id="progress",
                spec=_spec("csv"),
                directory=tmp_path,
                now=utcnow(),
                report=lambda rows, total: reports.append((rows, total)),
            )
    finally:
        event.remove(engine, "before_cursor_execute", seen)
    assert not [s for s in statements if "count(" in s.lower()], statements
    assert written.rows == TICKETS
    # The first report comes before any row, the last one just before the file appears, exact.
    assert reports[0][0] == 0
    assert reports[-1] == (TICKETS, TICKETS)
    during = reports[1:-1]
    assert len(during) >= 5, reports
    assert [rows for rows, _ in during] == sorted(rows for rows, _ in during)
    # Whatever the planner estimated, a running export never looks finished.
    assert all(0 < rows / total < 1 for rows, total in during), during


def test_xlsx_exports_still_count_first(live_app, org, tmp_path, monkeypatch):
    monkeypatch.setattr("webapp.exports.progress.monotonic", Clock())
    reports: list[tuple[int, int]] = []
    with _session(live_app) as session:
        files.write_export(
            session,
            org_id=org,
            job_id="xlsx",
            spec=_spec("xlsx"),
            directory=tmp_path,
            now=utcnow(),
            report=lambda rows, total: reports.append((rows, total)),
        )
    assert {total for _, total in reports} == {TICKETS}


def test_progress_against_an_estimate_stays_below_one_until_finished():
    reports: list[tuple[int, int]] = []
    progress = Progress(10, lambda rows, total: reports.append((rows, total)), interval=0, exact=False)
    progress.update(5)  # within the estimate: the estimate is the total
    progress.update(99)  # past it: 99 rows are shown as 99 % at most
    progress.update(250)
    progress.finish()
    progress.checkpoint()
    assert reports == [(5, 10), (99, 100), (250, 253), (250, 250)]

    exact: list[tuple[int, int]] = []
    progress = Progress(300, lambda rows, total: exact.append((rows, total)), interval=0)
    progress.update(150)
    assert exact == [(150, 300)]


class Cancelled(Exception):
    pass


@pytest.mark.parametrize("fmt", ["csv", "json"])
def test_a_cancel_mid_stream_leaves_no_file_and_stops_the_copy(live_app, org, tmp_path, monkeypatch, fmt):
    monkeypatch.setattr(encoders, "BLOCK_BYTES", 1000)
    monkeypatch.setattr("webapp.exports.progress.monotonic", Clock())
    calls: list[int] = []

    def report(rows: int, total: int) -> None:
        calls.append(rows)
        if len(calls) == 3:
            raise Cancelled

    with _session(live_app) as session:
        with pytest.raises(Cancelled):
            files.write_export(
                session,
                org_id=org,
                job_id="cancel",
                spec=_spec(fmt),
                directory=tmp_path,
                now=utcnow(),
                report=report,
            )
        assert 0 < calls[-1] < TICKETS
        # The connection left the COPY: it answers the next statement.
        session.rollback()
        assert session.execute(text("SELECT 1")).scalar_one() == 1
    assert list((tmp_path / str(org)).iterdir()) == []


def test_encode_hands_out_blocks_that_stay(live_app, org, monkeypatch):
    """What a streamed response gets: bytes of its own, good after the next block is made."""
    monkeypatch.setattr(encoders, "BLOCK_BYTES", 500)
    expected = _db_rows(live_app, org)
    with _session(live_app) as session:
        table = tables.open_table(session, org_id=org, query=_spec("csv").query)
        assert table.exact
        assert table.total == TICKETS
        blocks = list(encoders.encode("csv", table, Progress(table.total)))
        session.rollback()
    assert len(blocks) > 10
    assert all(type(block) is bytes for block in blocks)
    _check_csv(b"".join(blocks), expected)


def test_a_response_closed_early_stops_the_copy(live_app, org, monkeypatch):
    monkeypatch.setattr(encoders, "BLOCK_BYTES", 500)
    with _session(live_app) as session:
        table = tables.open_table(session, org_id=org, query=_spec("ndjson").query)
        stream = encoders.encode("ndjson", table, Progress(table.total))
        first = next(stream)
        stream.close()
        assert json.loads(first.splitlines()[0])["id"] == _db_rows(live_app, org)[0]["id"]
        session.rollback()
        assert session.execute(text("SELECT 1")).scalar_one() == 1


class Trickle(io.RawIOBase):
    """A raw file that takes at most three bytes a write, as a raw write is allowed to."""

    def __init__(self) -> None:
        self.data = bytearray()

    def writable(self) -> bool:
        return True

    def write(self, b: Any) -> int:
        taken = bytes(b[:3])
        self.data += taken
        return len(taken)


def test_partial_raw_writes_are_completed():
    out = Trickle()
    block = bytearray(b"0123456789" * 7 + b"x")
    assert files._write_all(out, block) == len(block)  # type: ignore[arg-type]
    assert bytes(out.data) == bytes(block)
    block.clear()  # no view of the block is left behind
