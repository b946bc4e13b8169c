"""Streaming CSV / JSON / XLSX exports of the tickets, time-series and aggregations datasets.

Raw tickets stream out of PostgreSQL: CSV and JSON through COPY ... TO STDOUT, so the server
formats every value and Python only moves bytes (about five times csv.writer over fetched rows),
and XLSX from a server-side cursor into XlsxWriter's constant-memory mode. Time series and
aggregations are bounded by the analytics limits (buckets, rows), so the analytics functions
compute them and they are written from memory. An export reads one REPEATABLE READ snapshot, so
a row count taken first is the number of rows written. A CSV or JSON export job skips that count
(at a million rows it costs about a tenth of the COPY): it counts the rows as they stream and
takes the planner's estimate as the progress total until the last row is in.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import tempfile
import threading
import uuid
from collections.abc import Callable, Generator, Iterator, Mapping, Sequence
from contextlib import closing
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from time import monotonic
from typing import Any, BinaryIO, Literal
from zoneinfo import ZoneInfo

import xlsxwriter
from sqlalchemy import select, text
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from webapp.analytics import aggregations, queries
from webapp.analytics.aggregations import QueryError
from webapp.analytics.buckets import GRANULARITIES, make_buckets, resolve_range
from webapp.analytics.metrics import GROUPABLE, METRICS
from webapp.core.filters import parse_filters
from webapp.core.timeutil import parse_datetime, zone
from webapp.models.jobs import Export

DATASETS = ("tickets", "time-series", "aggregations")
FORMATS = ("csv", "json", "ndjson", "xlsx")
CONTENT_TYPES = {
    "csv": "text/csv; charset=utf-8",
    "json": "application/json",
    "ndjson": "application/x-ndjson",
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
}
# The media types alone (without parameters), as the API document lists them.
MEDIA_TYPES = tuple(sorted({value.split(";")[0] for value in CONTENT_TYPES.values()}))
# Excel's limit per sheet, header row included: rows past it continue on another sheet.
XLSX_SHEET_ROWS = 1_048_576
# Excel, LibreOffice and Google Sheets read a cell starting with = + - @ as a formula; some strip a
# leading tab, CR or LF first. Such text gets a leading ' in CSV and the quote-prefix flag in XLSX.
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r", "\n")
_FORMULA_START = frozenset(FORMULA_PREFIXES)
# Every prefix is ASCII below this code: one comparison settles a value that starts with a letter.
_FORMULA_BOUND = max(ord(c) for c in FORMULA_PREFIXES) + 1
PROGRESS_SECONDS = 0.5
# While the total is the planner's estimate, progress stays at most this (in %) until the last row is in.
ESTIMATED_PROGRESS_PERCENT = 99
# Rows are gathered into blocks of at least this size: one write, one hash update and one progress
# check per block rather than per row.
BLOCK_BYTES = 1024 * 1024
FETCH_ROWS = 2000
TIME_SERIES_GRANULARITY = "daily"

Kind = Literal["int", "float", "text", "timestamp"]
Report = Callable[[int, int], None]


@dataclass(frozen=True)
class Column:
    name: str
    kind: Kind


TICKET_COLUMNS: dict[str, Kind] = {
    "id": "int",
    "subject": "text",
    "status": "text",
    "priority": "text",
    "channel": "text",
    "category": "text",
    "assigned_to": "text",
    "sentiment_score": "float",
    "created_at": "timestamp",
    "updated_at": "timestamp",
    "first_response_at": "timestamp",
    "resolved_at": "timestamp",
    "reopen_count": "int",
}
_RANGE_KEYS = ("start", "end", "tz", "filters")
QUERY_KEYS: dict[str, tuple[str, ...]] = {
    "tickets": (*_RANGE_KEYS, "columns"),
    "time-series": (*_RANGE_KEYS, "metric", "granularity"),
    "aggregations": (*_RANGE_KEYS, "metrics", "group_by", "granularity", "percentiles"),
}


# --- validation -----------------------------------------------------------------------------


def _only(
    query: Mapping[str, Any], allowed: Sequence[str], what: str = "query field", field: str = "query"
) -> None:
    unknown = sorted(set(query) - set(allowed))
    if unknown:
        raise QueryError(f"unknown {what} {unknown[0]!r}; allowed: {', '.join(allowed)}", field)


def _typed(query: Mapping[str, Any]) -> None:
    """Refuse values of the wrong JSON type up front, so what follows may rely on the types."""
    for key, value in query.items():
        if value is None:
            continue
        if key in ("start", "end", "tz", "metric", "granularity") and not isinstance(value, str):
            raise QueryError(f"{key} must be a string", key)
        if key in ("columns", "metrics", "group_by") and not (
            isinstance(value, list) and all(isinstance(v, str) for v in value)
        ):
            raise QueryError(f"{key} must be a list of strings", key)
        if key == "percentiles" and not isinstance(value, list):
            raise QueryError("percentiles must be a list of integers, e.g. [50, 95, 99]", key)
        if key == "filters" and not isinstance(value, Mapping):
            raise QueryError('filters must be an object, e.g. {"status": ["open"]}', key)


def _range(query: Mapping[str, Any], default_tz: str, now: datetime) -> dict[str, Any]:
    """Canonical tz, [start, end) in UTC and filters of a query (default: the last 30 local days)."""
    tz = zone(query.get("tz") or default_tz)
    start = parse_datetime(query["start"], tz, "start") if query.get("start") else None
    end = parse_datetime(query["end"], tz, "end") if query.get("end") else None
    try:
        start, end = resolve_range(start, end, tz, now)
    except OverflowError as exc:  # a default start 30 days before year 1
        raise QueryError("the range reaches beyond the supported years 1..9999", "start") from exc
    filters_in = query.get("filters") or {}
    _only(filters_in, GROUPABLE, "filter", "filters")
    return {
        "tz": tz.key,
        "start": start.astimezone(UTC).isoformat(),
        "end": end.astimezone(UTC).isoformat(),
        "filters": parse_filters(filters_in),
    }


def _ticket_query(query: Mapping[str, Any], default_tz: str, now: datetime) -> dict[str, Any]:
    columns = query.get("columns") or list(TICKET_COLUMNS)
    unknown = [c for c in columns if c not in TICKET_COLUMNS]
    if unknown:
        raise QueryError(f"unknown column {unknown[0]!r}; allowed: {', '.join(TICKET_COLUMNS)}", "columns")
    return {"columns": list(dict.fromkeys(columns)), **_range(query, default_tz, now)}


def _time_series_query(query: Mapping[str, Any], default_tz: str, now: datetime) -> dict[str, Any]:
    metric = query.get("metric")
    if metric not in METRICS:
        raise QueryError(f"metric must be one of {', '.join(METRICS)}", "metric")
    granularity = query.get("granularity") or TIME_SERIES_GRANULARITY
    if granularity not in GRANULARITIES:
        raise QueryError(
            f"unknown granularity {granularity!r}; allowed: {', '.join(GRANULARITIES)}", "granularity"
        )
    window = _range(query, default_tz, now)
    # Refuses a range of too many buckets now, before any job is queued.
    make_buckets(
        granularity,
        datetime.fromisoformat(window["start"]),
        datetime.fromisoformat(window["end"]),
        zone(window["tz"]),
    )
    return {"metric": metric, "granularity": granularity, **window}


def canonical_params(request: Mapping[str, Any], *, default_tz: str, now: datetime) -> dict[str, Any]:
    """The validated, canonical `{dataset, format, query}` of an export request (raises QueryError & co.)."""
    dataset, fmt = request.get("dataset"), request.get("format")
    if dataset not in DATASETS:
        raise QueryError(f"dataset must be one of {', '.join(DATASETS)}", "dataset")
    if fmt not in FORMATS:
        raise QueryError(f"format must be one of {', '.join(FORMATS)}", "format")
    query = request.get("query") or {}
    if not isinstance(query, Mapping):
        raise QueryError("query must be an object", "query")
    _only(query, QUERY_KEYS[dataset])
    _typed(query)
    if dataset == "tickets":
        canonical = _ticket_query(query, default_tz, now)
    elif dataset == "time-series":
        canonical = _time_series_query(query, default_tz, now)
    else:
        canonical = aggregations.canonical_params(query, default_tz=default_tz, now=now)
    return {"dataset": dataset, "format": fmt, "query": canonical}


# --- tables: what an export writes ----------------------------------------------------------


class Table:
    """Rows to export: their columns, how many there are, and the zone their timestamps are shown in.

    `total` is the row count when `exact`, else the planner's estimate of it (good for progress only).
    """

    columns: tuple[Column, ...]
    total: int
    exact: bool = True
    tz: ZoneInfo

    def rows(self) -> Iterator[Sequence[Any]]:
        """Python values in column order; timestamps aware."""
        raise NotImplementedError

    def copy(self, fmt: str) -> Iterator[Any] | None:
        """COPY output, one buffer per row (CSV: the header first), or None where COPY cannot serve `fmt`."""
        return None


class MemoryTable(Table):
    """Rows already computed (time series and aggregations are bounded by the analytics limits)."""

    def __init__(self, columns: Sequence[Column], rows: list[list[Any]], tz: ZoneInfo) -> None:
        self.columns = tuple(columns)
        self._rows = rows
        self.total = len(rows)
        self.tz = tz

    def rows(self) -> Iterator[Sequence[Any]]:
        return iter(self._rows)


def _neutralised(expr: str, name: str) -> str:
    # ascii() of the first character is cheaper than left() or a regular expression per row, and the
    # range test first spares most values the IN list: over 1M rows of six text columns it took the
    # CASEs' server time from about 0.2 s (a seventh of the COPY's) to a few hundredths.
    codes = ", ".join(str(ord(c)) for c in FORMULA_PREFIXES)
    first = f"ascii({expr})"
    return (
        f"CASE WHEN {first} < {_FORMULA_BOUND} AND {first} IN ({codes})"
        f" THEN '''' || {expr} ELSE {expr} END AS {name}"
    )


class TicketTable(Table):
    """Tickets created in [start, end) matching the filters, oldest first, straight from PostgreSQL."""

    def __init__(
        self,
        session: Session,
        *,
        org_id: int,
        query: Mapping[str, Any],
        limit: int | None = None,
        count: bool = True,
    ) -> None:
        self.session = session
        self.tz = zone(query["tz"])
        self.columns = tuple(Column(name, TICKET_COLUMNS[name]) for name in query["columns"])
        params: dict[str, Any] = {
            "org_id": org_id,
            "start": datetime.fromisoformat(query["start"]),
            "end": datetime.fromisoformat(query["end"]),
        }
        self._where = (
            "t.org_id = :org_id AND t.created_at >= :start AND t.created_at < :end"
            + queries.filter_sql("t", query["filters"], params)
        )
        self._params = params
        self._order = "ORDER BY t.created_at, t.id" + (f" LIMIT {int(limit)}" if limit is not None else "")
        # The session's zone makes COPY and to_json write timestamps with the export's offset.
        session.execute(text("SELECT set_config('TimeZone', :tz, true)"), {"tz": self.tz.key})
        limited = f" LIMIT {int(limit)}" if limit is not None else ""
        matching = f"SELECT 1 FROM tickets t WHERE {self._where}{limited}"
        if count:
            self.total = session.execute(text(f"SELECT count(*) FROM ({matching}) c"), params).scalar_one()
        else:
            # Planning only, no row read: at 1M rows the count is a parallel scan of ~0.15 s.
            plan = session.execute(text(f"EXPLAIN (FORMAT JSON) {matching}"), params).scalar_one()
            self.total = int(plan[0]["Plan"]["Plan Rows"])
            self.exact = False

    def _driver_sql(self, sql: str) -> tuple[str, dict[str, Any]]:
        """`sql` with psycopg placeholders (COPY binds its parameters client-side)."""
        compiled = text(sql).compile(dialect=self.session.get_bind().dialect)
        return str(compiled), self._params

    def _driver(self) -> Any:
        return self.session.connection().connection.driver_connection

    def copy(self, fmt: str) -> Iterator[Any] | None:
        if fmt == "csv":
            select_list = ", ".join(
                _neutralised(f"t.{c.name}", c.name) if c.kind == "text" else f"t.{c.name}"
                for c in self.columns
            )
            query = f"SELECT {select_list} FROM tickets t WHERE {self._where} {self._order}"
            options = "FORMAT csv, HEADER true"
        elif fmt in ("json", "ndjson"):
            # PostgreSQL escapes control characters inside JSON, so with \x01 as delimiter and \x02 as
            # quote no JSON text ever needs CSV quoting: each output row is the document, verbatim.
            row = ", ".join(f"t.{c.name}" for c in self.columns)
            query = (
                f"SELECT to_json(r) FROM tickets t CROSS JOIN LATERAL (SELECT {row}) r"
                f" WHERE {self._where} {self._order}"
            )
            options = "FORMAT csv, DELIMITER E'\\x01', QUOTE E'\\x02'"
        else:
            return None
        sql, params = self._driver_sql(query)
        return self._stream_copy(f"COPY ({sql}) TO STDOUT WITH ({options})", params)

    def _stream_copy(self, statement: str, params: dict[str, Any]) -> Iterator[Any]:
        with self._driver().cursor() as cursor, cursor.copy(statement, params) as copy:
            yield from copy

    def rows(self) -> Iterator[Sequence[Any]]:
        select_list = ", ".join(f"t.{c.name}" for c in self.columns)
        sql, params = self._driver_sql(
            f"SELECT {select_list} FROM tickets t WHERE {self._where} {self._order}"
        )
        # A server-side cursor: memory holds FETCH_ROWS rows, never the result.
        with self._driver().cursor(name=f"export_{uuid.uuid4().hex}") as cursor:
            cursor.execute(sql, params)
            while batch := cursor.fetchmany(FETCH_ROWS):
                yield from batch


def _time_series_table(session: Session, org_id: int, query: Mapping[str, Any]) -> MemoryTable:
    tz = zone(query["tz"])
    start, end = datetime.fromisoformat(query["start"]), datetime.fromisoformat(query["end"])
    definition = METRICS[query["metric"]]
    result = queries.time_series(
        session,
        org_id=org_id,
        metric=query["metric"],
        buckets=make_buckets(query["granularity"], start, end, tz),
        start=start,
        end=end,
        filters=query["filters"],
    )
    if definition.is_count:
        columns = [Column("bucket", "timestamp"), Column("value", "int"), Column("count", "int")]
        rows = [[datetime.fromisoformat(p["bucket"]), p["value"], p["count"]] for p in result["points"]]
    else:
        columns = [
            Column("bucket", "timestamp"),
            Column("value", "float"),
            Column("count", "int"),
            Column("min", "float"),
            Column("max", "float"),
        ]
        rows = [
            [datetime.fromisoformat(p["bucket"]), p["value"], p["count"], p["min"], p["max"]]
            for p in result["points"]
        ]
    return MemoryTable(columns, rows, tz)


def _aggregation_table(session: Session, org_id: int, query: Mapping[str, Any]) -> MemoryTable:
    """One row per group (and bucket); each metric's statistics flattened to `<metric>_<stat>` columns."""
    result = aggregations.run_aggregation(session, org_id=org_id, params=query)
    columns = [Column(name, "text") for name in result["group_by"]]
    if result["granularity"]:
        columns.append(Column("bucket", "timestamp"))
    stats: list[tuple[str, str]] = []
    for metric in result["metrics"]:
        if METRICS[metric].is_count:
            columns.append(Column(metric, "int"))
            stats.append((metric, "count"))
            continue
        for stat in ("count", "avg", "min", "max", *(f"p{p}" for p in result["percentiles"])):
            columns.append(Column(f"{metric}_{stat}", "int" if stat == "count" else "float"))
            stats.append((metric, stat))
    rows = []
    for item in result["rows"]:
        row: list[Any] = [item["group"][name] for name in result["group_by"]]
        if result["granularity"]:
            row.append(datetime.fromisoformat(item["bucket"]))
        row.extend(item[metric].get(stat) for metric, stat in stats)
        rows.append(row)
    return MemoryTable(columns, rows, zone(query["tz"]))


