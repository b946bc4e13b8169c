"""Which parts of a range rollups may answer: closed UTC hours that lie wholly inside one bucket."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from datetime import UTC, datetime

from webapp.core.timeutil import epoch_micros, from_epoch_micros


def _floor_hour(moment: datetime) -> datetime:
    return moment.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


_HOUR_US = 3_600_000_000


def _append(pieces: list[list[int]], lo: int, hi: int) -> None:
    if lo >= hi:
        return
    if pieces and pieces[-1][1] == lo:
        pieces[-1][1] = hi
    else:
        pieces.append([lo, hi])


def split_range(
    bounds: Sequence[datetime], start: datetime, end: datetime, now: datetime
) -> tuple[list[tuple[datetime, datetime]], list[tuple[datetime, datetime]]]:
    """[start, end) as (covered, uncovered) pieces: covered are closed UTC hours inside one bucket.

    `bounds` are the bucket boundaries (buckets.Buckets.bounds); a rollup hour must not straddle one,
    so zones whose offset is not a whole hour leave each bucket's edges to the raw events. Adjacent
    pieces are merged. (Worked in integer microseconds: a 90-day hourly series has 2,161 bounds.)
    """
    closed = epoch_micros(_floor_hour(now))
    first_us, end_us = epoch_micros(start), epoch_micros(end)
    covered: list[list[int]] = []
    uncovered: list[list[int]] = []
    edges = [epoch_micros(b) for b in bounds]
    if all(edge % _HOUR_US == 0 for edge in edges[1:-1]):
        # No whole UTC hour straddles an inner edge (a zone of whole-hour offsets, or daily and coarser
        # buckets in one): as far as rollups go the range is one bucket, and its covered hours one piece.
        edges = [edges[0], edges[-1]]
    for left, right in itertools.pairwise(edges):
        lo, hi = max(left, first_us), min(right, end_us)
        if lo >= hi:
            continue
        first = -(-lo // _HOUR_US) * _HOUR_US  # the first whole UTC hour at or after lo
        last = min(hi // _HOUR_US * _HOUR_US, closed)
        if first < last:
            _append(uncovered, lo, first)
            _append(covered, first, last)
            _append(uncovered, last, hi)
        else:
            _append(uncovered, lo, hi)
    return (
        [(from_epoch_micros(lo), from_epoch_micros(hi)) for lo, hi in covered],
        [(from_epoch_micros(lo), from_epoch_micros(hi)) for lo, hi in uncovered],
    )
