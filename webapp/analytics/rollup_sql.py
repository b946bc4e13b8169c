"""The statements that build and merge hourly rollups: one per build chunk, one per import batch.

rollups.py decides when they run and under which lock; this module only writes their SQL, from the
metric registry and the vocabulary's dimensions (grains, grouping sets, kept dimensions).
"""

from __future__ import annotations

from collections.abc import Sequence

from webapp.analytics import sketch
from webapp.analytics.metrics import Metric
from webapp.core.vocabulary import DIMENSIONS

DIMENSION_BITS = {name: 1 << i for i, name in enumerate(DIMENSIONS)}
ALL_DIMENSIONS = (1 << len(DIMENSIONS)) - 1
# The cube keeps the dimensions with short fixed lists together (5 x 4 x 6 combinations, about 24 of
# them used per hour and metric), so any filter or group-by over them reads rollups (migration 0011).
CUBE_DIMENSIONS = ("status", "priority", "channel")
CUBE_GRAIN = sum(DIMENSION_BITS[name] for name in CUBE_DIMENSIONS)
GRAINS = (0, *DIMENSION_BITS.values(), CUBE_GRAIN)
# A sketch a merge writes has its repeated keys folded once it is longer than this (bytes; 256
# pairs): below it a few repeats cost less than folding every sketch, above it they would pile up.
FOLD_SKETCH_BYTES = 256 * sketch.PAIR.itemsize
# Cells imports append, added by readers to the rows of analytics_metrics until folded into them.
DELTAS = "analytics_metric_deltas"
# The grain of every delta: all five dimensions kept, so any grain's cell is a sum of deltas.
DELTA_GRAIN = ALL_DIMENSIONS


def statement_params(metrics: Sequence[Metric], org_id: int) -> dict[str, object]:
    """The bound parameters of a build or merge statement over `metrics` (its range comes apart)."""
    params: dict[str, object] = {
        "org_id": org_id,
        "metrics": [m.name for m in metrics],
        "count_metrics": [m.name for m in metrics if m.is_count],
        "event_types": sorted({m.event_type for m in metrics}),
    }
    for i, metric in enumerate(metrics):
        params[f"metric_{i}"] = metric.name
        params[f"event_type_{i}"] = metric.event_type
    return params


def _grouping_sets() -> str:
    """One grouping set per grain: the dimensions it keeps."""
    sets = [f"({', '.join(d for d in DIMENSIONS if bits & DIMENSION_BITS[d])})" for bits in GRAINS]
    return ", ".join(sets)


def _grain_sql() -> str:
    """A grouping set's row's grain, from GROUPING()."""
    # GROUPING() has a bit set per dimension left out, the first argument highest: reversed, the
    # bits line up with DIMENSION_BITS.
    return f"CAST({ALL_DIMENSIONS} - GROUPING({', '.join(reversed(DIMENSIONS))}) AS smallint)"


def _kept_dimensions_sql() -> str:
    """The dimension columns of a grouping set's row: '' for one left out (NULL for assigned_to)."""
    return ", ".join(f"coalesce({d}, '') AS {d}" if d != "assigned_to" else d for d in DIMENSIONS)


def _events_sql(metrics: Sequence[Metric], *, events: str, tickets: str, window: bool) -> str:
    """One row per measurement: metric, UTC hour, the dimensions, value v and sketch key k.

    Read from `events` (joined to `tickets` for values of the ticket); `window` limits them to
    [:start, :end), without it every event of the organization in `events` counts (a staging table
    of new events). Shared by build and merge_new_events, so both measure events the same way.
    """
    branches = []
    for i, metric in enumerate(metrics):
        join = (
            f" JOIN {tickets} t ON t.id = e.ticket_id AND t.org_id = e.org_id" if metric.joins_ticket else ""
        )
        value = metric.value_sql or "CAST(NULL AS double precision)"
        bounds = " AND e.occurred_at >= :start AND e.occurred_at < :end" if window else ""
        branches.append(
            f"SELECT CAST(:metric_{i} AS text) AS metric, date_trunc('hour', e.occurred_at, 'UTC') AS h,"
            f" {', '.join(f'e.{d}' for d in DIMENSIONS)}, {value} AS v, {sketch.sql_key(value)} AS k"
            f" FROM {events} e{join} WHERE e.org_id = :org_id AND e.event_type = :event_type_{i}{bounds}"
        )
    return " UNION ALL ".join(branches)


