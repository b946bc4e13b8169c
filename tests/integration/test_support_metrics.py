"""The support metrics (backlog, solved, net_flow, reopens, next replies, waits, csat, one-touch),
time in status and the agents report, against an independent computation.

Tickets are generated with a fixed seed: status histories with pauses and reopens (a change exactly
at a local midnight among them), public and private replies by agents and customers, ratings given
and replaced. They are imported, then replies are back-filled and ratings replaced through the API.
This module keeps its own model of each ticket and computes every expected answer from it with plain
loops over the contract's definitions (API.md, "More metrics"): never from the SQL's output and never
from ticket_events. The range spans New York's autumn DST change and two local days with nothing.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from itertools import pairwise
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import pytest
from sqlalchemy import select, text

from webapp.analytics import queries, rollups
from webapp.analytics.buckets import make_buckets
from webapp.analytics.provenance import ReadOptions, reading
from webapp.models import Organization, TicketEvent
from webapp.tickets.imports import import_rows

NY = ZoneInfo("America/New_York")
SEED = 20261205
FIRST_DAY, LAST_DAY = date(2026, 10, 22), date(2026, 11, 9)  # [first, last) local days
EMPTY = (datetime(2026, 10, 28, tzinfo=NY), datetime(2026, 10, 30, tzinfo=NY))
DONE = ("resolved", "closed")
UNSOLVED = ("open", "pending", "on_hold")
PRIORITIES = ("low", "normal", "high", "urgent")
AGENTS = ("ana", "ben", "chen", None)
DURATIONS = ("next_reply_time", "requester_wait_time", "agent_wait_time", "on_hold_time")


def hours(a: datetime, b: datetime) -> float:
    return (b - a).total_seconds() / 3600


@dataclass
class Model:
    """What this module knows of one ticket: its own copy, never read back from the database."""

    created: datetime
    priority: str
    assigned_to: str | None
    history: list[tuple[datetime, str]]
    replies: list[tuple[str, datetime, bool]] = field(default_factory=list)
    ratings: list[tuple[int, datetime]] = field(default_factory=list)
    id: int = 0
    # Set by the first public agent reply while unset (a later back-fill before it does not move it).
    first_response: datetime | None = None

    def solves(self) -> list[datetime]:
        out = []
        for (_, before), (at, status) in pairwise(self.history):
            if before in UNSOLVED and status in DONE:
                out.append(at)
        return out

    def reopens(self) -> list[datetime]:
        return [
            at
            for (_, before), (at, status) in pairwise(self.history)
            if before in DONE and status in UNSOLVED
        ]

    def status_before(self, instant: datetime) -> str | None:
        """The status after every change strictly before `instant` (None: not created yet)."""
        status = None
        for at, entry in self.history:
            if at < instant:
                status = entry
        return status

    def hours_in(self, statuses: tuple[str, ...], until: datetime) -> float:
        total = 0.0
        for i, (at, status) in enumerate(self.history):
            end = self.history[i + 1][0] if i + 1 < len(self.history) else until
            end = min(end, until)
            if status in statuses and end > at:
                total += hours(at, end)
        return total

    def next_reply_pairs(self) -> list[tuple[datetime, datetime]]:
        pairs, agent_seen, waiting = [], False, None
        for author, at, public in sorted(self.replies, key=lambda r: r[1]):
            if not public:
                continue
            if author == "agent":
                if waiting is not None:
                    pairs.append((waiting, at))
                    waiting = None
                agent_seen = True
            elif agent_seen and waiting is None:
                waiting = at
        return pairs

    def agent_replies_by(self, instant: datetime) -> int:
        return sum(1 for author, at, public in self.replies if author == "agent" and public and at <= instant)

    def standing_rating(self) -> tuple[int, datetime] | None:
        best = None
        for rating, at in self.ratings:
            if best is None or at >= best[1]:
                best = (rating, at)
        return best

    def first_reply(self) -> datetime | None:
        agent = sorted(at for author, at, public in self.replies if author == "agent" and public)
        return agent[0] if agent else None


def _time(rng: random.Random, lo: datetime, hi: datetime) -> datetime:
    """A random instant in [lo, hi) outside the empty days, to the second."""
    while True:
        moment = lo + timedelta(seconds=rng.randrange(int((hi - lo).total_seconds())))
        if not EMPTY[0] <= moment < EMPTY[1]:
            return moment.astimezone(UTC)


def generate(rng: random.Random, count: int) -> list[Model]:
    lo = datetime.combine(FIRST_DAY, datetime.min.time(), NY) - timedelta(days=3)
    hi = datetime.combine(LAST_DAY, datetime.min.time(), NY)
    out = []
    for i in range(count):
        created = _time(rng, lo, hi - timedelta(days=1))
        history = [(created, "open")]
        at, status = created, "open"
        for _ in range(rng.randrange(0, 6)):
            at = at + timedelta(seconds=rng.randrange(600, 40 * 3600))
            if EMPTY[0] <= at < EMPTY[1]:
                at = (EMPTY[1] + timedelta(seconds=rng.randrange(60, 7200))).astimezone(UTC)
            if at >= hi:
                break
            if status in DONE:
                choices = ["open", "pending"] + (["closed"] if status == "resolved" else [])
            else:
                choices = [
                    s for s in ("open", "pending", "on_hold", "resolved", "resolved", "closed") if s != status
                ]
            status = rng.choice(choices)
            history.append((at.astimezone(UTC), status))
        if i % 40 == 0 and len(history) > 1:
            # A change exactly at a local midnight: the backlog at that bucket's end does not count it.
            midnight = datetime.combine(history[-1][0].astimezone(NY).date(), datetime.min.time(), NY)
            if midnight > history[-2][0]:
                history[-1] = (midnight.astimezone(UTC), history[-1][1])
        model = Model(created, rng.choice(PRIORITIES), rng.choice(AGENTS), history)
        end = min(history[-1][0] + timedelta(hours=30), hi)
        for _ in range(rng.randrange(0, 7)):
            author = rng.choice(("agent", "customer", "customer"))
            model.replies.append((author, _time(rng, created, end), rng.random() < 0.85))
        if rng.random() < 0.45:
            model.ratings.append((rng.randint(1, 5), _time(rng, created, end)))
        out.append(model)
    return out


def row_of(model: Model) -> dict[str, Any]:
    row: dict[str, Any] = {
        "created_at": model.created.isoformat(),
        "priority": model.priority,
        "assigned_to": model.assigned_to,
        "status_history": [{"status": s, "at": at.isoformat()} for at, s in model.history],
        "replies": [{"author": a, "at": at.isoformat(), "public": p} for a, at, p in model.replies],
    }
    if model.ratings:
        rating, at = model.ratings[0]
        row["satisfaction"] = {"rating": rating, "at": at.isoformat()}
    return row


@dataclass
class World:
    tenant: Any
    org: Organization
    models: list[Model]


@pytest.fixture
def world(make_tenant, db_session) -> World:
    tenant = make_tenant("Support", "America/New_York")
    org = db_session.get(Organization, tenant.org_id)
    rng = random.Random(SEED)
    models = generate(rng, 160)
    report, _, _ = import_rows(db_session, org, [row_of(m) for m in models])
    assert report.imported == len(models)
    ids = db_session.scalars(
        text("SELECT id FROM tickets WHERE org_id = :o ORDER BY id"), {"o": org.id}
    ).all()
    for model, ticket_id in zip(models, ids, strict=True):
        model.id = ticket_id
        model.first_response = model.first_reply()
    db_session.commit()
    # Back-fills through the API: replies landing among earlier ones, ratings replaced (a later one
    # stands, an older one given afterwards does not).
    for model in models[::7]:
        at = _time(rng, model.created, model.history[-1][0] + timedelta(hours=2))
        author = rng.choice(("agent", "customer"))
        answer = tenant.agent.post(
            f"/api/v1/tickets/{model.id}/replies", json={"author": author, "at": at.isoformat()}
        )
        assert answer.status_code == 201, answer.get_json()
        model.replies.append((author, at, True))
        # A public agent reply is the first response unless an earlier one is recorded.
        if author == "agent" and (model.first_response is None or at < model.first_response):
            model.first_response = at
    for model in models[::11]:
        at = _time(rng, model.created, model.history[-1][0] + timedelta(hours=2))
        rating = rng.randint(1, 5)
        answer = tenant.agent.put(
            f"/api/v1/tickets/{model.id}/satisfaction", json={"rating": rating, "at": at.isoformat()}
        )
        assert answer.status_code == 200, answer.get_json()
        model.ratings.append((rating, at))
    return World(tenant, org, models)


def day_bounds() -> list[datetime]:
    days = (LAST_DAY - FIRST_DAY).days
    return [
        datetime.combine(FIRST_DAY + timedelta(days=i), datetime.min.time(), NY).astimezone(UTC)
        for i in range(days + 1)
    ]


def expected_series(models: list[Model], metric: str, filt=lambda m: True) -> list[dict[str, Any]]:
    """Each daily bucket's value and count, from the model alone."""
    bounds = day_bounds()
    points = []
    for lo, hi in pairwise(bounds):
        chosen = [m for m in models if filt(m)]

        def inside(at: datetime, lo: datetime = lo, hi: datetime = hi) -> bool:
            return lo <= at < hi

        if metric == "backlog":
            n = sum(1 for m in chosen if (s := m.status_before(hi)) is not None and s not in DONE)
            points.append({"value": n, "count": n})
        elif metric == "solved":
            n = sum(1 for m in chosen for at in m.solves() if inside(at))
            points.append({"value": n, "count": n})
        elif metric == "reopens":
            n = sum(1 for m in chosen for at in m.reopens() if inside(at))
            points.append({"value": n, "count": n})
        elif metric == "net_flow":
            created = sum(1 for m in chosen if inside(m.created))
            solved = sum(1 for m in chosen for at in m.solves() if inside(at))
            points.append({"value": created - solved, "count": created + solved})
        elif metric in ("csat", "one_touch"):
            if metric == "csat":
                flags = [r[0] >= 4 for m in chosen if (r := m.standing_rating()) and inside(r[1])]
            else:
                flags = [m.agent_replies_by(at) <= 1 for m in chosen for at in m.solves() if inside(at)]
            value = 100 * sum(flags) / len(flags) if flags else None
            points.append({"value": value, "count": len(flags)})
        else:
            values = measurements(chosen, metric, lo, hi)
            points.append(
                {
                    "value": sum(values) / len(values) if values else None,
                    "count": len(values),
                    "min": min(values) if values else None,
                    "max": max(values) if values else None,
                }
            )
    return points


