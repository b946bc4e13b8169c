"""The quantile sketch: error bound against numpy's exact percentiles, merging, encoding."""

from __future__ import annotations

import numpy as np
import pytest

from webapp.analytics import sketch


@pytest.mark.parametrize("sigma", [0.5, 1.0, 2.0])
def test_percentiles_within_one_percent_of_exact_on_lognormal_data(sigma: float):
    values = np.random.default_rng(7).lognormal(mean=1.0, sigma=sigma, size=300_000)
    # Hour-sized pieces merged, as reads merge rollup rows.
    blobs = [sketch.from_values(chunk) for chunk in np.array_split(values, 240)]
    estimates = sketch.quantiles(blobs, [0.5, 0.95, 0.99], low=values.min(), high=values.max())
    exact = np.percentile(values, [50, 95, 99])
    for estimate, truth in zip(estimates, exact, strict=True):
        assert estimate is not None
        assert abs(estimate - truth) / truth <= 0.01
        assert abs(estimate - truth) / truth <= sketch.ALPHA * 1.01


def test_every_quantile_of_small_skewed_samples_is_within_alpha():
    rng = np.random.default_rng(11)
    for size in (1, 2, 5, 40, 1001):
        values = np.round(rng.lognormal(0.5, 1.5, size), 2) + 0.01
        fractions = [i / 100 for i in range(1, 100)]
        estimates = sketch.quantiles(
            [sketch.from_values(values)], fractions, low=values.min(), high=values.max()
        )
        exact = np.percentile(values, [f * 100 for f in fractions])
        assert np.all(np.abs(np.array(estimates) - exact) <= sketch.ALPHA * exact * 1.0001)


def test_merging_is_the_sketch_of_the_union_whatever_the_order():
    rng = np.random.default_rng(3)
    a, b, c = (rng.lognormal(0, 1, n) for n in (1000, 10, 5000))
    whole = sketch.merge([sketch.from_values(np.concatenate([a, b, c]))])
    for parts in ([a, b, c], [c, a, b]):
        merged = sketch.merge([sketch.from_values(p) for p in parts])
        assert np.array_equal(merged[0], whole[0])
        assert np.array_equal(merged[1], whole[1])
    # Concatenated bytes are a merge too: that is how PostgreSQL's string_agg merges them.
    joined = b"".join(sketch.from_values(p) for p in (a, b, c))
    assert np.array_equal(sketch.merge([joined])[1], whole[1])


def test_negative_zero_and_positive_values_keep_their_order():
    values = np.array([-3.0, -0.5, -0.001, 0.0, 0.0, 0.002, 0.4, 7.0])
    keys = sketch.keys_of(values)
    assert list(keys) == sorted(keys)
    assert keys[3] == keys[4] == 0
    reps = sketch.representatives(keys)
    nonzero = values != 0
    assert np.all(np.abs(reps[nonzero] - values[nonzero]) <= sketch.ALPHA * np.abs(values[nonzero]))
    assert sketch.quantiles([sketch.from_values(values)], [0.5], low=-3.0, high=7.0) == pytest.approx(
        [0.0], abs=1e-12
    )


def test_encoding_is_six_bytes_a_bucket_and_empty_input_has_no_quantiles():
    blob = sketch.from_values(np.array([1.0, 1.0, 2.0]))
    assert len(blob) == 2 * sketch.PAIR.itemsize == 12
    assert sketch.quantiles([], [0.5]) == [None]
    assert sketch.quantiles([None, b""], [0.5, 0.9]) == [None, None]
    with pytest.raises(ValueError, match="6-byte pairs"):
        sketch.merge([b"\x00\x01\x02"])


def test_quantiles_of_groups_equal_each_groups_own_and_subtracted_pairs_cancel():
    rng = np.random.default_rng(11)
    groups: list[list[bytes | None]] = []
    for _ in range(60):
        parts = [sketch.from_values(rng.lognormal(1, 2, int(rng.integers(1, 40)))) for _ in range(3)]
        groups.append([*parts[: int(rng.integers(0, 4))], None])
    groups.append([sketch.from_values(np.array([0.0, 0.0, 5.0]))])
    values = rng.lognormal(0, 1, 30)
    # A sketch with some values added and then taken away again (count -1): as if never added.
    taken = sketch.encode(sketch.keys_of(values[:10]), -np.ones(10, dtype=np.int64))
    groups.append([sketch.from_values(values), taken])
    expected = [sketch.quantiles(group, [0.5])[0] for group in groups]
    expected[-1] = sketch.quantiles([sketch.from_values(values[10:])], [0.5])[0]
    got = sketch.quantiles_of_groups(groups, 0.5)
    for a, b in zip(got, expected, strict=True):
        assert (a is None and b is None) or a == pytest.approx(b, rel=1e-12)
    assert sketch.quantiles_of_groups([[None], []], 0.5) == [None, None]


@pytest.mark.parametrize("dense_cells", [sketch.DENSE_CELLS, 1])
def test_quantiles_by_group_equal_each_groups_own_with_their_extremes(monkeypatch, dense_cells: int):
    """Every group's estimates equal quantiles() of its own sketches with its own exact minimum and
    maximum: groups of one value, of negatives and zeros, empty ones, and groups in chunks of one."""
    monkeypatch.setattr(sketch, "DENSE_CELLS", dense_cells)
    rng = np.random.default_rng(7)
    groups, lows, highs = [], [], []
    for i in range(40):
        n = int(rng.integers(0, 300)) if i % 7 else (0 if i % 14 == 0 else 1)
        values = rng.lognormal(0, 2, n) * rng.choice([-1.0, 0.0, 1.0, 1.0], n)
        parts = np.array_split(values, int(rng.integers(1, 5)))
        groups.append([sketch.from_values(part) if len(part) else None for part in parts])
        known = n and i % 3
        lows.append(float(values.min()) if known else None)
        highs.append(float(values.max()) if known else None)
    fractions = [0.0, 0.01, 0.5, 0.95, 0.99, 1.0]
    got = sketch.quantiles_by_group(groups, fractions, lows, highs)
    for group, low, high, estimates in zip(groups, lows, highs, got, strict=True):
        assert estimates == sketch.quantiles(group, fractions, low=low, high=high)
