"""The conditions a bucket is judged by, the anomaly score against a hand computation, and where a
bucket's baseline lies across DST changes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from webapp.alerts.conditions import (
    Anomaly,
    Change,
    Reading,
    Threshold,
    anomaly_score,
    change_pct,
    judge,
)
from webapp.alerts.periods import baseline_start, bucket_containing, closed_buckets, previous_start


def _median(values: list[float]) -> float:
    ordered = sorted(values)
    middle = len(ordered) // 2
    return ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2


def _score(x: float, baseline: list[float]) -> float:
    center = _median(baseline)
    mad = _median([abs(b - center) for b in baseline])
    return abs(x - center) / (1.4826 * mad)


def test_anomaly_score_by_hand():
    # Median of 10, 11, 12, 13 is 11.5; the deviations 1.5, 0.5, 0.5, 1.5 have median 1.0.
    assert anomaly_score(30, [10, 12, 11, 13], 4) == pytest.approx(18.5 / 1.4826)
    assert anomaly_score(2, [10, 12, 11, 13], 4) == pytest.approx(9.5 / 1.4826)
    # An odd count: the median is the middle value (8), deviations 3, 0, 1 -> MAD 1.
    assert anomaly_score(14, [5, 8, 9], 3) == pytest.approx(6 / 1.4826)
    for x, baseline in [(7.5, [1.0, 4.0, 2.5, 9.0, 3.0]), (0.0, [0.0, 2.0, 3.0, 8.0])]:
        assert anomaly_score(x, baseline, len(baseline)) == pytest.approx(_score(x, baseline))


def test_no_score_without_a_value_a_full_baseline_or_spread():
    assert anomaly_score(None, [1, 2, 3, 4], 4) is None
    assert anomaly_score(10, [1, 2, 3], 4) is None  # B short
    assert anomaly_score(50, [5, 5, 5, 5], 4) is None  # MAD 0
    assert anomaly_score(50, [5, 5, 5, 9], 4) is None  # median 5, deviations 0, 0, 0, 4 -> MAD 0


def test_thresholds_are_strict():
    above, below = Threshold("above", 10), Threshold("below", 10)
    assert not judge(above, Reading(10, 10), 0).met
    assert judge(above, Reading(10.5, 1), 0).met
    assert not judge(below, Reading(10, 10), 0).met
    assert judge(below, Reading(9.99, 1), 0).met
    # No value (an empty bucket of an average) meets no condition.
    assert not judge(below, Reading(None, 0), 0).met


def test_min_count_gates_every_condition():
    assert not judge(Threshold("above", 1), Reading(5.0, 2), 3).met
    assert judge(Threshold("above", 1), Reading(5.0, 3), 3).met
    anomaly = Anomaly(3.0, 4)
    assert judge(anomaly, Reading(30, 30, baseline=(10, 12, 11, 13)), 30).met
    assert not judge(anomaly, Reading(30, 30, baseline=(10, 12, 11, 13)), 31).met


def test_anomaly_is_met_at_the_score_and_not_without_one():
    baseline = (10.0, 12.0, 11.0, 13.0)
    exact = 11.5 + 3 * 1.4826  # a score of exactly 3
    verdict = judge(Anomaly(3.0, 4), Reading(exact + 1e-9, 1, baseline=baseline), 0)
    assert verdict.met
    assert verdict.score == pytest.approx(3.0)
    assert not judge(Anomaly(3.0, 4), Reading(exact - 1e-6, 1, baseline=baseline), 0).met
    assert not judge(Anomaly(3.0, 4), Reading(100, 1, baseline=(5, 5, 5, 5)), 0).met


def test_change_against_the_bucket_before():
    assert change_pct(15, 10) == pytest.approx(50.0)
    assert change_pct(5, 10) == pytest.approx(-50.0)
    assert change_pct(5, -10) == pytest.approx(150.0)
    assert change_pct(5, 0) is None
    assert change_pct(None, 3) is None
    assert judge(Change("up", 50), Reading(15, 1, previous=10), 0).met
    assert not judge(Change("up", 50.1), Reading(15, 1, previous=10), 0).met
    assert judge(Change("down", 50), Reading(5, 1, previous=10), 0).met
    assert not judge(Change("down", 50), Reading(15, 1, previous=10), 0).met
    assert judge(Change("either", 40), Reading(5, 1, previous=10), 0).met
    assert judge(Change("either", 40), Reading(15, 1, previous=10), 0).met
    assert not judge(Change("either", 40), Reading(15, 1, previous=0), 0).met


NY = ZoneInfo("America/New_York")
BERLIN = ZoneInfo("Europe/Berlin")


def _utc(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=UTC)


def test_an_hour_of_the_week_is_the_same_local_hour_across_a_dst_change():
    # Sunday 2026-03-15 10:00 EDT (14:00Z): a week before is 10:00 EDT on the 8th, the day of the
    # change (14:00Z), two weeks 10:00 EST on the 1st (15:00Z).
    start = _utc(2026, 3, 15, 14)
    assert baseline_start("hourly", NY, start, 1) == _utc(2026, 3, 8, 14)
    assert baseline_start("hourly", NY, start, 2) == _utc(2026, 3, 1, 15)
    # 02:00 on the 15th has no counterpart on the 8th, which skipped it.
    assert baseline_start("hourly", NY, _utc(2026, 3, 15, 6), 1) is None
    # 01:00 a week after the autumn change: its baseline is the first 01:00 of 1 November (EDT, 05:00Z).
    assert baseline_start("hourly", NY, _utc(2026, 11, 8, 6), 1) == _utc(2026, 11, 1, 5)


def test_a_day_and_a_week_back_are_local_midnights():
    # Monday 2026-03-30 in Berlin (starts 22:00Z on the 29th): a week before starts 23:00Z on the 22nd.
    monday = _utc(2026, 3, 29, 22)
    assert baseline_start("daily", BERLIN, monday, 1) == _utc(2026, 3, 22, 23)
    assert baseline_start("weekly", BERLIN, monday, 2) == _utc(2026, 3, 15, 23)


def test_closed_buckets_are_whole_and_in_order():
    # The autumn day in New York: the repeated 01:00 hour is two buckets.
    found = closed_buckets("hourly", NY, since=_utc(2026, 11, 1, 4), until=_utc(2026, 11, 1, 8, 30), limit=10)
    assert [b.start for b in found] == [_utc(2026, 11, 1, h) for h in (4, 5, 6, 7)]
    assert found[-1].end == _utc(2026, 11, 1, 8)
    # The bucket in progress is not closed; at most `limit` are given.
    assert (
        len(closed_buckets("hourly", NY, since=_utc(2026, 11, 1, 4), until=_utc(2026, 11, 2), limit=3)) == 3
    )
    day = bucket_containing("daily", NY, _utc(2026, 11, 1, 12))
    assert day.end - day.start == timedelta(hours=25)
    assert previous_start("daily", NY, day.start) == _utc(2026, 10, 31, 4)
    # A since inside a bucket (the granularity changed) skips that bucket.
    found = closed_buckets("daily", NY, since=_utc(2026, 11, 1, 12), until=_utc(2026, 11, 4), limit=10)
    assert [b.start for b in found] == [_utc(2026, 11, 2, 5)]


def test_a_skipped_date_has_no_baseline():
    """Pacific/Apia went from 2011-12-29 to 2011-12-31: a day bucket 7 days after the skipped date has
    no bucket to compare with there (not the next day's, another weekday)."""
    apia = ZoneInfo("Pacific/Apia")
    friday = datetime(2012, 1, 6, tzinfo=apia).astimezone(UTC)
    assert baseline_start("daily", apia, friday, 1) is None
    saturday = datetime(2012, 1, 7, tzinfo=apia).astimezone(UTC)
    assert baseline_start("daily", apia, saturday, 1) == datetime(2011, 12, 31, tzinfo=apia).astimezone(UTC)
