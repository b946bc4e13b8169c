"""The rows of an export: tickets straight from PostgreSQL, time series and aggregations from memory.

Raw tickets stream out of PostgreSQL: CSV and JSON through COPY ... TO STDOUT, so the server
formats every value and Python only moves bytes (about five times csv.writer over fetched rows),
and XLSX from a server-side cursor into XlsxWriter's constant-memory mode. Time series and
aggregations are bounded by the analytics limits (buckets, rows), so the analytics functions
compute them and they are written from memory. An export reads one REPEATABLE READ snapshot, so
a row count taken first is the number of rows written.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import text
from sqlalchemy.orm import Session

from webapp.analytics import queries
from webapp.analytics.aggregations import AggregationQuery, run_aggregation
from webapp.analytics.metrics import METRICS
from webapp.analytics.sql import filter_sql, statement_timeout
from webapp.exports.formulas import neutralised_sql
from webapp.exports.spec import TICKET_COLUMNS, DatasetQuery, Kind, SeriesQuery, TicketQuery

FETCH_ROWS = 2000


@dataclass(frozen=True)
class Column:
    name: str
    kind: Kind


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


class TicketTable(Table):
    """Tickets created in [start, end) matching the filters, oldest first, straight from PostgreSQL."""

    def __init__(
        self,
        session: Session,
        *,
        org_id: int,
        query: TicketQuery,
        limit: int | None = None,
        count: bool = True,
    ) -> None:
        self.session = session
        self.tz = query.window.tz
        self.columns = tuple(Column(name, TICKET_COLUMNS[name]) for name in query.columns)
        params: dict[str, Any] = {"org_id": org_id, "start": query.window.start, "end": query.window.end}
        self._where = "t.org_id = :org_id AND t.created_at >= :start AND t.created_at < :end" + filter_sql(
            "t", query.filters, params
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
            select_list = ", ".join(_csv_column_sql(c) for c in self.columns)
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


def _time_series_table(session: Session, org_id: int, query: SeriesQuery) -> MemoryTable:
    window = query.window
    definition = METRICS[query.metric]
    result = queries.time_series(
        session,
        org_id=org_id,
        metric=query.metric,
        buckets=window.buckets(),
        start=window.start,
        end=window.end,
        filters=query.filters,
        clock=query.clock,
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
    return MemoryTable(columns, rows, window.tz)


def _aggregation_table(session: Session, org_id: int, query: AggregationQuery) -> MemoryTable:
    """One row per group (and bucket); each metric's statistics flattened to `<metric>_<stat>` columns."""
    result = run_aggregation(session, org_id=org_id, query=query)
    columns = [Column(name, "text") for name in result["group_by"]]
    if result["granularity"]:
        columns.append(Column("bucket", "timestamp"))
    stats: list[tuple[str, str]] = []
    for metric in result["metrics"]:
        definition = METRICS[metric]
        if definition.is_count:
            columns.append(Column(metric, "int"))
            stats.append((metric, "count"))
            continue
        if definition.kind in ("running", "difference", "percent"):
            # backlog and net_flow: count and value; csat and one_touch: count and the percentage.
            second = "avg" if definition.kind == "percent" else "value"
            columns += [Column(f"{metric}_count", "int"), Column(f"{metric}_{second}", "float")]
            stats += [(metric, "count"), (metric, second)]
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
    return MemoryTable(columns, rows, query.window.tz)


def open_table(
    session: Session,
    *,
    org_id: int,
    query: DatasetQuery,
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
    statement_timeout(session, statement_timeout_ms)
    if isinstance(query, TicketQuery):
        return TicketTable(session, org_id=org_id, query=query, limit=limit, count=count)
    if isinstance(query, SeriesQuery):
        return _time_series_table(session, org_id, query)
    return _aggregation_table(session, org_id, query)


def _csv_column_sql(column: Column) -> str:
    """A raw ticket column as the CSV writes it; times as Python's isoformat() does (ISO 8601 with
    the T, the offset with its minutes, fractions only when there are some), not PostgreSQL's text
    (`2026-11-25 05:09:00-04`)."""
    name = f"t.{column.name}"
    if column.kind == "text":
        return neutralised_sql(name, column.name)
    if column.kind == "timestamp":
        # TZH:TZM drops an offset's seconds (Monrovia's -00:44:30 until 1972, local mean times before
        # standard time) while the clock time keeps them: they are written after it, as isoformat does.
        offset_seconds = (
            f"CASE WHEN extract(timezone FROM {name})::int % 60 <> 0"
            f" THEN ':' || lpad((abs(extract(timezone FROM {name})::int) % 60)::text, 2, '0') ELSE '' END"
        )
        return (
            f"CASE WHEN date_trunc('second', {name}) = {name}"
            f" THEN to_char({name}, 'YYYY-MM-DD\"T\"HH24:MI:SSTZH:TZM')"
            f" ELSE to_char({name}, 'YYYY-MM-DD\"T\"HH24:MI:SS.USTZH:TZM') END || {offset_seconds}"
            f" AS {column.name}"
        )
    return name
