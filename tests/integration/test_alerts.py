"""Alert rules through the API, and their evaluation on a seeded series against an independent
computation: a spike, a dip, a flat baseline (MAD 0); the live pass and a simulation agree."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import text

from webapp.alerts import live
from webapp.models import Organization
from webapp.tickets.bulk import create_tickets_bulk

BERLIN = ZoneInfo("Europe/Berlin")
ANOMALY = {"type": "anomaly", "score": 3.0, "baseline_periods": 4}


def _rule(api: Any, **fields: Any) -> dict[str, Any]:
    body = {
        "name": "volume",
        "metric": "ticket_count",
        "granularity": "daily",
        "condition": ANOMALY,
        "channels": [{"type": "websocket"}],
        **fields,
    }
    response = api.post("/api/v1/alerts", json=body)
    assert response.status_code == 201, response.get_json()
    return response.get_json()


def _seed(db_session: Any, org_id: int, counts: dict[date, int], tz: ZoneInfo, **fields: Any) -> None:
    """`counts[day]` tickets created at local noon (a minute apart) of each day."""
    org = db_session.get(Organization, org_id)
    rows = [
        {
            "subject": "seeded",
            "created_at": datetime.combine(day, datetime.min.time()).replace(tzinfo=tz, hour=12, minute=i),
            **fields,
        }
        for day, count in counts.items()
        for i in range(count)
    ]
    create_tickets_bulk(db_session, org, rows, now=datetime(2026, 12, 1, tzinfo=UTC))
    db_session.flush()


def _median(values: list[float]) -> float:
    ordered = sorted(values)
    middle = len(ordered) // 2
    return ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2


def _expected(counts: dict[date, int], days: list[date], periods: int, threshold: float) -> list[tuple]:
    """The transitions of an anomaly rule on daily ticket counts, worked out from `counts` alone."""
    state, out = "ok", []
    for day in days:
        x = counts.get(day, 0)
        baseline = [counts.get(day - timedelta(days=7 * k), 0) for k in range(1, periods + 1)]
        center = _median(baseline)
        mad = _median([abs(b - center) for b in baseline])
        score = abs(x - center) / (1.4826 * mad) if mad else None
        new = "firing" if score is not None and score >= threshold else "ok"
        if new != state:
            out.append((new, day, x, score))
            state = new
    return out


# Weeks of 2026-03-02 .. 2026-03-29 (the last has Berlin's 23-hour Sunday), evaluated on 03-30 .. 04-05.
WEEK5 = [date(2026, 3, 30) + timedelta(days=i) for i in range(7)]
BASELINES = {
    0: [10, 12, 11, 13],  # Monday: a spike of 30
    1: [10, 12, 11, 13],  # Tuesday: back to normal
    2: [10, 12, 11, 13],  # Wednesday: a dip to 2
    3: [5, 5, 5, 5],  # Thursday: flat, MAD 0: 40 is no anomaly
    4: [8, 9, 10, 11],
    5: [3, 4, 6, 20],  # Saturday: median 5, MAD 1.5: 15 scores 4.5
    6: [3, 4, 6, 20],
}
VALUES = {0: 30, 1: 12, 2: 2, 3: 40, 4: 9, 5: 15, 6: 5}


def _series() -> dict[date, int]:
    counts: dict[date, int] = {}
    for weekday, values in BASELINES.items():
        for k, value in enumerate(values, start=1):
            counts[WEEK5[weekday] - timedelta(days=7 * k)] = value
        counts[WEEK5[weekday]] = VALUES[weekday]
    return counts


def _local_midnight(day: date) -> datetime:
    return datetime.combine(day, datetime.min.time()).replace(tzinfo=BERLIN)


def _evaluate_from(db_session: Any, rule_id: int, start: date, now: datetime) -> live.Recorded | None:
    """The live pass, as if the rule had last been evaluated up to local midnight of `start`."""
    db_session.execute(
        text("UPDATE alert_rules SET evaluated_until = :at WHERE id = :id"),
        {"at": _local_midnight(start), "id": rule_id},
    )
    return live.evaluate_rule(db_session, rule_id, now=now)


def test_anomaly_states_match_an_independent_computation_and_simulate(make_tenant, db_session):
    tenant = make_tenant("Anomalies", "Europe/Berlin")
    counts = _series()
    _seed(db_session, tenant.org_id, counts, BERLIN)
    rule = _rule(tenant.admin)
    expected = _expected(counts, WEEK5, 4, 3.0)
    # Spike, back, dip, flat baseline (no score: resolved), Saturday's 15 against 3 4 6 20, back.
    assert [(state, day.isoformat()) for state, day, *_ in expected] == [
        ("firing", "2026-03-30"),
        ("ok", "2026-03-31"),
        ("firing", "2026-04-01"),
        ("ok", "2026-04-02"),
        ("firing", "2026-04-04"),
        ("ok", "2026-04-05"),
    ]

    recorded = _evaluate_from(
        db_session, rule["id"], WEEK5[0], _local_midnight(date(2026, 4, 6)) + timedelta(minutes=1)
    )
    assert recorded is not None
    assert recorded.buckets == 7
    events = tenant.viewer.get(f"/api/v1/alerts/{rule['id']}/events").get_json()["items"][::-1]
    got = [(e["state"], datetime.fromisoformat(e["bucket"]).date(), e["value"], e["score"]) for e in events]
    assert [g[:3] for g in got] == [e[:3] for e in expected]
    for (_, _, _, score), (_, _, _, want) in zip(got, expected, strict=True):
        assert (score is None) == (want is None)
        if want is not None:
            assert score == pytest.approx(want)
    # Every bucket is in the organization's zone: local midnights, the DST day included.
    assert all(datetime.fromisoformat(e["bucket"]).time().hour == 0 for e in events)
    assert tenant.viewer.get(f"/api/v1/alerts/{rule['id']}").get_json()["state"] == "ok"
    # WebSocket messages, to send after the commit, one per transition.
    assert [m["state"] for m in recorded.websocket] == [e[0] for e in expected]
    assert set(recorded.websocket[0]) == {"alert_id", "name", "state", "bucket", "value", "score"}

    simulated = tenant.viewer.post(
        f"/api/v1/alerts/{rule['id']}/simulate", json={"start": "2026-03-30", "end": "2026-04-06"}
    ).get_json()
    assert simulated["buckets"] == 7
    assert [(t["state"], t["bucket"], t["value"], t["score"]) for t in simulated["transitions"]] == [
        (e["state"], e["bucket"], e["value"], e["score"]) for e in events
    ]
    # A count is the same JSON number everywhere it is shown: 21, never 21.0 in one and 21 in another.
    for shown in (events, simulated["transitions"], recorded.websocket):
        assert all(type(item["value"]) is int for item in shown)

    # A second pass over the same time finds nothing left to evaluate: nothing is recorded twice.
    assert (
        live.evaluate_rule(db_session, rule["id"], now=_local_midnight(date(2026, 4, 6)) + timedelta(hours=1))
        is None
    )


def test_a_short_baseline_has_no_score(make_tenant, db_session):
    tenant = make_tenant("Short", "Europe/Berlin")
    # Response times on the same weekday two and one weeks back (1 h, 2 h), then 50 h: B holds only
    # two of the four values it needs (the weeks without a response have no value, not 0).
    org = db_session.get(Organization, tenant.org_id)
    rows = [
        {"subject": "r", "created_at": created, "first_response_at": created + timedelta(hours=hours)}
        for created, hours in (
            (_local_midnight(WEEK5[0] - timedelta(days=14)) + timedelta(hours=9), 1),
            (_local_midnight(WEEK5[0] - timedelta(days=7)) + timedelta(hours=9), 2),
            (_local_midnight(WEEK5[0]) + timedelta(hours=9), 50),
        )
    ]
    create_tickets_bulk(db_session, org, rows, now=datetime(2026, 12, 1, tzinfo=UTC))
    db_session.flush()
    rule = _rule(tenant.admin, metric="response_time")
    simulated = tenant.viewer.post(
        f"/api/v1/alerts/{rule['id']}/simulate", json={"start": "2026-03-30", "end": "2026-03-31"}
    ).get_json()
    assert simulated == {"transitions": [], "buckets": 1}


def test_thresholds_on_an_average_with_empty_buckets_and_min_count(make_tenant, db_session):
    tenant = make_tenant("Average", "UTC")
    org = db_session.get(Organization, tenant.org_id)
    # Response times per day: 2 h, nothing, 6 h and 8 h (two tickets), 5 h.
    day = datetime(2026, 6, 1, 8, tzinfo=UTC)
    hours = {0: [2], 2: [6, 8], 3: [5]}
    rows = [
        {
            "subject": "r",
            "created_at": day + timedelta(days=d),
            "first_response_at": day + timedelta(days=d, hours=h),
        }
        for d, values in hours.items()
        for h in values
    ]
    create_tickets_bulk(db_session, org, rows, now=datetime(2026, 12, 1, tzinfo=UTC))
    db_session.flush()
    above = _rule(tenant.admin, metric="response_time", condition={"type": "above", "value": 4})
    counted = _rule(
        tenant.admin, metric="response_time", condition={"type": "above", "value": 4}, min_count=2
    )
    below = _rule(tenant.admin, metric="response_time", condition={"type": "below", "value": 5})

    def states(rule: dict[str, Any]) -> list[tuple[str, str, float | None]]:
        body = tenant.viewer.post(
            f"/api/v1/alerts/{rule['id']}/simulate", json={"start": "2026-06-01", "end": "2026-06-05"}
        ).get_json()
        assert body["buckets"] == 4
        return [(t["state"], t["bucket"][:10], t["value"]) for t in body["transitions"]]

    # Above 4: day 2's 7 h fires, day 3's 5 h keeps it firing.
    assert states(above) == [("firing", "2026-06-03", 7.0)]
    # min_count 2: only the day with two responses counts.
    assert states(counted) == [("firing", "2026-06-03", 7.0), ("ok", "2026-06-04", 5.0)]
    # Strictly below 5: day 0 (2 h) fires, the empty day resolves it, day 3's 5 h is not below 5.
    assert states(below) == [("firing", "2026-06-01", 2.0), ("ok", "2026-06-02", None)]


def test_change_against_the_bucket_before(make_tenant, db_session):
    tenant = make_tenant("Change", "UTC")
    counts = {date(2026, 6, 1): 10, date(2026, 6, 2): 16, date(2026, 6, 3): 0, date(2026, 6, 4): 4}
    _seed(db_session, tenant.org_id, counts, ZoneInfo("UTC"))
    up = _rule(tenant.admin, condition={"type": "change_pct", "direction": "up", "value": 50})
    either = _rule(tenant.admin, condition={"type": "change_pct", "direction": "either", "value": 100})

    def run(rule: dict[str, Any]) -> list[tuple[str, str, float | None]]:
        body = tenant.viewer.post(
            f"/api/v1/alerts/{rule['id']}/simulate", json={"start": "2026-06-01", "end": "2026-06-05"}
        ).get_json()
        return [(t["state"], t["bucket"][:10], t["change_pct"]) for t in body["transitions"]]

    # 10 -> 16 is +60 %; 16 -> 0 is -100 %; 0 -> 4 has no change (from 0); 5-31 May held nothing.
    assert run(up) == [
        ("firing", "2026-06-02", pytest.approx(60.0)),
        ("ok", "2026-06-03", pytest.approx(-100.0)),
    ]
    assert run(either) == [("firing", "2026-06-03", pytest.approx(-100.0)), ("ok", "2026-06-04", None)]


def test_rules_through_the_api(make_tenant):
    tenant = make_tenant("Rules", "America/New_York")
    other = make_tenant("Other")
    hook = other.admin.post("/api/v1/webhooks", json={"url": "https://93.184.216.34/hook"})
    assert hook.status_code == 201, hook.get_json()
    created = _rule(tenant.admin, filters={"priority": ["urgent", "high"]}, min_count=3)
    assert created["state"] == "ok"
    assert created["enabled"] is True
    assert created["filters"] == {"priority": ["high", "urgent"]}
    # Evaluated from the local day in progress: its bucket starts at local midnight.
    assert datetime.fromisoformat(created["evaluated_until"]).time().hour == 0
    listed = tenant.viewer.get("/api/v1/alerts").get_json()["items"]
    assert [r["id"] for r in listed] == [created["id"]]

    bad = {
        "metric": {"metric": "nope"},
        "granularity": {"granularity": "monthly"},
        "condition": {"condition": {"type": "between", "value": 1}},
        "score": {"condition": {"type": "anomaly", "score": 0}},
        "periods": {"condition": {"type": "anomaly", "baseline_periods": 1}},
        "direction": {"condition": {"type": "change_pct", "direction": "sideways", "value": 5}},
        "filters": {"filters": {"priority": ["whenever"]}},
        "extra": {"colour": "red"},
        "nan": {"condition": {"type": "above", "value": "NaN"}},
        # Numbers are numbers, as in the SLA policy: a string is not taken for one.
        "string": {"condition": {"type": "above", "value": "5"}},
        "string change": {"condition": {"type": "change_pct", "direction": "up", "value": "5"}},
        "string score": {"condition": {"type": "anomaly", "score": "3"}},
    }
    for name, fields in bad.items():
        response = tenant.admin.post(
            "/api/v1/alerts",
            json={
                "name": "x",
                "metric": "ticket_count",
                "granularity": "daily",
                "condition": ANOMALY,
                "channels": [],
                **fields,
            },
        )
        assert response.status_code == 400, (name, response.get_json())
        assert response.get_json()["error"]["code"] == "bad_request"
    # Another organization's webhook (or none at all) is 404.
    for webhook_id in (hook.get_json()["id"], 10**12):
        response = tenant.admin.post(
            "/api/v1/alerts",
            json={
                "name": "x",
                "metric": "ticket_count",
                "granularity": "daily",
                "condition": ANOMALY,
                "channels": [{"type": "webhook", "webhook_id": webhook_id}],
            },
        )
        assert response.status_code == 404, response.get_json()

    patched = tenant.admin.patch(f"/api/v1/alerts/{created['id']}", json={"min_count": 0, "enabled": False})
    assert patched.status_code == 200
    assert patched.get_json()["enabled"] is False
    assert tenant.admin.patch(f"/api/v1/alerts/{created['id']}", json={"name": None}).status_code == 400
    assert tenant.admin.patch(f"/api/v1/alerts/{created['id']}", json={}).status_code == 400
    assert tenant.agent.post("/api/v1/alerts", json={}).status_code == 403
    assert tenant.viewer.patch(f"/api/v1/alerts/{created['id']}", json={"name": "y"}).status_code == 403
    assert other.viewer.get(f"/api/v1/alerts/{created['id']}").status_code == 404
    simulate = tenant.viewer.post(
        f"/api/v1/alerts/{created['id']}/simulate", json={"start": "2026-01-02", "end": "2026-01-01"}
    )
    assert simulate.status_code == 400
    assert tenant.admin.delete(f"/api/v1/alerts/{created['id']}").status_code == 204
    assert tenant.viewer.get(f"/api/v1/alerts/{created['id']}").status_code == 404


def _evaluate_since(db_session: Any, rule_id: int, since: datetime, now: datetime) -> live.Recorded | None:
    db_session.execute(
        text("UPDATE alert_rules SET evaluated_until = :at WHERE id = :id"), {"at": since, "id": rule_id}
    )
    return live.evaluate_rule(db_session, rule_id, now=now)


def test_a_rule_moved_to_a_coarser_granularity_judges_the_bucket_in_progress(make_tenant, db_session):
    """Hourly until 10:30, then daily: the day holding those hours is still judged (as a day), and its
    event may share a start with an hourly one of the same rule."""
    bangkok = ZoneInfo("Asia/Bangkok")
    tenant = make_tenant("Coarser", "Asia/Bangkok")
    org = db_session.get(Organization, tenant.org_id)
    day = date(2026, 4, 1)
    midnight = datetime.combine(day, datetime.min.time()).replace(tzinfo=bangkok)
    create_tickets_bulk(
        db_session,
        org,
        [{"subject": "early", "created_at": midnight + timedelta(minutes=20)}],
        now=datetime(2026, 12, 1, tzinfo=UTC),
    )
    db_session.flush()
    rule = _rule(tenant.admin, granularity="hourly", condition={"type": "above", "value": 0})
    db_session.commit()
    # Judged hourly from local midnight to 10:00: the 00:00 hour fires, the 01:00 one resolves.
    recorded = _evaluate_since(db_session, rule["id"], midnight, midnight + timedelta(hours=10, minutes=1))
    assert recorded is not None
    assert [(t["state"], t["bucket"]) for t in recorded.transitions] == [
        ("firing", midnight.isoformat()),
        ("ok", (midnight + timedelta(hours=1)).isoformat()),
    ]
    db_session.commit()
    # The API moves a rule as of the clock: judged hourly up to this hour, then moved to daily, it
    # starts at today's local midnight, before what it judged (the passes below run in 2026-04).
    now = datetime.now(bangkok)
    _evaluate_since(db_session, rule["id"], now.replace(minute=0, second=0, microsecond=0), now)
    db_session.commit()
    moved = tenant.admin.patch(f"/api/v1/alerts/{rule['id']}", json={"granularity": "daily"})
    assert moved.status_code == 200, moved.get_json()
    today = now.replace(hour=0, minute=0, second=0, microsecond=0)
    assert datetime.fromisoformat(moved.get_json()["evaluated_until"]) == today
    db_session.expire_all()
    recorded = _evaluate_since(db_session, rule["id"], midnight, midnight + timedelta(days=1, minutes=1))
    assert recorded is not None
    assert [(t["state"], t["bucket"]) for t in recorded.transitions] == [("firing", midnight.isoformat())]
    db_session.commit()
    events = tenant.viewer.get(f"/api/v1/alerts/{rule['id']}/events").get_json()["items"]
    assert sorted((e["state"], e["bucket"], e["bucket_end"]) for e in events) == sorted(
        [
            ("firing", midnight.isoformat(), (midnight + timedelta(hours=1)).isoformat()),
            ("ok", (midnight + timedelta(hours=1)).isoformat(), (midnight + timedelta(hours=2)).isoformat()),
            ("firing", midnight.isoformat(), (midnight + timedelta(days=1)).isoformat()),
        ]
    )