def measurements(models: list[Model], metric: str, lo: datetime, hi: datetime) -> list[float]:
    out = []
    for m in models:
        if metric == "next_reply_time":
            out += [hours(a, b) for a, b in m.next_reply_pairs() if lo <= b < hi]
            continue
        for at in m.solves():
            if not lo <= at < hi:
                continue
            if metric == "requester_wait_time":
                out.append(m.hours_in(("open", "on_hold"), at))
            elif metric == "agent_wait_time":
                out.append(m.hours_in(("pending",), at))
            elif metric == "on_hold_time":
                out.append(m.hours_in(("on_hold",), at))
    return out


SERIES_METRICS = ("backlog", "solved", "net_flow", "reopens", "csat", "one_touch", *DURATIONS)


def _series(tenant, metric: str, **extra: str) -> dict[str, Any]:
    query = {"granularity": "daily", "start": FIRST_DAY.isoformat(), "end": LAST_DAY.isoformat(), **extra}
    answer = tenant.viewer.get(f"/api/v1/analytics/time-series/{metric}", query_string=query)
    assert answer.status_code == 200, answer.get_json()
    return answer.get_json()


def _close(actual: Any, expected: Any) -> bool:
    if expected is None or actual is None or isinstance(expected, str):
        return actual == expected
    return actual == pytest.approx(expected, rel=1e-9, abs=1e-9)