def build_sql(metrics: Sequence[Metric], *, fold_sketches: bool = False) -> str:
    """One statement: compute the range's rows, upsert the changed ones, drop vanished ones, clear marks.

    A row changed when its values did. Its sketch counts as changed when its bytes differ, or with
    `fold_sketches` only when its folded buckets do: an import merges sketches as a concatenation
    in another order (see merge_sql), the same sketch in other bytes. Folding costs more than
    rewriting the row, so only a reconcile, which reports rewritten rows as drift, asks for it.
    """
    dims = ", ".join(DIMENSIONS)
    # Plain equalities (NULL only in assigned_to, compared apart) keep the anti-join a hash join.
    same_cell = " AND ".join(
        ["f.metric = m.metric", "f.grain = m.grain", "f.bucket_start = m.bucket_start"]
        + [f"f.{d} = m.{d}" for d in DIMENSIONS if d != "assigned_to"]
        + [
            "coalesce(f.assigned_to, '') = coalesce(m.assigned_to, '')",
            "(f.assigned_to IS NULL) = (m.assigned_to IS NULL)",
        ]
    )
    sketch_changed = " OR m.sketch IS DISTINCT FROM EXCLUDED.sketch"
    if fold_sketches:
        sketch_changed += (
            f" AND {folded_sketch_sql('m.sketch')} IS DISTINCT FROM {folded_sketch_sql('EXCLUDED.sketch')}"
        )
    cells = (
        f"WITH ev AS ({_events_sql(metrics, events='ticket_events', tickets='tickets', window=True)}),"
        f" cells AS (SELECT metric, h, {_grain_sql()} AS grain, {dims}, k, count(*) AS events,"
        " count(v) AS n, sum(v) AS s, min(v) AS lo, max(v) AS hi"
        f" FROM ev GROUP BY metric, h, k, GROUPING SETS ({_grouping_sets()})),"
        f" fresh AS (SELECT metric, grain, h AS bucket_start, {_kept_dimensions_sql()},"
        " CASE WHEN metric = ANY(CAST(:count_metrics AS text[])) THEN sum(events) ELSE sum(n) END AS count,"
        " sum(s) AS sum, min(lo) AS min, max(hi) AS max,"
        # Unordered: a sketch's pairs may come in any order, and no sort lets this be a hash aggregate.
        " string_agg(int2send(CAST(k AS int2)) || int4send(CAST(n AS int4)), ''::bytea)"
        " FILTER (WHERE n > 0) AS sketch"
        f" FROM cells GROUP BY metric, grain, h, {dims}),"
        " kept AS (SELECT * FROM fresh WHERE count > 0)"
    )
    return (
        cells
        + f", written AS (INSERT INTO analytics_metrics AS m (org_id, metric, grain, bucket_start, {dims},"
        " count, sum, min, max, sketch, updated_at)"
        f" SELECT :org_id, metric, grain, bucket_start, {dims}, count, sum, min, max, sketch, now() FROM kept"
        f" ON CONFLICT (org_id, metric, grain, bucket_start, {dims}) DO UPDATE SET count = EXCLUDED.count,"
        " sum = EXCLUDED.sum, min = EXCLUDED.min, max = EXCLUDED.max, sketch = EXCLUDED.sketch,"
        " updated_at = EXCLUDED.updated_at"
        # Sums of one set of values can differ in the last bits with the order they were added in.
        " WHERE (m.count, m.min, m.max) IS DISTINCT FROM (EXCLUDED.count, EXCLUDED.min, EXCLUDED.max)"
        " OR (m.sum IS NULL) <> (EXCLUDED.sum IS NULL)"
        " OR abs(m.sum - EXCLUDED.sum) > 1e-9 * greatest(abs(m.sum), abs(EXCLUDED.sum), 1e-300)"
        + sketch_changed
        + " RETURNING 1),"
        # The range's deltas (imports') are in the raw events the fresh rows were computed from.
        f" dropped AS (DELETE FROM {DELTAS} d WHERE d.org_id = :org_id"
        " AND d.metric = ANY(CAST(:metrics AS text[])) AND d.bucket_start >= :start AND d.bucket_start < :end"
        " RETURNING 1),"
        " removed AS (DELETE FROM analytics_metrics m WHERE m.org_id = :org_id"
        " AND m.metric = ANY(CAST(:metrics AS text[])) AND m.bucket_start >= :start AND m.bucket_start < :end"
        f" AND NOT EXISTS (SELECT 1 FROM kept f WHERE {same_cell}) RETURNING 1),"
        # Marks inside the range are done; marks reaching out of it keep only their outside part.
        " cleared AS (DELETE FROM analytics_rollup_dirty d WHERE d.org_id = :org_id"
        " AND d.event_type = ANY(CAST(:event_types AS text[])) AND d.lo >= :start AND d.hi <= :end"
        " RETURNING 1),"
        " trimmed_end AS (UPDATE analytics_rollup_dirty d SET lo = :end WHERE d.org_id = :org_id"
        " AND d.event_type = ANY(CAST(:event_types AS text[])) AND d.lo >= :start AND d.lo < :end"
        " AND d.hi > :end RETURNING 1),"
        " trimmed_start AS (UPDATE analytics_rollup_dirty d SET hi = :start WHERE d.org_id = :org_id"
        " AND d.event_type = ANY(CAST(:event_types AS text[])) AND d.lo < :start AND d.hi > :start"
        " AND d.hi <= :end RETURNING 1)"
        " SELECT (SELECT count(*) FROM written) AS written, (SELECT count(*) FROM removed) AS removed,"
        " (SELECT count(*) FROM cleared) AS cleared, (SELECT count(*) FROM dropped) AS dropped"
    )


