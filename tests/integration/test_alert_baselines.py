"""An anomaly rule's readings (a bucket's value and its baseline: the same bucket 7 days a period
back) against a reference built from the API's own series and periods.baseline_start, bucket by
bucket, around DST changes (New York's hour, Lord Howe's half hour) at every granularity a rule takes."""

from __future__ import annotations

import random
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from webapp.alerts.conditions import Anomaly
from webapp.alerts.periods import baseline_start, closed_buckets
from webapp.alerts.readings import Definition, read
from webapp.models import Organization
from webapp.tickets.bulk import create_tickets_bulk

PERIODS = 3
CASES = [
    # (zone, granularity, first day evaluated, days evaluated)
    ("America/New_York", "hourly", date(2026, 3, 7), 3),
    ("America/New_York", "hourly", date(2026, 10, 31), 3),
    ("America/New_York", "hourly", date(2026, 11, 7), 3),  # baselines in the repeated hour
    ("Australia/Lord_Howe", "hourly", date(2026, 4, 11), 2),  # baselines in the 90-minute hour
    ("Australia/Lord_Howe", "hourly", date(2026, 10, 3), 2),
    ("Australia/Lord_Howe", "hourly", date(2026, 10, 10), 2),
    ("Europe/Berlin", "daily", date(2026, 3, 20), 20),
    ("Pacific/Apia", "daily", date(2012, 1, 2), 10),  # 2011-12-30 was skipped: no baseline there
    ("Europe/Berlin", "weekly", date(2026, 2, 2), 70),
]


def _seed(db_session, org_id: int, start: datetime, end: datetime, rng: random.Random) -> None:
    """About one ticket every 40 minutes over [start, end), some answered (response_time)."""
    org = db_session.get(Organization, org_id)
    rows = []
    moment = start
    while moment < end:
        moment += timedelta(minutes=rng.randint(1, 80))
        answered = rng.random() < 0.6
        rows.append(
            {
                "subject": "baseline",
                "created_at": moment,
                **(
                    {"first_response_at": moment + timedelta(minutes=rng.randint(1, 300))} if answered else {}
                ),
            }
        )
    create_tickets_bulk(db_session, org, rows, now=datetime(2026, 12, 1, tzinfo=UTC))
    db_session.flush()


def _series(api, metric: str, granularity: str, tz: str, start: datetime, end: datetime) -> dict:
    """The API's points by their start instant (UTC), read a piece at a time."""
    points = {}
    step = {"hourly": timedelta(days=60), "daily": timedelta(days=3000), "weekly": timedelta(days=9000)}
    piece = start
    while piece < end:
        upto = min(end, piece + step[granularity])
        answer = api.get(
            f"/api/v1/analytics/time-series/{metric}?granularity={granularity}&tz={tz}"
            f"&start={piece.isoformat().replace('+00:00', 'Z')}&end={upto.isoformat().replace('+00:00', 'Z')}"
        )
        assert answer.status_code == 200, answer.get_json()
        for point in answer.get_json()["points"]:
            points.setdefault(datetime.fromisoformat(point["bucket"]).astimezone(UTC), point)
        piece = upto
    return points


@pytest.mark.parametrize(("zone", "granularity", "first", "days"), CASES)
@pytest.mark.parametrize("metric", ["ticket_count", "response_time"])
def test_readings_match_the_series_at_each_baseline_start(
    make_tenant, db_session, zone, granularity, first, days, metric
):
    tz = ZoneInfo(zone)
    tenant = make_tenant(f"Baselines {zone}", zone)
    since = datetime.combine(first, datetime.min.time(), tz).astimezone(UTC)
    until = since + timedelta(days=days)
    reach = since - timedelta(days=7 * PERIODS + 8)
    _seed(db_session, tenant.org_id, reach, until, random.Random(f"{zone}{granularity}{first}"))
    buckets = closed_buckets(granularity, tz, since=since, until=until, limit=5000)
    assert buckets
    rule = Definition(metric, {}, granularity, Anomaly(3.0, PERIODS), 0)

    readings = read(db_session, tenant.org_id, rule, tz, buckets)

    points = _series(tenant.viewer, metric, granularity, zone, reach - timedelta(days=1), until)
    assert len(readings) == len(buckets)
    for bucket, reading in zip(buckets, readings, strict=True):
        point = points[bucket.start]
        assert (reading.value, reading.count) == (point["value"], point["count"]), bucket
        expected = []
        for k in range(1, PERIODS + 1):
            start = baseline_start(granularity, tz, bucket.start, k)
            earlier = points.get(start) if start is not None else None
            if earlier is not None and earlier["value"] is not None:
                expected.append(earlier["value"])
        assert list(reading.baseline) == pytest.approx(expected), bucket
