"""Schedules API: validation with clear 400s, the one default, versions, stored spans equal to Python's."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest
import redis
from sqlalchemy import text

from webapp.analytics.generations import gen_key
from webapp.clocks.business_time import Interval, WeeklySchedule, build, to_us

OFFICE = [{"day": d, "start": "08:00", "end": "17:00"} for d in ("mon", "tue", "wed", "thu", "fri")]
BODY = {"name": "Office", "timezone": "Europe/Berlin", "intervals": OFFICE}


def _create(api, **changes):
    return api.post("/api/v1/schedules", json={**BODY, **changes})


def test_the_first_schedule_is_the_default_and_default_moves(tenant):
    first = _create(tenant.admin, name="First")
    assert first.status_code == 201, first.get_json()
    assert first.headers["Location"].endswith(f"/api/v1/schedules/{first.get_json()['id']}")
    second = _create(tenant.admin, name="Second").get_json()
    assert (first.get_json()["default"], second["default"]) == (True, False)
    third = _create(tenant.admin, name="Third", default=True).get_json()
    listed = tenant.viewer.get("/api/v1/schedules").get_json()["items"]
    assert [(s["name"], s["default"]) for s in listed] == [
        ("First", False),
        ("Second", False),
        ("Third", True),
    ]
    moved = tenant.admin.patch(f"/api/v1/schedules/{second['id']}", json={"default": True})
    assert moved.status_code == 200
    assert moved.get_json()["version"] == 1  # the default moved, business time did not
    defaults = [s["id"] for s in tenant.viewer.get("/api/v1/schedules").get_json()["items"] if s["default"]]
    assert defaults == [second["id"]]
    unset = tenant.admin.patch(f"/api/v1/schedules/{second['id']}", json={"default": False})
    assert unset.status_code == 409
    assert "another schedule the default" in unset.get_json()["error"]["message"]
    assert tenant.viewer.get(f"/api/v1/schedules/{third['id']}").get_json()["default"] is False


def test_definitions_are_normalised(tenant):
    created = _create(
        tenant.admin,
        timezone="europe/berlin",
        intervals=[
            {"day": "tue", "start": "13:00", "end": "17:00"},
            {"day": "mon", "start": "22:00", "end": "24:00"},
            {"day": "tue", "start": "00:00", "end": "06:00"},
            {"day": "tue", "start": "08:00", "end": "12:00"},
        ],
        holidays=[{"date": "2026-12-26"}, {"date": "2026-12-25", "name": "Christmas"}],
    ).get_json()
    assert created["timezone"] == "Europe/Berlin"
    assert created["intervals"] == [
        {"day": "mon", "start": "22:00", "end": "24:00"},
        {"day": "tue", "start": "00:00", "end": "06:00"},
        {"day": "tue", "start": "08:00", "end": "12:00"},
        {"day": "tue", "start": "13:00", "end": "17:00"},
    ]
    assert created["holidays"] == [
        {"date": "2026-12-25", "name": "Christmas"},
        {"date": "2026-12-26", "name": ""},
    ]
    assert created["version"] == 1


def _interval(day="mon", start="08:00", end="17:00"):
    return {"day": day, "start": start, "end": end}


BAD = [
    ("overlap", {"intervals": [_interval(end="12:00"), _interval(start="11:00")]}, "intervals.1", "overlap"),
    (
        "end before start",
        {"intervals": [_interval(start="17:00", end="08:00")]},
        "intervals.0.end",
        "not after",
    ),
    (
        "end equals start",
        {"intervals": [_interval(start="08:00", end="08:00")]},
        "intervals.0.end",
        "not after",
    ),
    ("24:00 as start", {"intervals": [_interval(start="24:00", end="24:00")]}, "intervals.0.start", "24:00"),
    ("hour 25", {"intervals": [_interval(end="25:00")]}, "intervals.0.end", "time of day"),
    ("minute 60", {"intervals": [_interval(start="07:60")]}, "intervals.0.start", "time of day"),
    ("one-digit hour", {"intervals": [_interval(start="8:00")]}, "intervals.0.start", "pattern"),
    ("unknown day", {"intervals": [_interval(day="monday")]}, "intervals.0.day", "'mon'"),
    ("unknown zone", {"timezone": "Mars/Olympus"}, "timezone", "unknown time zone"),
    ("host zone", {"timezone": "localtime"}, "timezone", "unknown time zone"),
    ("posix zone", {"timezone": "posix/Europe/Berlin"}, "timezone", "unknown time zone"),
    ("no interval", {"intervals": []}, "intervals", "at least 1"),
    (
        "too many intervals",
        {"intervals": [_interval(start=f"{h:02d}:00", end=f"{h:02d}:30") for h in range(24)] * 3},
        "intervals",
        "at most 50",
    ),
    (
        "duplicate holiday",
        {"holidays": [{"date": "2026-12-25"}, {"date": "2026-12-25", "name": "again"}]},
        "holidays.1.date",
        "twice",
    ),
    ("impossible date", {"holidays": [{"date": "2026-02-30"}]}, "holidays.0.date", "not a date"),
    ("date out of range", {"holidays": [{"date": "2200-01-01"}]}, "holidays.0.date", "1900 to 2199"),
    ("too many holidays", {"holidays": [{"date": "2026-01-01"}] * 1001}, "holidays", "at most 1000"),
    ("long name", {"name": "x" * 201}, "name", "at most 200"),
    ("empty name", {"name": ""}, "name", "at least 1"),
    ("unknown field", {"colour": "blue"}, "colour", "Extra inputs"),
    ("default as text", {"default": "yes"}, "default", "boolean"),
]


@pytest.mark.parametrize(("case", "changes", "field", "words"), BAD, ids=[c[0] for c in BAD])
def test_bad_definitions_are_400_naming_the_field(tenant, case, changes, field, words):
    response = _create(tenant.admin, **changes)
    assert response.status_code == 400, (case, response.get_json())
    error = response.get_json()["error"]
    assert error["code"] == "bad_request"
    fields = [error["details"].get("field")] + [e["field"] for e in error["details"].get("errors", [])]
    assert any(f is not None and f.startswith(field) for f in fields), (case, error)
    assert words in error["message"], (case, error["message"])
    assert tenant.viewer.get("/api/v1/schedules").get_json()["items"] == []


def test_patch_validates_and_refuses_nulls(tenant):
    schedule = _create(tenant.admin).get_json()
    url = f"/api/v1/schedules/{schedule['id']}"
    assert tenant.admin.patch(url, json={}).status_code == 400
    null = tenant.admin.patch(url, json={"name": None})
    assert null.status_code == 400
    assert null.get_json()["error"]["details"]["field"] == "name"
    overlap = tenant.admin.patch(url, json={"intervals": [_interval(end="12:00"), _interval(start="09:00")]})
    assert overlap.status_code == 400
    assert tenant.viewer.get(url).get_json()["version"] == 1


def test_only_admins_write_and_every_role_reads(tenant):
    schedule = _create(tenant.admin).get_json()
    url = f"/api/v1/schedules/{schedule['id']}"
    for role in ("viewer", "agent"):
        api = tenant.apis[role]
        assert _create(api).status_code == 403
        assert api.patch(url, json={"name": "x"}).status_code == 403
        assert api.delete(url).status_code == 403
        assert api.get(url).status_code == 200
        assert api.get("/api/v1/schedules").status_code == 200


def test_another_organizations_schedule_is_404(make_tenant):
    owner = make_tenant("Owner")
    other = make_tenant("Other")
    schedule = _create(owner.admin).get_json()
    url = f"/api/v1/schedules/{schedule['id']}"
    assert other.admin.get(url).status_code == 404
    assert other.admin.patch(url, json={"name": "mine"}).status_code == 404
    assert other.admin.delete(url).status_code == 404
    assert other.admin.get("/api/v1/schedules").get_json()["items"] == []
    assert owner.viewer.get(url).get_json()["name"] == "Office"
    assert other.admin.get("/api/v1/schedules/99999999999999999999").status_code == 404


def test_deleting_the_default_or_the_policys_schedule_is_409(tenant):
    first = _create(tenant.admin, name="First").get_json()
    second = _create(tenant.admin, name="Second").get_json()
    refused = tenant.admin.delete(f"/api/v1/schedules/{first['id']}")
    assert refused.status_code == 409
    assert "default" in refused.get_json()["error"]["message"]
    targets = {p: {"first_reply_hours": 1} for p in ("urgent", "high", "normal", "low")}
    put = tenant.admin.put("/api/v1/sla-policy", json={"schedule_id": second["id"], "targets": targets})
    assert put.status_code == 200, put.get_json()
    used = tenant.admin.delete(f"/api/v1/schedules/{second['id']}")
    assert used.status_code == 409
    assert "SLA policy" in used.get_json()["error"]["message"]
    tenant.admin.put("/api/v1/sla-policy", json={"schedule_id": None, "targets": targets})
    deleted = tenant.admin.delete(f"/api/v1/schedules/{second['id']}")
    assert deleted.status_code == 204
    assert "Content-Type" not in deleted.headers  # no body, so no type (not text/html)
    # The only schedule left may go, default or not: the organization then has none.
    assert tenant.admin.delete(f"/api/v1/schedules/{first['id']}").status_code == 204
    assert tenant.viewer.get("/api/v1/schedules").get_json()["items"] == []
    assert tenant.viewer.get(f"/api/v1/schedules/{first['id']}").status_code == 404


def test_an_organization_holds_at_most_twenty_schedules(tenant):
    # One interval a week: the smallest spans to write.
    weekly = [_interval(day="wed")]
    for index in range(20):
        assert _create(tenant.admin, name=f"S{index}", intervals=weekly).status_code == 201
    refused = _create(tenant.admin, name="S20", intervals=weekly)
    assert refused.status_code == 409
    assert "at most 20" in refused.get_json()["error"]["message"]


def test_every_change_of_business_time_bumps_the_schedules_cache_generation(tenant, services, db_session):
    client = redis.Redis.from_url(services.redis_url)
    key = gen_key(tenant.org_id, "schedules")
    before = int(client.get(key) or 0)
    schedule = _create(tenant.admin).get_json()
    url = f"/api/v1/schedules/{schedule['id']}"
    db_session.execute(
        text("INSERT INTO analytics_business_rollups (schedule_id, org_id, version) VALUES (:s, :o, 1)"),
        {"s": schedule["id"], "o": tenant.org_id},
    )
    db_session.commit()
    # A new name: no answer on the schedule changes, its rollups stay current.
    renamed = tenant.admin.patch(url, json={"name": "Renamed"})
    assert (renamed.status_code, renamed.get_json()["version"]) == (200, 1)
    assert int(client.get(key)) == before + 1
    stale = text(
        "SELECT count(*) FROM schedules s JOIN analytics_business_rollups b"
        " ON b.schedule_id = s.id AND b.version = s.version WHERE s.id = :s"
    )
    assert db_session.execute(stale, {"s": schedule["id"]}).scalar() == 1
    db_session.commit()
    # New hours: answers and rollups move on.
    moved = tenant.admin.patch(url, json={"holidays": [{"date": "2026-12-25", "name": "Christmas"}]})
    assert (moved.status_code, moved.get_json()["version"]) == (200, 2)
    assert int(client.get(key)) == before + 2
    assert db_session.execute(stale, {"s": schedule["id"]}).scalar() == 0
    db_session.commit()
    tenant.admin.delete(url)
    assert int(client.get(key)) == before + 3


def _sql_open_seconds(db_session, schedule_id, instants):
    return [
        float(
            db_session.execute(
                text("SELECT business_open_seconds(:s, :t)"), {"s": schedule_id, "t": t}
            ).scalar()
        )
        for t in instants
    ]


def test_stored_spans_give_the_sql_business_time_of_python(tenant, db_session):
    intervals = [
        *OFFICE,
        {"day": "fri", "start": "22:00", "end": "24:00"},
        {"day": "sat", "start": "00:00", "end": "06:00"},
        {"day": "sun", "start": "01:30", "end": "03:30"},
    ]
    holidays = [{"date": "2026-03-29", "name": "change day"}, {"date": "2026-12-25", "name": "Christmas"}]
    schedule = _create(tenant.admin, intervals=intervals, holidays=holidays).get_json()
    days = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
    python = build(
        WeeklySchedule(
            "Europe/Berlin",
            tuple(
                Interval(
                    days.index(i["day"]),
                    *(int(i[k][:2]) * 3600 + int(i[k][3:]) * 60 for k in ("start", "end")),
                )
                for i in intervals
            ),
            frozenset(datetime.fromisoformat(h["date"]).date() for h in holidays),
        )
    )
    rng = random.Random(6)
    instants = [
        datetime(1900, 1, 1, tzinfo=UTC)
        + timedelta(seconds=rng.randint(0, 300 * 365 * 86400), microseconds=rng.randint(0, 999_999))
        for _ in range(150)
    ] + [datetime(2026, 3, 27, 21, tzinfo=UTC) + timedelta(minutes=17 * k) for k in range(40)]
    expected = [int(python.open_before(to_us(t))) / 1e6 for t in instants]
    assert _sql_open_seconds(db_session, schedule["id"], instants) == expected
    # A change rewrites the spans: one interval a week now.
    tenant.admin.patch(
        f"/api/v1/schedules/{schedule['id']}", json={"intervals": [_interval(day="wed")], "holidays": []}
    )
    wednesdays = build(WeeklySchedule("Europe/Berlin", (Interval(2, 8 * 3600, 17 * 3600),)))
    expected = [int(wednesdays.open_before(to_us(t))) / 1e6 for t in instants]
    assert _sql_open_seconds(db_session, schedule["id"], instants) == expected


def test_a_report_saved_as_its_schedule_is_deleted_keeps_the_schedule(make_live_tenant, base_app):
    """A report being saved on a schedule holds the schedule's row until it commits; a deletion that
    comes meanwhile waits, then finds the report and answers 409 (it used to delete the schedule
    from under the report)."""
    import threading

    from sqlalchemy.orm import Session

    from webapp.clocks import schedules as clocks
    from webapp.core.timeutil import utcnow
    from webapp.models import Webhook
    from webapp.reports import schedules as reports

    tenant = make_live_tenant("Race", "UTC")
    made = _create(tenant.admin).get_json()
    # Sessions on connections of their own (the app fixture's sessions share one).
    engine = base_app.extensions["db_engine"]
    saving, deleting = Session(bind=engine), Session(bind=engine)
    try:
        hook = Webhook(
            org_id=tenant.org_id, url="https://hooks.example.com/in", secret="whsec_x", enabled=True
        )
        hook.consecutive_failures = 0
        saving.add(hook)
        saving.flush()
        fields = {"name": "r", "cron": "0 7 * * *", "timezone": "UTC", "export": {}, "webhook_id": hook.id}
        reports.create_schedule(
            saving,
            tenant.org_id,
            fields,
            export_params={"query": {"clock": "business", "schedule_id": made["id"]}},
            created_by=None,
            now=utcnow(),
        )
        outcome: list[BaseException | None] = []

        def delete() -> None:
            try:
                clocks.delete_schedule(
                    deleting, tenant.org_id, clocks.get_schedule(deleting, tenant.org_id, made["id"])
                )
                deleting.commit()
                outcome.append(None)
            except BaseException as exc:
                deleting.rollback()
                outcome.append(exc)

        thread = threading.Thread(target=delete)
        thread.start()
        thread.join(1.0)
        assert thread.is_alive(), ("the deletion did not wait for the report being saved", outcome)
        saving.commit()
        thread.join(10)
        assert len(outcome) == 1
        assert isinstance(outcome[0], clocks.ClockError), outcome
        assert outcome[0].status == 409
    finally:
        saving.close()
        deleting.close()
    assert tenant.viewer.get(f"/api/v1/schedules/{made['id']}").status_code == 200