def folded_sketch_sql(blob: str) -> str:
    """SQL for the sketch `blob` with repeated keys folded into one pair each (keys ascending)."""
    # get_byte is unsigned: the key's high byte carries the sign of the int16; a count is positive.
    key = "get_byte(b, i) * 256 + get_byte(b, i + 1) - CASE WHEN get_byte(b, i) >= 128 THEN 65536 ELSE 0 END"
    count = (
        "((CAST(get_byte(b, i + 2) AS bigint) * 256 + get_byte(b, i + 3)) * 256"
        " + get_byte(b, i + 4)) * 256 + get_byte(b, i + 5)"
    )
    return (
        "(SELECT string_agg(int2send(CAST(k AS int2)) || int4send(CAST(n AS int4)), ''::bytea ORDER BY k)"
        # OFFSET 0 keeps `blob` a subquery evaluated once, not an expression inlined into every use.
        f" FROM (SELECT {key} AS k, sum({count}) AS n FROM (SELECT {blob} AS b OFFSET 0) blob,"
        " generate_series(0, length(b) - 6, 6) AS i GROUP BY 1) pairs)"
    )


def merge_sql(metrics: Sequence[Metric], *, events: str, tickets: str) -> str:
    """One statement: append the staged new events' measurements to the deltas, at DELTA_GRAIN.

    A row per cell of all five dimensions and hour (a single measurement, mostly: an import spread
    over months has about one event per cell), not a row per cell of every grain: readers and the
    fold sum them up to the grain they need (expanded_deltas_sql). Two and a half times fewer rows
    than the grains' cells, and no grouping sets: the grains' rows cost most of an import's time.
    A sketch of new values is one (key, 1) pair per value, folded only past FOLD_SKETCH_BYTES.
    """
    dims = ", ".join(DIMENSIONS)
    fold = int(FOLD_SKETCH_BYTES)
    return (
        f"INSERT INTO {DELTAS} (org_id, metric, grain, bucket_start, {dims}, count, sum, min, max, sketch,"
        " updated_at)"
        f" WITH ev AS ({_events_sql(metrics, events=events, tickets=tickets, window=False)}),"
        f" delta AS (SELECT metric, h AS bucket_start, {_kept_dimensions_sql()},"
        " CASE WHEN metric = ANY(CAST(:count_metrics AS text[])) THEN count(*) ELSE count(v) END AS count,"
        " sum(v) AS sum, min(v) AS min, max(v) AS max,"
        " string_agg(int2send(CAST(k AS int2)) || int4send(1), ''::bytea) FILTER (WHERE v IS NOT NULL)"
        f" AS sketch FROM ev GROUP BY metric, h, {dims})"
        f" SELECT :org_id, metric, CAST({DELTA_GRAIN} AS smallint), bucket_start, {dims},"
        " count, sum, min, max,"
        f" CASE WHEN length(sketch) > {fold} THEN {folded_sketch_sql('sketch')} ELSE sketch END, now()"
        " FROM delta WHERE count > 0"
    )


