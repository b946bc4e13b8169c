"""SQL fragments every analytics statement is built from: allowlisted columns, filters, event sources.

A column name reaches the SQL text only through `column`, which checks it against an allowlist;
every value is a bound parameter.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from psycopg.rows import namedtuple_row, tuple_row
from sqlalchemy import text
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import Session
from sqlalchemy.sql.compiler import Compiled

from webapp.analytics.metrics import GROUPABLE, Metric
from webapp.core.filters import Filters
from webapp.core.timeutil import epoch_micros
from webapp.infra.engines import connection_timeout

# Tickets joined to their events, for metrics measured on the ticket's current values.
TICKET_JOIN = " JOIN tickets t ON t.id = e.ticket_id AND t.org_id = e.org_id"


def column(name: str, allowed: Sequence[str]) -> str:
    """`name`, if the allowlist has it: the last line of defence, a name not in it never becomes SQL."""
    if name not in allowed:
        raise ValueError(f"{name!r} is not one of {', '.join(allowed)}")
    return name


def filter_sql(alias: str, filters: Filters, params: dict[str, Any]) -> str:
    """` AND ...` clauses restricting `alias`'s dimension columns to the filter values (None = IS NULL)."""
    clauses = []
    for name in GROUPABLE:
        values = filters.get(name)
        if values is None:
            continue
        qualified = f"{alias}.{column(name, GROUPABLE)}"
        present = [v for v in values if v is not None]
        parts = []
        if present:
            key = f"f_{alias}_{name}"
            params[key] = present
            parts.append(f"{qualified} = ANY(CAST(:{key} AS text[]))")
        if None in values:
            parts.append(f"{qualified} IS NULL")
        clauses.append(f" AND ({' OR '.join(parts) if parts else 'false'})")
    return "".join(clauses)


def ticket_join(metric: Metric) -> str:
    """The join a metric measured on the ticket needs ('' for one measured on the event)."""
    return TICKET_JOIN if metric.joins_ticket else ""


def events_source(
    metric: Metric, org_id: int, start: datetime, end: datetime, filters: Filters, params: dict[str, Any]
) -> str:
    """FROM and WHERE over the events that carry `metric` in [start, end)."""
    params.update(org_id=org_id, event_type=metric.event_type, start=start, end=end)
    return (
        f"FROM ticket_events e{ticket_join(metric)}"
        " WHERE e.org_id = :org_id AND e.event_type = :event_type"
        " AND e.occurred_at >= :start AND e.occurred_at < :end" + filter_sql("e", filters, params)
    )


def value_sql(metric: Metric) -> str:
    """The measured value `v` of one event (NULL for a pure count)."""
    return metric.value_sql or "CAST(NULL AS double precision)"


def count_sql(metric: Metric) -> str:
    """A count metric counts events; a measured one counts measurements (NULL sentiment is skipped)."""
    return "count(*)" if metric.is_count else "count(v)"


# The boundaries bound as :bounds (microseconds since the epoch, see bound_list) as a timestamptz[]:
# an uncorrelated subquery, so PostgreSQL makes the array once per statement.
_BOUNDS = (
    "(SELECT array_agg(timestamptz 'epoch' + b * interval '1 microsecond' ORDER BY i)"
    " FROM unnest(CAST(:bounds AS bigint[])) WITH ORDINALITY AS u(b, i))"
)


def bucket_index(column_sql: str) -> str:
    """The 1-based bucket of `column_sql` among the sorted boundaries bound as :bounds (a binary search)."""
    return f"width_bucket({column_sql}, {_BOUNDS})"


def bound_list(values: Sequence[datetime]) -> str:
    """Bucket boundaries as the text of a bigint[] literal of microseconds since the epoch (exact),
    for :bounds. Integers are written three times as fast as ISO 8601 instants (a 90-day hourly
    series has 2,161 boundaries), and PostgreSQL reads them faster too."""
    return "{" + ",".join([str(epoch_micros(value)) for value in values]) + "}"


def instants(values: Sequence[datetime]) -> str:
    """`values` as the text of a timestamptz[] literal, for a parameter the SQL casts to one.

    PostgreSQL parses the literal in C; binding the list instead has psycopg adapt each datetime in
    Python, which was 39 ms of a 90-day hourly read's (2,161 bounds, profiled).
    """
    return "{" + ",".join(value.astimezone(UTC).isoformat() for value in values) + "}"


