"""Rollup rows of an organization read back as comparable cells, and the comparison tests use.

A cell is one row of analytics_metrics by its key (metric, grain, hour, dimension values). Its
sketch is decoded here with struct into a Counter of bucket key -> count, independently of
webapp.analytics.sketch: two sketches are the same sketch when those counters are equal, whatever
order their pairs come in and however often a key repeats.
"""

from __future__ import annotations

import math
import struct
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NamedTuple

from sqlalchemy import text
from sqlalchemy.orm import Session

from webapp.analytics import rollup_sql, rollups
from webapp.analytics.metrics import METRICS

CellKey = tuple[Any, ...]


class _Delta(NamedTuple):
    metric: str
    grain: int
    bucket_start: datetime
    status: str
    priority: str
    channel: str
    category: str
    assigned_to: str | None
    count: int
    sum: float | None
    min: float | None
    max: float | None
    sketch: bytes | None


@dataclass(frozen=True)
class Cell:
    count: int
    sum: float | None
    min: float | None
    max: float | None
    sketch: Counter[int]
    pairs: int


def decode_sketch(blob: bytes | None) -> tuple[Counter[int], int]:
    """The bucket counts of a sketch (big-endian int16 key, int32 count pairs) and its pair count."""
    counts: Counter[int] = Counter()
    if not blob:
        return counts, 0
    assert len(blob) % 6 == 0, "a sketch is whole 6-byte pairs"
    for key, count in struct.iter_unpack(">hi", bytes(blob)):
        assert count > 0, "a pair counts at least one value"
        counts[key] += count
    return counts, len(blob) // 6


def cells(session: Session, org_id: int, *, table: str = "analytics_metrics") -> dict[CellKey, Cell]:
    """Every rollup row of `org_id` in `table`, by cell."""
    rows = session.execute(
        text(
            "SELECT metric, grain, bucket_start, status, priority, channel, category, assigned_to,"
            f" count, sum, min, max, sketch FROM {table} WHERE org_id = :o"
        ),
        {"o": org_id},
    )
    out: dict[CellKey, Cell] = {}
    for row in rows:
        sketch, pairs = decode_sketch(row.sketch)
        key = tuple(row[:8])
        assert key not in out, f"two rows of one cell in {table}: {key}"
        out[key] = Cell(int(row.count), row.sum, row.min, row.max, sketch, pairs)
    return out


def _widest(a: float | None, b: float | None, pick: Callable[[float, float], float]) -> float | None:
    return b if a is None else a if b is None else pick(a, b)


def answered(session: Session, org_id: int) -> dict[CellKey, Cell]:
    """What readers see of each cell: its row plus the imports' deltas not folded into it yet
    (counts and sums added, min and max widened, bucket counts added), added here in Python.

    A delta keeps all five dimensions (grain 31): it adds to the cell of every grain its dimensions
    fall in, a dimension the grain does not keep being '' (NULL for assigned_to)."""
    out = cells(session, org_id)
    deltas = session.execute(
        text(
            "SELECT metric, grain, bucket_start, status, priority, channel, category, assigned_to,"
            " count, sum, min, max, sketch FROM analytics_metric_deltas WHERE org_id = :o"
        ),
        {"o": org_id},
    ).all()
    names = ("status", "priority", "channel", "category", "assigned_to")
    rows = []
    for delta in deltas:
        assert delta.grain == 31, "deltas keep every dimension"
        for grain in rollup_sql.GRAINS:
            dims = [
                value if grain & (1 << i) else (None if name == "assigned_to" else "")
                for i, (name, value) in enumerate(zip(names, delta[3:8], strict=True))
            ]
            rows.append(_Delta(delta.metric, grain, delta.bucket_start, *dims, *delta[8:]))
    for row in rows:
        key = tuple(row[:8])
        sketch, pairs = decode_sketch(row.sketch)
        cell = out.get(key)
        if cell is None:
            out[key] = Cell(int(row.count), row.sum, row.min, row.max, sketch, pairs)
            continue
        total = None if cell.sum is None and row.sum is None else (cell.sum or 0.0) + (row.sum or 0.0)
        out[key] = Cell(
            cell.count + int(row.count),
            total,
            _widest(cell.min, row.min, min),
            _widest(cell.max, row.max, max),
            cell.sketch + sketch,
            cell.pairs + pairs,
        )
    return out


def built_from_raw(session: Session, org_id: int, start: datetime, end: datetime) -> dict[CellKey, Cell]:
    """The cells a from-scratch build of [start, end) writes, read back and then undone.

    The organization's rollups are deleted and rebuilt inside a savepoint that is rolled back, so the
    session's state is as before; the caller's transaction must not hold the organization's rows
    elsewhere (a plain session, nothing uncommitted of the organization's rollups).
    """
    nested = session.begin_nested()
    try:
        session.execute(text("DELETE FROM analytics_metrics WHERE org_id = :o"), {"o": org_id})
        rollups.build(session, org_id=org_id, start=start, end=end)
        return cells(session, org_id)
    finally:
        nested.rollback()


def marked(session: Session, org_id: int) -> list[tuple[str, datetime, datetime]]:
    """The organization's dirty marks as (event type, lo, hi), sorted."""
    rows = session.execute(
        text("SELECT event_type, lo, hi FROM analytics_rollup_dirty WHERE org_id = :o ORDER BY 1, 2, 3"),
        {"o": org_id},
    )
    return [tuple(row) for row in rows]


def covered_by(marks: list[tuple[str, datetime, datetime]]) -> Callable[[CellKey], bool]:
    """Whether a cell's hour is dirty for its metric's event type (reads take it from raw events)."""
    metric_event = {m.name: m.event_type for m in METRICS.values() if m.rolled}

    def covered(key: CellKey) -> bool:
        event_type, hour = metric_event[key[0]], key[2]
        return any(t == event_type and lo <= hour < hi for t, lo, hi in marks)

    return covered


def assert_same_cells(
    actual: dict[CellKey, Cell],
    expected: dict[CellKey, Cell],
    *,
    skip: Callable[[CellKey], bool] = lambda key: False,
) -> int:
    """Equal cell by cell: counts, min, max and sketch counts exactly; sums to 1e-9 (another order).

    Cells for which `skip` says yes are left out on both sides. Returns how many cells were compared.
    """
    actual_keys = {k for k in actual if not skip(k)}
    expected_keys = {k for k in expected if not skip(k)}
    extra, missing = actual_keys - expected_keys, expected_keys - actual_keys
    assert not extra, f"{len(extra)} cells only in the rollups, e.g. {list(extra)[:3]}"
    assert not missing, f"{len(missing)} cells only in the build, e.g. {list(missing)[:3]}"
    for key in expected_keys:
        got, want = actual[key], expected[key]
        assert (got.count, got.min, got.max) == (want.count, want.min, want.max), key
        if want.sum is None:
            assert got.sum is None, key
        else:
            assert got.sum is not None, key
            assert math.isclose(got.sum, want.sum, rel_tol=1e-9, abs_tol=1e-9), (key, got.sum, want.sum)
        assert got.sketch == want.sketch, key
    return len(expected_keys)