def expanded_deltas_sql(source: str, *, keys: str = "") -> str:
    """The cells of every grain (GRAINS) that the DELTA_GRAIN rows of `source` (a table or CTE,
    with its alias and WHERE) add up to, one row per cell and value of `keys` (columns, comma
    separated, or none): metric, grain, `keys`, the kept dimensions, count, sum, min, max and the
    concatenated sketch."""
    keyed = f"{keys}, " if keys else ""
    return (
        f"SELECT metric, {_grain_sql()} AS grain, {keyed}{_kept_dimensions_sql()},"
        " sum(count) AS count, sum(sum) AS sum, min(min) AS min, max(max) AS max,"
        " string_agg(sketch, ''::bytea) AS sketch"
        f" FROM {source} GROUP BY metric, {keyed}GROUPING SETS ({_grouping_sets()})"
    )


def fold_sql() -> str:
    """One statement: move the organization's deltas into its rows of analytics_metrics.

    The deltas it deletes are the ones it adds (RETURNING), summed up to every grain's cells, so
    deltas an import commits meanwhile stay for the next fold.
    """
    dims = ", ".join(DIMENSIONS)
    fold = int(FOLD_SKETCH_BYTES)
    return (
        f"WITH gone AS (DELETE FROM {DELTAS} WHERE org_id = :org_id AND grain = {DELTA_GRAIN}"
        f" RETURNING metric, bucket_start, {dims}, count, sum, min, max, sketch),"
        f" delta AS ({expanded_deltas_sql('gone', keys='bucket_start')}),"
        f" cells AS (SELECT metric, grain, bucket_start, {dims}, count, sum, min, max,"
        f" CASE WHEN length(sketch) > {fold} THEN {folded_sketch_sql('sketch')}"
        " ELSE sketch END AS sketch"
        " FROM delta)" + merge_upsert_sql(delta="cells")
    )


def drop_stray_deltas_sql(event_types: Sequence[str]) -> str:
    """One statement: the organization's deltas of any other grain than DELTA_GRAIN (appended by a
    process still running the code before migration 0030) deleted, their hours marked dirty for
    `event_types` (every rolled one), so reads take those hours from raw events until a refresh."""
    types = ", ".join(f"'{t}'" for t in event_types)
    return (
        f"WITH stray AS (DELETE FROM {DELTAS} WHERE org_id = :org_id AND grain <> {DELTA_GRAIN}"
        " RETURNING bucket_start)"
        " INSERT INTO analytics_rollup_dirty (org_id, event_type, lo, hi)"
        " SELECT DISTINCT :org_id, t.event_type, s.bucket_start, s.bucket_start + interval '1 hour'"
        f" FROM stray s CROSS JOIN unnest(ARRAY[{types}]) AS t(event_type)"
    )


def merge_upsert_sql(*, delta: str) -> str:
    """One statement: add the rows of `delta` (a table or CTE of cells) to analytics_metrics.

    Counts and sums added, min and max widened, sketches concatenated (folded past FOLD_SKETCH_BYTES).
    """
    dims = ", ".join(DIMENSIONS)
    fold = int(FOLD_SKETCH_BYTES)
    both = "m.sketch || EXCLUDED.sketch"
    return (
        f" INSERT INTO analytics_metrics AS m (org_id, metric, grain, bucket_start, {dims},"
        " count, sum, min, max, sketch, updated_at)"
        f" SELECT :org_id, metric, grain, bucket_start, {dims}, count, sum, min, max, sketch, now()"
        f" FROM {delta}"
        f" ON CONFLICT (org_id, metric, grain, bucket_start, {dims}) DO UPDATE SET"
        " count = m.count + EXCLUDED.count,"
        " sum = CASE WHEN m.sum IS NULL THEN EXCLUDED.sum WHEN EXCLUDED.sum IS NULL THEN m.sum"
        " ELSE m.sum + EXCLUDED.sum END,"
        # least and greatest skip NULLs: a count metric's rows keep NULL.
        " min = least(m.min, EXCLUDED.min), max = greatest(m.max, EXCLUDED.max),"
        # Concatenated sketches are merged ones (sketch.py): adding bucket counts in place would
        # decode every sketch, for no difference in any answer. Only a sketch grown past
        # FOLD_SKETCH_BYTES is folded, which bounds what repeated imports into one hour leave.
        " sketch = CASE WHEN m.sketch IS NULL THEN EXCLUDED.sketch WHEN EXCLUDED.sketch IS NULL THEN m.sketch"
        f" WHEN length(m.sketch) + length(EXCLUDED.sketch) <= {fold} THEN {both}"
        f" ELSE {folded_sketch_sql(both)} END,"
        " updated_at = EXCLUDED.updated_at"
    )