@functools.lru_cache(maxsize=512)
def _compiled(sql: str, dialect: Dialect) -> Compiled:
    """`sql` compiled for `dialect`, once: a rollup read's statement of a dozen CTEs and 27 parameters
    took 0.4 ms to compile, about a fifth of a 30-day KPI's read at 100,000 tickets."""
    return text(sql).compile(dialect=dialect)


def binary_rows(session: Session, sql: str, params: dict[str, Any], *, named: bool = True) -> list[Any]:
    """The rows of `sql` (named :params, as text() takes them) fetched in PostgreSQL's binary format,
    as named tuples (plain ones when not `named`), on the session's connection and transaction.

    For answers carrying many sketch bytes: as text, bytea travels hex-encoded (twice its size) and
    is decoded in Python; binary halves the transfer (the agents report's 11 MB of sketches at 10M
    tickets: 70 ms to 45 ms).
    """
    connection = session.connection()
    compiled = _compiled(sql, connection.dialect)
    raw = connection.connection.dbapi_connection
    assert raw is not None
    with raw.cursor(binary=True, row_factory=namedtuple_row if named else tuple_row) as cursor:
        cursor.execute(str(compiled), compiled.construct_params(params))
        return cursor.fetchall()


def set_local(session: Session, name: str, value: str) -> None:
    """Set the setting `name` for the rest of the session's transaction (SET LOCAL, with bound values)."""
    set_locals(session, {name: value})


def set_locals(session: Session, settings: dict[str, str]) -> None:
    """set_local for each of `settings`, in one round trip."""
    calls = ", ".join(f"set_config(:n{i}, :v{i}, true)" for i in range(len(settings)))
    params = {}
    for i, (name, value) in enumerate(settings.items()):
        params[f"n{i}"], params[f"v{i}"] = name, value
    session.execute(text(f"SELECT {calls}"), params)


# Where a session keeps the statement timeout set on it (side_by_side gives its sessions the same).
TIMEOUT_KEY = "statement_timeout_ms"


def statement_timeout(session: Session, milliseconds: int | None) -> None:
    """Cancel any statement of the rest of the session's transaction that runs past `milliseconds`
    (None or 0: no limit of its own)."""
    if not milliseconds:
        return
    wanted = int(milliseconds)
    bind = session.get_bind()
    # Connections that start with this timeout (the web's) need no round trip to set it, unless this
    # session set another before.
    if not (session.info.get(TIMEOUT_KEY) in (None, wanted) and connection_timeout(bind) == wanted):
        set_local(session, "statement_timeout", str(wanted))
    session.info[TIMEOUT_KEY] = wanted


# Planner costs under which a scan of tens of thousands of rows is split across parallel workers.
# PostgreSQL's defaults (1,000 and 0.1) keep such a statement on one process; at 1M tickets the SLA
# compliance of 30 days (92,000 tickets joined to their facts) takes 0.13 s in parallel against
# 0.20 s on one process.
PARALLEL_COSTS = {"parallel_setup_cost": "10", "parallel_tuple_cost": "0.001"}


@contextmanager
def parallel_costs(session: Session) -> Iterator[None]:
    """Run the statements inside with PARALLEL_COSTS, then put the transaction's own values back."""
    names = list(PARALLEL_COSTS)
    settings = ", ".join(f"current_setting(:n{i})" for i in range(len(names)))
    before = session.execute(text(f"SELECT {settings}"), {f"n{i}": n for i, n in enumerate(names)}).one()
    set_locals(session, PARALLEL_COSTS)
    try:
        yield
    finally:
        set_locals(session, dict(zip(names, before, strict=True)))


def forget_orphan_marks(session: Session, table: str) -> int:
    """Delete the rows of the marks `table` whose organization no longer exists (triggers wrote them
    while its rows were deleted with it); how many."""
    result = session.execute(
        text(f"DELETE FROM {table} m WHERE NOT EXISTS (SELECT 1 FROM organizations o WHERE o.id = m.org_id)")
    )
    return int(result.rowcount or 0)  # type: ignore[attr-defined]
