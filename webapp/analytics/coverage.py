"""Which parts of a range rollups may answer: closed UTC hours that lie wholly inside one bucket."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta


def _floor_hour(moment: datetime) -> datetime:
    return moment.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)
_HOUR_US = 3_600_000_000


def _micros(moment: datetime) -> int:
    return (moment - _EPOCH) // _MICROSECOND


def _instant(micros: int) -> datetime:
    return _EPOCH + timedelta(microseconds=micros)


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
    closed = _micros(_floor_hour(now))
    first_us, end_us = _micros(start), _micros(end)
    covered: list[list[int]] = []
    uncovered: list[list[int]] = []
    edges = [_micros(b) for b in bounds]
    if all(edge % _HOUR_US == 0 for edge in edges[1:-1]):
        # Every inner edge a whole UTC hour (a zone of whole-hour offsets, or daily and coarser
        # buckets in one): the covered hours of adjacent buckets join up into one piece.
        lo, hi = max(edges[0], first_us), min(edges[-1], end_us)
        if lo < hi:
            first = -(-lo // _HOUR_US) * _HOUR_US
            last = min(hi // _HOUR_US * _HOUR_US, closed)
            if first < last:
                _append(uncovered, lo, first)
                _append(covered, first, last)
                _append(uncovered, last, hi)
            else:
                _append(uncovered, lo, hi)
        edges = []
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
        [(_instant(lo), _instant(hi)) for lo, hi in covered],
        [(_instant(lo), _instant(hi)) for lo, hi in uncovered],
    )