def open_table(
    session: Session,
    *,
    org_id: int,
    dataset: str,
    query: Mapping[str, Any],
    limit: int | None = None,
    statement_timeout_ms: int | None = None,
    count: bool = True,
) -> Table:
    """The rows of an export, read from one REPEATABLE READ snapshot that the session's next commit ends.

    The session must not be inside a transaction (the isolation level must come first). `limit` caps
    the ticket rows counted and read (sync exports count only up to their cap). `count=False` leaves
    the tickets uncounted, their `total` the planner's estimate, for a caller that counts as it writes.
    """
    if session.in_transaction():
        raise RuntimeError("open_table needs a session outside a transaction")
    session.execute(text("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ"))
    if statement_timeout_ms:
        session.execute(
            text("SELECT set_config('statement_timeout', :ms, true)"), {"ms": str(int(statement_timeout_ms))}
        )
    if dataset == "tickets":
        return TicketTable(session, org_id=org_id, query=query, limit=limit, count=count)
    if dataset == "time-series":
        return _time_series_table(session, org_id, query)
    if dataset == "aggregations":
        return _aggregation_table(session, org_id, query)
    raise ValueError(f"unknown dataset {dataset!r}")


# --- encoders --------------------------------------------------------------------------------


class Progress:
    """Rows written so far, passed on to `report(rows, total)` at most every PROGRESS_SECONDS.

    An estimated total (`exact=False`) is reported as at least rows * 100 / ESTIMATED_PROGRESS_PERCENT,
    so a low estimate never shows the export as done while it still runs; finish() makes it exact.
    """

    def __init__(
        self,
        total: int,
        report: Report | None = None,
        interval: float = PROGRESS_SECONDS,
        *,
        exact: bool = True,
    ) -> None:
        self.total = total
        self.exact = exact
        self.rows = 0
        self._report = report
        self.interval = interval
        self._due = monotonic() + interval

    def update(self, rows: int) -> None:
        self.rows = rows
        if self._report is not None and monotonic() >= self._due:
            self._report(rows, self._reported_total())
            self._due = monotonic() + self.interval

    def checkpoint(self) -> None:
        """Report now, whatever the clock says (e.g. the last chance to cancel before the file appears)."""
        if self._report is not None:
            self._report(self.rows, self._reported_total())
        self._due = monotonic() + self.interval

    def finish(self) -> None:
        """Every row is written: from now on the rows are the total (an estimate gives way to the count)."""
        self.total = self.rows
        self.exact = True

    def _reported_total(self) -> int:
        if self.exact:
            return self.total
        return max(self.total, -(-self.rows * 100 // ESTIMATED_PROGRESS_PERCENT))  # integer ceiling


def _neutralise(value: str) -> str:
    return "'" + value if value and value[0] in _FORMULA_START else value


# What the encoders hand out: bytes, or the one bytearray _blocks refills (see there).
Block = bytes | bytearray


def _blocks(
    chunks: Iterator[Any], progress: Progress, *, header: bool = False, array: bool = False
) -> Generator[bytearray, None, None]:
    """COPY rows (one buffer each, newline-terminated) gathered into blocks of at least BLOCK_BYTES.

    Every block is the same bytearray, emptied and refilled once the next one is asked for: the
    consumer writes (or copies) it first, so a row is copied once, into the block, and never joined.
    Rows are counted as they pass and reported once a block. `header`: the first buffer is a header,
    not a row. `array`: frame the rows as a JSON array.
    """
    buffer = bytearray()
    try:
        if array:
            rows = yield from _fill_array(chunks, buffer, progress)
        else:
            rows = yield from _fill(chunks, buffer, progress, header=header)
    finally:
        # Stop a COPY at once when the consumer stops early (a cancel, a client that went away).
        close = getattr(chunks, "close", None)
        if close is not None:
            close()
    yield buffer
    progress.update(rows)


def _fill(
    chunks: Iterator[Any], buffer: bytearray, progress: Progress, *, header: bool
) -> Generator[bytearray, None, int]:
    """Rows appended as they come, `buffer` yielded when full; returns how many (a header is not a row)."""
    rows = 0
    # Once a row: one append and one length test; enumerate keeps the count (the header is number 0).
    for rows, chunk in enumerate(chunks, 0 if header else 1):
        buffer += chunk
        if len(buffer) >= BLOCK_BYTES:
            yield buffer
            buffer.clear()
            progress.update(rows)
    return rows


def _fill_array(
    chunks: Iterator[Any], buffer: bytearray, progress: Progress
) -> Generator[bytearray, None, int]:
    """The rows as the elements of a JSON array, one a line; returns how many there were."""
    buffer += b"[\n"
    separator = b""
    rows = 0
    for rows, chunk in enumerate(chunks, 1):
        buffer += separator
        buffer += chunk[:-1]  # without its newline: the separator or the closing bracket brings one
        separator = b",\n"
        if len(buffer) >= BLOCK_BYTES:
            yield buffer
            buffer.clear()
            progress.update(rows)
    buffer += b"\n]\n" if rows else b"]\n"
    return rows


def _csv_text(value: Any, kind: Kind) -> Any:
    if value is None:
        return None
    if kind == "text":
        return _neutralise(value)
    if kind == "timestamp":
        return value.isoformat(sep=" ")
    return value


def iter_csv(table: Table, progress: Progress) -> Generator[Block, None, None]:
    """CSV with a header row; text that a spreadsheet would evaluate starts with a single quote.

    Blocks from COPY are one reused bytearray (see _blocks): encode() gives copies that stay.
    """
    chunks = table.copy("csv")
    if chunks is not None:
        yield from _blocks(chunks, progress, header=True)
        return
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow([c.name for c in table.columns])
    kinds = [c.kind for c in table.columns]
    rows = 0
    for row in table.rows():
        writer.writerow([_csv_text(value, kind) for value, kind in zip(row, kinds, strict=True)])
        rows += 1
        if out.tell() >= BLOCK_BYTES:
            yield out.getvalue().encode()
            out.seek(0)
            out.truncate()
            progress.update(rows)
    yield out.getvalue().encode()
    progress.update(rows)


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    return float(value)  # Decimal and numpy numbers


def iter_json(table: Table, progress: Progress, *, lines: bool) -> Generator[Block, None, None]:
    """A JSON array of objects, one per line, or NDJSON (`lines`): values as they are, typed.

    The blocks are one reused bytearray (see _blocks): encode() gives copies that stay.
    """
    chunks = table.copy("ndjson")
    if chunks is None:
        names = [c.name for c in table.columns]
        chunks = (
            json.dumps(
                dict(zip(names, row, strict=True)),
                default=_json_default,
                ensure_ascii=False,
                separators=(",", ":"),
            ).encode()
            + b"\n"
            for row in table.rows()
        )
    return _blocks(chunks, progress, array=not lines)


def _stream(fmt: str, table: Table, progress: Progress) -> Generator[Block, None, None]:
    """The blocks of a CSV, JSON or NDJSON export, each good until the next is asked for."""
    if fmt == "csv":
        return iter_csv(table, progress)
    if fmt in ("json", "ndjson"):
        return iter_json(table, progress, lines=fmt == "ndjson")
    raise ValueError(f"{fmt} is not a streamable format")


def encode(fmt: str, table: Table, progress: Progress) -> Generator[bytes, None, None]:
    """The bytes of a CSV, JSON or NDJSON export, in blocks (XLSX needs a file: see write_xlsx)."""
    return _kept(_stream(fmt, table, progress))


def _kept(blocks: Generator[Block, None, None]) -> Generator[bytes, None, None]:
    """Each block as bytes of its own (a response may hold on to one while the next is made)."""
    # A consumer that stops early (a client gone) stops the COPY underneath at once.
    with closing(blocks):
        for block in blocks:
            yield bytes(block)


_XLSX_WIDTHS = {"text": 18, "timestamp": 20, "int": 10, "float": 12}


def describe(params: Mapping[str, Any], now: datetime) -> dict[str, Any]:
    """What an XLSX metadata sheet says of the export besides its row count."""
    tz = zone(params["query"]["tz"])
    return {
        "dataset": params["dataset"],
        "query": params["query"],
        "generated_at": now.astimezone(tz).isoformat(),
        "time_zone": tz.key,
    }


def write_xlsx(
    table: Table,
    target: Path | BinaryIO,
    progress: Progress,
    *,
    metadata: Mapping[str, Any],
    sheet_rows: int = XLSX_SHEET_ROWS,
    tmpdir: Path | None = None,
) -> int:
    """XLSX at `target`: typed cells, a frozen header, more sheets past `sheet_rows`, then metadata.

    XlsxWriter's constant-memory mode flushes each row to a temporary file as the next one starts,
    so memory stays flat whatever the row count. Timestamps become Excel dates in the table's zone.
    """
    # Constant-memory mode keeps each sheet's rows in a temporary file until close(); a directory of
    # our own makes sure they go away with an interrupted export too.
    with tempfile.TemporaryDirectory(dir=tmpdir, prefix=".xlsx-") as scratch:
        workbook = xlsxwriter.Workbook(
            str(target) if isinstance(target, Path) else target, {"constant_memory": True, "tmpdir": scratch}
        )
        rows = _fill_workbook(workbook, table, progress, metadata=metadata, sheet_rows=sheet_rows)
        _close(workbook, progress)
        return rows


def _close(workbook: xlsxwriter.Workbook, progress: Progress) -> None:
    """Zip the workbook in a thread while this one keeps reporting (1M rows take ~10 s to zip).

    A cancel raised by a report waits for the zip to finish, so the caller can remove the file.
    """
    failure: list[BaseException] = []

    def close() -> None:
        try:
            workbook.close()
        except BaseException as exc:
            failure.append(exc)

    thread = threading.Thread(target=close, name="xlsx-close", daemon=True)
    thread.start()
    interrupted: BaseException | None = None
    while thread.is_alive():
        thread.join(progress.interval)
        if thread.is_alive() and interrupted is None:
            try:
                progress.checkpoint()
            except BaseException as exc:
                interrupted = exc
    if interrupted is not None:
        raise interrupted
    if failure:
        raise failure[0]


def _fill_workbook(
    workbook: xlsxwriter.Workbook,
    table: Table,
    progress: Progress,
    *,
    metadata: Mapping[str, Any],
    sheet_rows: int,
) -> int:
    bold = workbook.add_format({"bold": True})
    quoted = workbook.add_format({"quote_prefix": True})
    dated = workbook.add_format({"num_format": "yyyy-mm-dd hh:mm:ss"})
    tz = table.tz
    names = [c.name for c in table.columns]
    kinds = list(enumerate(c.kind for c in table.columns))
    sheets: list[Any] = []

    def new_sheet() -> Any:
        sheet = workbook.add_worksheet("data" if not sheets else f"data {len(sheets) + 1}")
        for index, column in enumerate(table.columns):
            sheet.set_column(index, index, max(_XLSX_WIDTHS[column.kind], len(column.name) + 2))
        sheet.freeze_panes(1, 0)
        sheet.write_row(0, 0, names, bold)
        sheets.append(sheet)
        return sheet

    sheet = new_sheet()
    line = 1
    rows = 0
    for row in table.rows():
        if line == sheet_rows:
            sheet = new_sheet()
            line = 1
        for index, kind in kinds:
            value = row[index]
            if value is None:
                continue
            if kind == "text":
                if value and value[0] in _FORMULA_START:
                    sheet.write_string(line, index, value, quoted)
                else:
                    sheet.write_string(line, index, value)
            elif kind == "timestamp":
                sheet.write_datetime(line, index, value.astimezone(tz).replace(tzinfo=None), dated)
            else:
                sheet.write_number(line, index, value)
        line += 1
        rows += 1
        if rows % 1000 == 0:
            progress.update(rows)
    progress.update(rows)

    info = workbook.add_worksheet("metadata")
    info.set_column(0, 0, 16)
    info.set_column(1, 1, 80)
    entries = {**metadata, "rows": rows, "sheets": len(sheets), "columns": ", ".join(names)}
    for line, (key, value) in enumerate(entries.items()):
        info.write_string(line, 0, key, bold)
        if isinstance(value, int | float) and not isinstance(value, bool):
            info.write_number(line, 1, value)
        else:
            rendered = value if isinstance(value, str) else json.dumps(value, sort_keys=True, default=str)
            info.write_string(line, 1, rendered, quoted if rendered[:1] in _FORMULA_START else None)
    return rows


# --- files -----------------------------------------------------------------------------------


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
    params: Mapping[str, Any],
    directory: Path,
    now: datetime,
    report: Report | None = None,
    sheet_rows: int = XLSX_SHEET_ROWS,
) -> Written:
    """Write the export described by canonical `params` to a temporary file, then rename it into place.

    `report(rows, total)` is called at least twice a second and once more just before the rename, so
    a cancel it raises leaves no file behind; `total` is exact in that last call. The session must be
    outside a transaction (see open_table).
    """
    fmt, dataset, query = params["format"], params["dataset"], params["query"]
    final, part = file_paths(directory, org_id, job_id, fmt)
    final.parent.mkdir(parents=True, exist_ok=True)
    # CSV and JSON count their rows as they stream, so a count first would only add a scan of them
    # (at 1M rows ~0.15 s before a ~1.6 s COPY). XLSX keeps it: exact progress for the slow format,
    # at a cost lost beside XlsxWriter's.
    table = open_table(session, org_id=org_id, dataset=dataset, query=query, count=fmt == "xlsx")
    progress = Progress(table.total, report, exact=table.exact)
    progress.checkpoint()
    try:
        if fmt == "xlsx":
            rows = write_xlsx(
                table,
                part,
                progress,
                metadata=describe(params, now),
                sheet_rows=sheet_rows,
                tmpdir=part.parent,
            )
            size, sha256 = _digest_and_sync(part)
        else:
            size, sha256 = _write_blocks(part, _stream(fmt, table, progress))
            rows = progress.rows
        session.commit()  # ends the snapshot: nothing more is read
        progress.finish()
        progress.checkpoint()
        os.replace(part, final)
    except BaseException:
        part.unlink(missing_ok=True)
        raise
    _fsync_directory(final.parent)
    local = now.astimezone(zone(query["tz"]))
    return Written(final, f"{dataset}-{local:%Y%m%d-%H%M%S}.{fmt}", fmt, rows, size, sha256)


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


def find(session: Session, *, job_id: uuid.UUID) -> Export | None:
    """The live export of a job whose file is still there, if any (a redelivered job reuses it)."""
    export = session.scalar(select(Export).where(Export.job_id == job_id, Export.deleted_at.is_(None)))
    if export is None or not Path(export.path).is_file():
        return None
    return export


def get(session: Session, *, org_id: int, export_id: str) -> Export | None:
    """Export `export_id` of `org_id`, or None (also for ids that are not UUIDs)."""
    try:
        key = uuid.UUID(export_id)
    except ValueError:
        return None
    return session.scalar(select(Export).where(Export.id == key, Export.org_id == org_id))


def is_available(export: Export, directory: Path, now: datetime) -> bool:
    """Whether the file can still be served: not past retention, not deleted, present under `directory`."""
    if export.deleted_at is not None or export.expires_at <= now:
        return False
    path = Path(export.path).resolve()
    return path.is_relative_to(directory.resolve()) and path.is_file()
