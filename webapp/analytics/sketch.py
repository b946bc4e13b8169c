"""A mergeable quantile sketch with relative-error buckets (DDSketch's logarithmic mapping).

A value v > 0 falls in bucket k = ceil(log_gamma(v)), which spans (gamma^(k-1), gamma^k]; every value
of a bucket is represented by 2 gamma^k / (gamma + 1), within ALPHA of it relatively. Negative values
mirror that, and values too close to zero share one zero bucket. Keys are stored as one signed int16
that orders the same way the values do: negatives below 0, zero at 0, positives above.

The encoding is headerless on purpose: a sketch is a run of (key int16, count int32) big-endian
pairs, so the concatenation of two sketches is their merge. PostgreSQL builds and merges them with
int2send/int4send and string_agg inside GROUP BY, and numpy decodes any number of them at once.
Repeated keys are allowed; `merge` folds them. Imports rely on that: they add new values to a
rollup row by appending their pairs (analytics.rollups), folding only sketches grown long.

Choosing this over a t-digest: merging here is adding bucket counts, so an hour merged into a year
is exactly the year's own sketch, whatever the order, and SQL can build one in the same GROUP BY as
count, sum, min and max. The error bound holds for every quantile, not only on average.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import numpy as np

# 0.5% per value leaves room under the 1% promised for interpolated percentiles.
ALPHA = 0.005
GAMMA = (1 + ALPHA) / (1 - ALPHA)
LN_GAMMA = math.log(GAMMA)
# Keys of positive values are OFFSET + k for k in [-MAX_K, MAX_K], i.e. 1..32767; negatives mirror.
OFFSET = 16384
MAX_K = 16383
# |v| at or below gamma^-MAX_K (about 1e-71) counts as zero.
MIN_INDEXABLE = GAMMA ** (-MAX_K)
PAIR = np.dtype([("key", ">i2"), ("count", ">i4")])
# Sketches of at most this many pairs in all are merged by sorting, more into a dense array.
SMALL_MERGE = 4096

# The same mapping in SQL, for a float8 expression in place of {v}; NULL stays NULL.
SQL_KEY = (
    "(CASE WHEN {v} IS NULL THEN NULL"
    f" WHEN {{v}} > {MIN_INDEXABLE!r} THEN {OFFSET} + least({MAX_K}, greatest(-{MAX_K},"
    f" ceil(ln({{v}}) / {LN_GAMMA!r})))"
    f" WHEN {{v}} < -{MIN_INDEXABLE!r} THEN -({OFFSET} + least({MAX_K}, greatest(-{MAX_K},"
    f" ceil(ln(-{{v}}) / {LN_GAMMA!r}))))"
    " ELSE 0 END)"
)


def sql_key(value_sql: str) -> str:
    """SQL computing the sketch key (an integer) of the float8 expression `value_sql`."""
    return SQL_KEY.replace("{v}", f"({value_sql})")


def keys_of(values: np.ndarray) -> np.ndarray:
    """The key of each value, as int16 (the Python twin of SQL_KEY)."""
    v = np.asarray(values, dtype=np.float64)
    magnitude = np.abs(v)
    with np.errstate(divide="ignore", invalid="ignore"):
        k = np.ceil(np.log(np.where(magnitude > MIN_INDEXABLE, magnitude, 1.0)) / LN_GAMMA)
    k = np.clip(k, -MAX_K, MAX_K).astype(np.int32) + OFFSET
    out = np.where(v > MIN_INDEXABLE, k, np.where(v < -MIN_INDEXABLE, -k, 0))
    return out.astype(np.int16)


def representatives(keys: np.ndarray) -> np.ndarray:
    """The value each key stands for: within ALPHA of every value the bucket holds."""
    keys = np.asarray(keys, dtype=np.int32)
    k = np.abs(keys) - OFFSET
    magnitude = 2.0 * np.power(GAMMA, k.astype(np.float64)) / (GAMMA + 1.0)
    return np.where(keys > 0, magnitude, np.where(keys < 0, -magnitude, 0.0))


def encode(keys: np.ndarray, counts: np.ndarray) -> bytes:
    """Pairs of (key, count) as bytes, keys ascending."""
    order = np.argsort(keys, kind="stable")
    out = np.empty(len(order), dtype=PAIR)
    out["key"] = np.asarray(keys)[order]
    out["count"] = np.asarray(counts)[order]
    return out.tobytes()


def from_values(values: Iterable[float] | np.ndarray) -> bytes:
    """The sketch of `values`."""
    keys = keys_of(np.fromiter(values, dtype=np.float64) if not isinstance(values, np.ndarray) else values)
    unique, counts = np.unique(keys, return_counts=True)
    return encode(unique, counts)


def merge(blobs: Iterable[bytes | None]) -> tuple[np.ndarray, np.ndarray]:
    """Keys (ascending, unique) and their counts over every sketch in `blobs`."""
    raw = b"".join(blob for blob in blobs if blob)
    if len(raw) % PAIR.itemsize:
        raise ValueError("a sketch is a whole number of 6-byte pairs")
    pairs = np.frombuffer(raw, dtype=PAIR)
    if not len(pairs):
        return np.empty(0, np.int16), np.empty(0, np.int64)
    keys = pairs["key"].astype(np.int32)
    if len(pairs) <= SMALL_MERGE:
        # Few pairs: sorting them is cheaper than clearing and scanning the dense array below.
        unique, inverse = np.unique(keys, return_inverse=True)
        summed = np.bincount(inverse, weights=pairs["count"].astype(np.float64), minlength=len(unique))
        present = np.flatnonzero(summed)
        return unique[present].astype(np.int16), summed[present].astype(np.int64)
    # The key space is only 65,535 wide: counting into a dense array beats sorting.
    dense = np.bincount(keys + 32768, weights=pairs["count"].astype(np.float64), minlength=65536)
    present = np.flatnonzero(dense)
    return (present - 32768).astype(np.int16), dense[present].astype(np.int64)


def quantiles(
    blobs: Iterable[bytes | None],
    fractions: Sequence[float],
    *,
    low: float | None = None,
    high: float | None = None,
) -> list[float | None]:
    """Linearly interpolated quantiles (as percentile_cont) of the merged sketches.

    `low` and `high` are the exact minimum and maximum when known: the extreme ranks use them, and
    every estimate is clamped between them.
    """
    keys, counts = merge(blobs)
    total = int(counts.sum()) if len(counts) else 0
    if total == 0:
        return [None for _ in fractions]
    cumulative = np.cumsum(counts)
    values = representatives(keys)

    def at_rank(rank: int) -> float:
        if rank == 0 and low is not None:
            return low
        if rank == total - 1 and high is not None:
            return high
        return float(values[np.searchsorted(cumulative, rank, side="right")])

    out: list[float | None] = []
    for fraction in fractions:
        position = fraction * (total - 1)
        below = math.floor(position)
        above = min(below + 1, total - 1)
        lower, upper = at_rank(below), at_rank(above)
        estimate = lower + (position - below) * (upper - lower)
        if low is not None:
            estimate = max(estimate, low)
        if high is not None:
            estimate = min(estimate, high)
        out.append(estimate)
    return out


# Groups times key span counted into one dense array at a time (8 bytes a cell: 16 MB).
DENSE_CELLS = 2_000_000


def quantiles_of_groups(groups: Sequence[Iterable[bytes | None]], fraction: float) -> list[float | None]:
    """quantiles(group, [fraction])[0] for each group of sketches, all groups in one pass."""
    return [values[0] for values in quantiles_by_group(groups, [fraction])]


def quantiles_by_group(
    groups: Sequence[Iterable[bytes | None]],
    fractions: Sequence[float],
    lows: Sequence[float | None] | None = None,
    highs: Sequence[float | None] | None = None,
) -> list[list[float | None]]:
    """quantiles(group, fractions, low=lows[i], high=highs[i]) for each group i, counted together.

    The pairs of every group are counted into one dense array (a row per group, a column per key
    between the smallest and the largest present), so dozens of groups cost about what one merge of
    all their pairs does: a 90-day aggregation by channel and priority merged 24 groups of 90 days'
    sketches a metric in 15 ms one by one. Groups go in chunks of at most DENSE_CELLS cells.
    """
    raws = [b"".join(blob for blob in group if blob) for group in groups]
    if any(len(raw) % PAIR.itemsize for raw in raws):
        raise ValueError("a sketch is a whole number of 6-byte pairs")
    lows = list(lows) if lows is not None else [None] * len(raws)
    highs = list(highs) if highs is not None else [None] * len(raws)
    out: list[list[float | None]] = []
    start = 0
    while start < len(raws):
        # As many groups as fit DENSE_CELLS with the key span they share (one group at least).
        end, low_key, high_key = start, None, None
        while end < len(raws):
            keys = np.frombuffer(raws[end], dtype=PAIR)["key"]
            lo, hi = low_key, high_key
            if len(keys):
                lo = int(keys.min()) if lo is None else min(lo, int(keys.min()))
                hi = int(keys.max()) if hi is None else max(hi, int(keys.max()))
            span = 1 if lo is None or hi is None else hi - lo + 1
            if end > start and (end - start + 1) * span > DENSE_CELLS:
                break
            low_key, high_key, end = lo, hi, end + 1
        out.extend(_dense_quantiles(raws[start:end], fractions, lows[start:end], highs[start:end]))
        start = end
    return out


def _dense_quantiles(
    raws: Sequence[bytes],
    fractions: Sequence[float],
    lows: Sequence[float | None],
    highs: Sequence[float | None],
) -> list[list[float | None]]:
    """quantiles_by_group over one chunk of groups, their pairs counted into one dense array."""
    groups = [np.frombuffer(raw, dtype=PAIR) for raw in raws]
    present = [pairs["key"] for pairs in groups if len(pairs)]
    if not present:
        return [[None for _ in fractions] for _ in raws]
    low_key = min(int(keys.min()) for keys in present)
    span = max(int(keys.max()) for keys in present) - low_key + 1
    # A row per group, counted from the group's own pairs (no copy of every pair joined together).
    dense = np.zeros((len(raws), span), dtype=np.float64)
    for row, pairs in zip(dense, groups, strict=True):
        if len(pairs):
            keys = pairs["key"].astype(np.int64) - low_key
            row += np.bincount(keys, weights=pairs["count"], minlength=span)
    cumulative = np.cumsum(dense, axis=1)
    totals = cumulative[:, -1].astype(np.int64)
    low = np.array([np.nan if v is None else v for v in lows], dtype=np.float64)
    high = np.array([np.nan if v is None else v for v in highs], dtype=np.float64)
    last = np.maximum(totals - 1, 0)

    def at_rank(ranks: np.ndarray) -> np.ndarray:
        # The value at rank r is the first key whose cumulative count exceeds r; the extreme ranks
        # take the exact minimum and maximum where they are known.
        values = representatives(low_key + (cumulative > ranks[:, None]).argmax(axis=1))
        values = np.where((ranks == last) & ~np.isnan(high), high, values)
        return np.where((ranks == 0) & ~np.isnan(low), low, values)

    columns = []
    for fraction in fractions:
        position = fraction * last
        below = np.floor(position)
        above = np.minimum(below + 1, last)
        lower, upper = at_rank(below), at_rank(above)
        estimate = lower + (position - below) * (upper - lower)
        estimate = np.where(np.isnan(low), estimate, np.maximum(estimate, low))
        columns.append(np.where(np.isnan(high), estimate, np.minimum(estimate, high)))
    return [
        [float(column[i]) for column in columns] if totals[i] > 0 else [None for _ in fractions]
        for i in range(len(raws))
    ]