def _check_points(got: dict[str, Any], expected: list[dict[str, Any]], metric: str) -> None:
    assert len(got["points"]) == len(expected)
    for point, want in zip(got["points"], expected, strict=True):
        assert point["count"] == want["count"], (metric, point, want)
        assert _close(point["value"], want["value"]), (metric, point, want)
        if "min" in want:
            assert _close(point["min"], want["min"]), (metric, point, want)
            assert _close(point["max"], want["max"]), (metric, point, want)
        else:
            assert point["min"] is None
            assert point["max"] is None


@pytest.mark.parametrize("metric", SERIES_METRICS)
def test_time_series_match_the_model(world, metric):
    got = _series(world.tenant, metric)
    expected = expected_series(world.models, metric)
    _check_points(got, expected, metric)
    # The empty local days: nothing solved, rated or replied, the backlog carried over.
    empty = [i for i, b in enumerate(day_bounds()[:-1]) if EMPTY[0] <= b < EMPTY[1]]
    assert len(empty) == 2
    for i in empty:
        if metric in ("csat", "one_touch", *DURATIONS):
            assert got["points"][i]["value"] is None
            assert got["points"][i]["count"] == 0
    values = [p["value"] for p in expected]
    if metric == "backlog":
        assert got["summary"]["total_count"] == values[-1]
        assert got["summary"]["max"] == max(values)
        assert got["summary"]["min"] == min(values)
        assert got["summary"]["avg"] == pytest.approx(sum(values) / len(values))
        assert values[empty[0]] == values[empty[1]] == expected[empty[0] - 1]["value"]
    if metric in ("solved", "reopens"):
        assert got["summary"]["total_count"] == sum(values)


