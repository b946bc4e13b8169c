"""Bulk ticket import: parse a JSON array, NDJSON or CSV body, then write it all or nothing.

Each row goes through the same schema as `POST /tickets` and through `tickets.plan_ticket`, the
logic of `tickets.create_ticket`, so an imported ticket and its events are exactly what the API
would have written; the batch is written in bulk (`tickets.BulkWriter`) while it is being checked. One
request is one batch: every row is validated, and if any row fails nothing is written and the report
lists each failing row.
"""

from __future__ import annotations

import csv
import io
import logging
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

import redis
from pydantic import ValidationError
from sqlalchemy.orm import Session

from webapp.analytics import cache
from webapp.analytics.metrics import metrics_changed_by
from webapp.core import strict_json
from webapp.core.timeutil import utcnow
from webapp.live import events
from webapp.models import Organization
from webapp.tickets.fields import TicketCreate
from webapp.tickets.writes import BulkWriter, PlannedTicket, TicketError, plan_ticket

log = logging.getLogger(__name__)

FORMATS = ("json", "ndjson", "csv")
MEDIA_TYPES = {
    "application/json": "json",
    "application/x-ndjson": "ndjson",
    "application/ndjson": "ndjson",
    "application/jsonl": "ndjson",
    "application/x-jsonlines": "ndjson",
    "text/csv": "csv",
    "application/csv": "csv",
}
DEFAULT_MAX_ROWS = 10_000
DEFAULT_MAX_BYTES = 5 * 1024 * 1024
# The report lists this many failing rows and counts the rest, so a broken file cannot bloat the job row.
MAX_REPORTED_ERRORS = 500
FIELDS = tuple(TicketCreate.model_fields)
NUMERIC_FIELDS = frozenset({"sentiment_score"})
# Tickets per chunk handed to the writer: the database starts on the first chunk early and writes
# little after the last row is checked, with a few statements per chunk.
WRITE_CHUNK = 1000


class ImportFormatError(ValueError):
    """The body is not a well-formed JSON array, NDJSON or CSV of ticket objects."""

    def __init__(self, message: str, *, line: int | None = None) -> None:
        super().__init__(message)
        self.line = line


class ImportTooLarge(ValueError):
    """The body holds more rows than one import accepts."""


@dataclass
class RowError:
    row: int
    field: str | None
    message: str


@dataclass
class ImportReport:
    """What an import did (or would have done): counts and the failing rows, 1-based."""

    rows: int
    imported: int = 0
    events: int = 0
    invalid: int = 0
    errors: list[RowError] = field(default_factory=list)
    omitted: int = 0
    _last_row: int = field(default=0, repr=False)

    def add_error(self, row: int, field_name: str | None, message: str) -> None:
        if row != self._last_row:
            self.invalid += 1
            self._last_row = row
        if len(self.errors) < MAX_REPORTED_ERRORS:
            self.errors.append(RowError(row, field_name, message))
        else:
            self.omitted += 1

    def to_dict(self) -> dict[str, Any]:
        return {
            "rows": self.rows,
            "imported": self.imported,
            "events": self.events,
            "invalid": self.invalid,
            "errors": [asdict(e) for e in self.errors],
            "errors_omitted": self.omitted,
        }


class ImportRejected(Exception):
    """At least one row failed, so nothing of the batch was written; `report` says which."""

    def __init__(self, report: ImportReport) -> None:
        super().__init__(f"{report.invalid} of {report.rows} rows are invalid; nothing was imported")
        self.report = report


def format_for(content_type: str | None) -> str | None:
    """The import format a Content-Type names (parameters such as charset ignored), or None."""
    media = (content_type or "").split(";", 1)[0].strip().lower()
    return MEDIA_TYPES.get(media)


def _text(body: bytes) -> str:
    try:
        return body.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ImportFormatError(f"the body is not UTF-8 (byte {exc.start} is invalid)") from exc


def may_hide_text(body: bytes, fmt: str) -> bool:
    """Whether a parsed string of `body` may hold a character its text does not (a NUL, a lone surrogate).

    Text decoded as UTF-8 holds no lone surrogate, and CSV has no escapes: only a NUL byte in the body
    or a JSON escape (\\u....) can put either into a string. Without both, the rows need no check of
    every string.
    """
    return b"\x00" in body or (fmt != "csv" and b"\\u" in body)


def _check_count(count: int, max_rows: int) -> None:
    if count > max_rows:
        raise ImportTooLarge(
            f"the body holds more than {max_rows} rows; split it into several imports of at most {max_rows}"
        )


def _json_rows(text: str, max_rows: int) -> list[Any]:
    try:
        data = strict_json.loads(text)
    except strict_json.JsonError as exc:
        raise ImportFormatError(f"the body is not valid JSON: {exc}", line=exc.line) from exc
    if not isinstance(data, list):
        raise ImportFormatError("a JSON import must be an array of ticket objects")
    _check_count(len(data), max_rows)
    return data


def _ndjson_rows(text: str, max_rows: int) -> list[Any]:
    rows: list[Any] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        _check_count(len(rows) + 1, max_rows)
        try:
            rows.append(strict_json.loads(line))
        except strict_json.JsonError as exc:
            raise ImportFormatError(f"line {number} is not valid JSON: {exc}", line=number) from exc
    return rows