def test_filters_and_groups_match_the_model(world):
    got = _series(world.tenant, "backlog", priority="high,urgent")
    _check_points(
        got, expected_series(world.models, "backlog", lambda m: m.priority in ("high", "urgent")), "b"
    )
    got = _series(world.tenant, "one_touch", assigned_to="ana")
    _check_points(got, expected_series(world.models, "one_touch", lambda m: m.assigned_to == "ana"), "o")

    body = {
        "metrics": ["backlog", "solved", "next_reply_time", "csat"],
        "group_by": ["priority"],
        "start": FIRST_DAY.isoformat(),
        "end": LAST_DAY.isoformat(),
        "percentiles": [50, 90],
    }
    answer = world.tenant.viewer.post("/api/v1/analytics/aggregations", json=body)
    assert answer.status_code == 200, answer.get_json()
    rows = {row["group"]["priority"]: row for row in answer.get_json()["rows"]}
    lo, hi = day_bounds()[0], day_bounds()[-1]
    for priority in PRIORITIES:
        chosen = [m for m in world.models if m.priority == priority]
        row = rows[priority]
        backlog = sum(1 for m in chosen if (s := m.status_before(hi)) is not None and s not in DONE)
        assert row["backlog"]["count"] == backlog
        assert row["solved"]["count"] == sum(1 for m in chosen for at in m.solves() if lo <= at < hi)
        values = measurements(chosen, "next_reply_time", lo, hi)
        stats = row["next_reply_time"]
        assert stats["count"] == len(values)
        if values:
            assert stats["p50"] == pytest.approx(float(np.percentile(values, 50)))
            assert stats["p90"] == pytest.approx(float(np.percentile(values, 90)))
        flags = [r[0] >= 4 for m in chosen if (r := m.standing_rating()) and lo <= r[1] < hi]
        assert row["csat"]["count"] == len(flags)
        if flags:
            assert row["csat"]["avg"] == pytest.approx(100 * sum(flags) / len(flags))