def _csv_rows(text: str, max_rows: int) -> list[Any]:
    # strict: a quote left open at the end of the body is an error, not a field running to the end.
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    try:
        header = next(reader)
    except StopIteration:
        return []
    except csv.Error as exc:
        raise ImportFormatError(f"line 1 is not valid CSV: {exc}", line=1) from exc
    names = [name.strip() for name in header]
    unknown = [name for name in names if name not in FIELDS]
    if unknown:
        raise ImportFormatError(f"unknown CSV column {unknown[0]!r}; allowed: {', '.join(FIELDS)}", line=1)
    if len(set(names)) != len(names):
        raise ImportFormatError("a CSV column is named twice in the header", line=1)
    rows: list[Any] = []
    try:
        for cells in reader:
            if not any(cell.strip() for cell in cells):
                continue
            _check_count(len(rows) + 1, max_rows)
            if len(cells) > len(names):
                rows.append({"__error__": f"the row has {len(cells)} cells but the header {len(names)}"})
                continue
            # An empty cell means "not given", as an absent key does in JSON.
            pairs = zip(names, cells, strict=False)
            rows.append({name: _cell(name, cell) for name, cell in pairs if cell != ""})
    except csv.Error as exc:
        raise ImportFormatError(
            f"line {reader.line_num} is not valid CSV: {exc}", line=reader.line_num
        ) from exc
    return rows


def _cell(name: str, text: str) -> Any:
    """A CSV cell as the JSON value it stands for: numbers for numeric fields (text that is not a
    number stays text, and validation says so)."""
    if name in NUMERIC_FIELDS:
        try:
            return float(text)
        except ValueError:
            return text
    return text


def parse_rows(body: bytes, fmt: str, *, max_rows: int = DEFAULT_MAX_ROWS) -> list[Any]:
    """The records of an import body, unvalidated; raises ImportFormatError or ImportTooLarge."""
    text = _text(body)
    if fmt == "json":
        rows = _json_rows(text, max_rows)
    elif fmt == "ndjson":
        rows = _ndjson_rows(text, max_rows)
    elif fmt == "csv":
        rows = _csv_rows(text, max_rows)
    else:
        raise ValueError(f"unknown import format {fmt!r}")
    if not rows:
        raise ImportFormatError("the body holds no tickets")
    return rows


def validate_row(raw: Any) -> tuple[dict[str, Any] | None, list[tuple[str | None, str]]]:
    """The fields of one record as `POST /tickets` accepts them, or the (field, message) problems."""
    if not isinstance(raw, dict):
        return None, [(None, "each ticket must be an object")]
    if "__error__" in raw:
        return None, [(None, str(raw["__error__"]))]
    try:
        return TicketCreate.model_validate(raw).model_dump(exclude_unset=True), []
    except ValidationError as exc:
        problems = []
        for err in exc.errors(include_url=False, include_context=False):
            name = ".".join(str(part) for part in err["loc"]) or None
            problems.append((name, err["msg"]))
        return None, problems


def _plan_row(
    org: Organization, raw: Any, now: datetime, index: int, report: ImportReport, fields_given: set[str]
) -> PlannedTicket | None:
    """What row `index` (1-based) writes, or None with its problems added to `report`."""
    fields, problems = validate_row(raw)
    for name, message in problems:
        report.add_error(index, name, message)
    if fields is None:
        return None
    try:
        plan = plan_ticket(org, fields, now)
    except TicketError as exc:
        report.add_error(index, exc.field, str(exc))
        return None
    fields_given.update(fields)
    return plan


def import_rows(
    session: Session,
    org: Organization,
    rows: list[Any],
    *,
    now: datetime | None = None,
    on_progress: Callable[[float], None] | None = None,
    checkpoints: int = 12,
) -> tuple[ImportReport, list[str], set[str]]:
    """Create every row's ticket in `session` (not committed), or raise ImportRejected.

    Every row is validated and planned (tickets.plan_ticket, what create_ticket would write). While
    all pass, the planned tickets go chunk by chunk to a tickets.BulkWriter, which writes one chunk
    in the database while the next is checked; the first failing row stops the writing (the caller's
    rollback undoes what was written) but not the checking, so the report names every failing row.
    Returns the report, the event types written and the fields given, for what follows the commit.
    `on_progress` is called about `checkpoints` times with the fraction done.
    """
    now = now or utcnow()
    report = ImportReport(rows=len(rows))
    fields_given: set[str] = set()
    chunk: list[PlannedTicket] = []
    every = max(1, len(rows) // checkpoints)
    # The checks run while the database writes; the rollups after them take about as long again.
    share = 0.5
    with BulkWriter(session, org.id, len(rows)) as writer:
        for index, raw in enumerate(rows, start=1):
            plan = _plan_row(org, raw, now, index, report, fields_given)
            if plan is not None and not report.invalid:
                chunk.append(plan)
                if len(chunk) == WRITE_CHUNK:
                    writer.add(chunk)
                    chunk = []
            if on_progress is not None and index % every == 0 and index < len(rows):
                on_progress(share * index / len(rows))
        if report.invalid:
            raise ImportRejected(report)
        writer.add(chunk)
        written = writer.finish()
    report.imported = len(written.ticket_ids)
    report.events = written.events
    return report, sorted(written.event_types), fields_given


def after_import(
    client: redis.Redis, org_id: int, event_types: Iterable[str], fields: Iterable[str], *, job_id: str
) -> None:
    """After the commit: invalidate what the new tickets change and tell live clients once."""
    types, given = list(event_types), tuple(fields)
    try:
        cache.bump(client, org_id, cache.families_for(types, given))
    except redis.RedisError as exc:
        log.warning("generation bump failed after import job=%s org=%s: %s", job_id, org_id, exc)
    metrics = metrics_changed_by(types, given)
    if metrics:
        # One event for the whole batch: thousands of per-ticket events would flood the stream.
        events.publish(
            client,
            org_id,
            "metric_update",
            {
                "import_job_id": job_id,
                "events": types,
                "metrics": sorted(metrics),
                "families": sorted(cache.families_for(types, given)),
            },
        )