def _raw_and_rolled(db_session, org_id: int, metric: str) -> tuple[Any, Any]:
    buckets = make_buckets("daily", day_bounds()[0], day_bounds()[-1], NY)
    window = {
        "org_id": org_id,
        "metric": metric,
        "buckets": buckets,
        "start": day_bounds()[0],
        "end": day_bounds()[-1],
        "filters": {},
    }
    with reading(ReadOptions(rollups=False)):
        raw = queries.time_series(db_session, **window)
    with reading(ReadOptions()) as provenance:
        rolled = queries.time_series(db_session, **window)
    return raw, (rolled, provenance)


def test_rollups_equal_raw_events_after_changes(world, db_session):
    org_id = world.org.id
    rollups.refresh(db_session, org_id=org_id)
    db_session.commit()
    rng = random.Random(7)
    for round_ in range(2):
        for metric in SERIES_METRICS:
            raw, (rolled, provenance) = _raw_and_rolled(db_session, org_id, metric)
            assert provenance.rollup, metric
            for a, b in zip(raw["points"], rolled["points"], strict=True):
                assert a["count"] == b["count"], (metric, a, b)
                assert _close(b["value"], a["value"]), (metric, a, b)
        if round_:
            break
        # Random changes: back-filled replies, status changes now, ratings; then the marks rebuilt.
        for model in rng.sample(world.models, 20):
            at = _time(rng, model.created, model.history[-1][0] + timedelta(hours=1))
            world.tenant.agent.post(
                f"/api/v1/tickets/{model.id}/replies",
                json={"author": rng.choice(("agent", "customer")), "at": at.isoformat()},
            )
            world.tenant.agent.patch(
                f"/api/v1/tickets/{model.id}",
                json={
                    "status": rng.choice(("open", "resolved", "pending")),
                    "priority": rng.choice(PRIORITIES),
                },
            )
        rollups.refresh(db_session, org_id=org_id)
        db_session.commit()


def test_derived_events_follow_a_backfilled_reply(world, db_session):
    """A reply back-filled before a solve turns it from one-touch into not, in the solve's hour."""
    model = next(m for m in world.models if m.solves() and m.agent_replies_by(m.solves()[0]) == 1)
    solve = model.solves()[0]
    at = max(model.created, solve - timedelta(minutes=1))
    answer = world.tenant.agent.post(
        f"/api/v1/tickets/{model.id}/replies", json={"author": "agent", "at": at.isoformat()}
    )
    assert answer.status_code == 201
    solved = db_session.scalars(
        select(TicketEvent)
        .where(TicketEvent.ticket_id == model.id, TicketEvent.event_type == "solved")
        .order_by(TicketEvent.occurred_at)
    ).all()
    assert solved[0].occurred_at == solve
    assert solved[0].value == 0.0


def test_time_in_status_matches_the_model(world):
    query = {"start": FIRST_DAY.isoformat(), "end": LAST_DAY.isoformat()}
    answer = world.tenant.viewer.get("/api/v1/analytics/time-in-status", query_string=query)
    assert answer.status_code == 200, answer.get_json()
    body = answer.get_json()
    assert body["clock"] == "calendar"
    lo, hi = day_bounds()[0], day_bounds()[-1]
    got = {row["status"]: row for row in body["statuses"]}
    assert set(got) == set(UNSOLVED)
    for status in UNSOLVED:
        spent = []
        for m in world.models:
            solves = m.solves()
            if solves and lo <= solves[-1] < hi and (h := m.hours_in((status,), solves[-1])) > 0:
                spent.append(h)
        row = got[status]
        assert row["tickets"] == len(spent)
        assert row["total_hours"] == pytest.approx(sum(spent))
        assert row["avg_hours"] == pytest.approx(sum(spent) / len(spent))
        assert row["p50"] == pytest.approx(float(np.percentile(spent, 50)))
        assert row["p90"] == pytest.approx(float(np.percentile(spent, 90)))


TARGETS = {"urgent": (1, 4), "high": (4, 24), "normal": (8, 48), "low": (24, 120)}


def _sla_verdicts(
    m: Model, targets: tuple[float | None, float | None], pauses: tuple[str, ...], now: datetime
) -> list[str]:
    """The ticket's first-reply and resolution verdicts at `now` on the calendar, from the contract:
    first reply from creation to the first response (or an earlier public agent reply), breached
    once it runs over the target, pending while unanswered within it; resolution over the time spent
    in unsolved statuses that are not paused, achieved when solved within the target."""
    out = []
    first, resolution = targets
    answers = [at for at in (m.first_response, m.first_reply()) if at is not None]
    if first is not None:
        waited = hours(m.created, min(answers) if answers else now)
        out.append("breached" if waited > first else "achieved" if answers else "pending")
    if resolution is not None:
        running = tuple(s for s in UNSOLVED if s not in pauses)
        elapsed = m.hours_in(running, now)
        solved = m.history[-1][1] in DONE
        out.append("breached" if elapsed > resolution else "achieved" if solved else "pending")
    return out


def _compliance(verdicts: list[str]) -> float | None:
    judged = [v for v in verdicts if v != "pending"]
    return 100 * judged.count("achieved") / len(judged) if judged else None


def test_agents_report_matches_the_model(world):
    query = {"start": FIRST_DAY.isoformat(), "end": LAST_DAY.isoformat(), "min_tickets": 3}
    answer = world.tenant.viewer.get("/api/v1/analytics/agents", query_string=query)
    assert answer.status_code == 200, answer.get_json()
    now = datetime.now(UTC)
    _agents_equal_the_model(world, answer.get_json()["agents"], TARGETS, (), now)
    # Under a policy of its own (other targets, pauses): its verdicts, not the first contract's.
    targets = {"urgent": (2, 3), "high": (1, 30), "normal": (0.5, None), "low": (None, 10)}
    policy = {
        "schedule_id": None,
        "pause_statuses": ["pending", "on_hold"],
        "targets": {
            p: {"first_reply_hours": f, "next_reply_hours": None, "resolution_hours": r}
            for p, (f, r) in targets.items()
        },
    }
    put = world.tenant.admin.put("/api/v1/sla-policy", json=policy)
    assert put.status_code == 200, put.get_json()
    answer = world.tenant.viewer.get("/api/v1/analytics/agents", query_string=query)
    assert answer.status_code == 200, answer.get_json()
    _agents_equal_the_model(world, answer.get_json()["agents"], targets, ("pending", "on_hold"), now)


def _agents_equal_the_model(
    world: World,
    got: list[dict[str, Any]],
    targets: dict[str, tuple[float | None, float | None]],
    pauses: tuple[str, ...],
    now: datetime,
) -> None:
    lo, hi = day_bounds()[0], day_bounds()[-1]
    expected = []
    for agent in AGENTS[:-1]:
        mine = [m for m in world.models if m.assigned_to == agent]
        solved = [
            (m, max(at for at in m.solves() if lo <= at < hi))
            for m in mine
            if any(lo <= at < hi for at in m.solves())
        ]
        if len(solved) < 3:
            continue
        firsts = [hours(m.created, m.first_response) for m, _ in solved if m.first_response is not None]
        verdicts = [v for m, _ in solved for v in _sla_verdicts(m, targets[m.priority], pauses, now)]
        ratings = [r for m in mine if (r := m.standing_rating()) and lo <= r[1] < hi]
        touch = [m.agent_replies_by(at) <= 1 for m, at in solved]
        expected.append(
            {
                "agent": agent,
                "solved": len(solved),
                "first_reply_p50": float(np.percentile(firsts, 50)) if firsts else None,
                "resolution_p50": float(np.percentile([hours(m.created, at) for m, at in solved], 50)),
                "sla_compliance_pct": _compliance(verdicts),
                "csat_pct": 100 * sum(r[0] >= 4 for r in ratings) / len(ratings) if ratings else None,
                "one_touch_pct": 100 * sum(touch) / len(solved),
                "reopen_rate": 100 * sum(1 for m, _ in solved if m.reopens()) / len(solved),
            }
        )
    expected.sort(key=lambda row: (-row["solved"], row["agent"]))
    assert [row["agent"] for row in got] == [row["agent"] for row in expected]
    for row, want in zip(got, expected, strict=True):
        for name, value in want.items():
            assert _close(row[name], value), (name, row, want)


def test_support_reads_refuse_bad_clocks(world):
    viewer = world.tenant.viewer
    for path in ("/api/v1/analytics/time-in-status", "/api/v1/analytics/agents"):
        assert viewer.get(path, query_string={"clock": "business"}).status_code == 400
        assert viewer.get(path, query_string={"clock": "sundial"}).status_code == 400
        assert viewer.get(path, query_string={"schedule_id": 1}).status_code == 400
        assert viewer.get(path, query_string={"clock": "business", "schedule_id": 999999}).status_code == 404
    assert viewer.get("/api/v1/analytics/agents", query_string={"min_tickets": 0}).status_code == 400


def test_live_subscription_values_match_the_model(world, db_session):
    from webapp.live.subscriptions import current_values

    now = day_bounds()[-1] - timedelta(days=3)
    start = now - timedelta(hours=24)
    got = current_values(
        db_session,
        org_id=world.org.id,
        metrics=["backlog", "solved", "csat", "requester_wait_time", "net_flow"],
        filters={},
        now=now,
    )["metrics"]
    models = world.models
    backlog = sum(1 for m in models if (s := m.status_before(now)) is not None and s not in DONE)
    assert got["backlog"]["value"] == backlog
    solved = sum(1 for m in models for at in m.solves() if start <= at < now)
    assert got["solved"]["value"] == solved
    created = sum(1 for m in models if start <= m.created < now)
    assert (got["net_flow"]["value"], got["net_flow"]["count"]) == (created - solved, created + solved)
    flags = [r[0] >= 4 for m in models if (r := m.standing_rating()) and start <= r[1] < now]
    assert got["csat"]["count"] == len(flags)
    if flags:
        assert got["csat"]["value"] == pytest.approx(100 * sum(flags) / len(flags))
    waits = measurements(models, "requester_wait_time", start, now)
    assert got["requester_wait_time"]["count"] == len(waits)
    if waits:
        assert got["requester_wait_time"]["value"] == pytest.approx(sum(waits) / len(waits))


def test_a_business_clock_open_around_the_clock_counts_calendar_hours(world):
    days = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
    always = [{"day": d, "start": "00:00", "end": "24:00"} for d in days]
    created = world.tenant.admin.post(
        "/api/v1/schedules", json={"name": "always", "timezone": "UTC", "intervals": always}
    )
    assert created.status_code == 201, created.get_json()
    query = {"start": FIRST_DAY.isoformat(), "end": LAST_DAY.isoformat()}
    for path in ("/api/v1/analytics/time-in-status", "/api/v1/analytics/agents"):
        calendar = world.tenant.viewer.get(path, query_string=query).get_json()
        business = world.tenant.viewer.get(path, query_string={**query, "clock": "business"}).get_json()
        assert business.get("clock") == "business", business
        assert business["schedule_id"] == created.get_json()["id"]
        key = "statuses" if "statuses" in calendar else "agents"
        assert len(business[key]) == len(calendar[key])
        for a, b in zip(calendar[key], business[key], strict=True):
            for name, value in a.items():
                same = (
                    _close(b[name], value)
                    if not isinstance(value, float)
                    else b[name] == pytest.approx(value)
                )
                assert same, (path, name, a, b)
