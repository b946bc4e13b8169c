"""Per-ticket SLA evaluation: named cases by hand, and random histories against the minute walk."""

from __future__ import annotations

import random
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from tests.unit.test_business_time import HOLIDAYS, SHIFTS, Reference
from webapp.clocks.business_time import Interval, WeeklySchedule, build
from webapp.clocks.evaluation import Reply, TicketFacts, evaluate, next_reply_pairs
from webapp.clocks.policy import BusinessClock, CalendarClock, Policy

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
H = timedelta(hours=1)


def _policy(first=None, next_=None, resolution=None, pauses=(), schedule_id=None) -> Policy:
    targets = {"first_reply_hours": first, "next_reply_hours": next_, "resolution_hours": resolution}
    return Policy(
        schedule_id=schedule_id,
        pause_statuses=tuple(pauses),
        targets={p: dict(targets) for p in ("urgent", "high", "normal", "low")},
    )


def _facts(statuses, first_response=None, replies=()) -> TicketFacts:
    return TicketFacts(T0, "normal", first_response, tuple(statuses), tuple(replies))


def _by_metric(evaluation):
    return {o.metric: o for o in evaluation.outcomes}


# --- next_reply pairs ------------------------------------------------------------------------


def _r(author, minutes, public=True):
    return Reply(author, T0 + timedelta(minutes=minutes), public)


def test_pairs_start_at_a_customer_reply_after_an_agent_reply():
    replies = [
        _r("customer", 0),  # before any agent reply: no clock
        _r("agent", 10),
        _r("customer", 20),  # starts a clock
        _r("customer", 25),  # a clock already runs: no other
        _r("agent", 40),  # stops it
        _r("agent", 45),  # nothing to stop
        _r("customer", 50),  # starts the next, still running
    ]
    assert next_reply_pairs(replies) == [
        (T0 + 20 * timedelta(minutes=1), T0 + 40 * timedelta(minutes=1)),
        (T0 + timedelta(minutes=50), None),
    ]


def test_private_replies_start_and_stop_nothing_and_order_is_by_time():
    replies = [
        _r("customer", 30),
        _r("agent", 35, public=False),  # private: does not stop
        _r("agent", 10),
        _r("customer", 20, public=False),  # private: does not start
        _r("agent", 60),
    ]
    assert next_reply_pairs(replies) == [(T0 + timedelta(minutes=30), T0 + timedelta(minutes=60))]
    assert next_reply_pairs([]) == []
    assert next_reply_pairs([_r("agent", 5, public=False), _r("customer", 6)]) == []


# --- calendar clock --------------------------------------------------------------------------


def test_first_reply_states_on_the_calendar_clock():
    policy = _policy(first=2.0)
    clock = CalendarClock()
    opened = [(T0, "open")]
    in_time = _by_metric(evaluate(_facts(opened, T0 + 2 * H), policy, clock, T0 + 5 * H))["first_reply"]
    assert (in_time.state, in_time.elapsed_hours, in_time.breach_at) == ("achieved", 2.0, None)
    late = _by_metric(evaluate(_facts(opened, T0 + 3 * H), policy, clock, T0 + 5 * H))["first_reply"]
    assert (late.state, late.elapsed_hours) == ("breached", 3.0)
    waiting = _by_metric(evaluate(_facts(opened), policy, clock, T0 + H / 2))["first_reply"]
    assert (waiting.state, waiting.elapsed_hours, waiting.breach_at) == ("active", 0.5, T0 + 2 * H)
    overdue = evaluate(_facts(opened), policy, clock, T0 + 7 * H)
    assert _by_metric(overdue)["first_reply"].state == "breached"
    assert [(r.metric, r.passed_at) for r in overdue.breached_runs] == [("first_reply", T0 + 2 * H)]


def test_resolution_pauses_and_a_reopen_continues_the_clock():
    history = [
        (T0, "open"),
        (T0 + 2 * H, "pending"),
        (T0 + 5 * H, "open"),
        (T0 + 6 * H, "resolved"),
        (T0 + 10 * H, "open"),
    ]
    now = T0 + 11 * H
    paused = _by_metric(
        evaluate(_facts(history), _policy(resolution=8.0, pauses=["pending"]), CalendarClock(), now)
    )
    # open 2 h, pending paused, open 1 h, solved, reopened 1 h: 4 h of 8.
    assert paused["resolution"].state == "active"
    assert paused["resolution"].elapsed_hours == 4.0
    assert paused["resolution"].breach_at == now + 4 * H
    unpaused = _by_metric(evaluate(_facts(history), _policy(resolution=8.0), CalendarClock(), now))
    assert unpaused["resolution"].elapsed_hours == 7.0
    assert unpaused["resolution"].breach_at == now + H
    # Without a first reply target, no first_reply entry at all.
    assert set(paused) == {"resolution"}


def test_a_paused_ticket_is_paused_until_its_target_has_passed():
    history = [(T0, "open"), (T0 + 3 * H, "on_hold")]
    policy = _policy(resolution=4.0, pauses=["on_hold", "pending"])
    held = _by_metric(evaluate(_facts(history), policy, CalendarClock(), T0 + 30 * H))["resolution"]
    assert (held.state, held.elapsed_hours, held.breach_at) == ("paused", 3.0, None)
    late = [(T0, "open"), (T0 + 5 * H, "on_hold")]
    evaluation = evaluate(_facts(late), policy, CalendarClock(), T0 + 30 * H)
    assert _by_metric(evaluation)["resolution"].state == "breached"
    assert evaluation.breached_runs[0].passed_at == T0 + 4 * H


def test_a_breach_stays_even_when_the_ticket_is_solved_later():
    history = [(T0, "open"), (T0 + 6 * H, "resolved")]
    evaluation = evaluate(_facts(history), _policy(resolution=4.0), CalendarClock(), T0 + 8 * H)
    outcome = _by_metric(evaluation)["resolution"]
    assert (outcome.state, outcome.elapsed_hours, outcome.breach_at) == ("breached", 6.0, None)
    assert evaluation.running_runs == []
    exactly = evaluate(
        _facts([(T0, "open"), (T0 + 4 * H, "resolved")]), _policy(resolution=4.0), CalendarClock(), T0 + 8 * H
    )
    assert _by_metric(exactly)["resolution"].state == "achieved"


def test_next_reply_holds_for_every_pair():
    replies = [_r("agent", 0), _r("customer", 60), _r("agent", 90), _r("customer", 120), _r("agent", 300)]
    policy = _policy(next_=1.0)
    evaluation = evaluate(_facts([(T0, "open")], replies=replies), policy, CalendarClock(), T0 + 10 * H)
    outcome = _by_metric(evaluation)["next_reply"]
    # 30 minutes, then 3 hours: the second pair breached at 03:00 after its customer reply.
    assert (outcome.state, outcome.pairs, outcome.elapsed_hours) == ("breached", 2, 3.0)
    assert [(r.cycle_start, r.passed_at) for r in evaluation.breached_runs] == [(T0 + 2 * H, T0 + 3 * H)]
    running = evaluate(_facts([(T0, "open")], replies=replies[:4]), policy, CalendarClock(), T0 + 2.5 * H)
    active = _by_metric(running)["next_reply"]
    assert (active.state, active.elapsed_hours, active.breach_at) == ("active", 0.5, T0 + 3 * H)
    none = _by_metric(evaluate(_facts([(T0, "open")]), policy, CalendarClock(), T0 + H))["next_reply"]
    assert (none.state, none.pairs, none.elapsed_hours, none.breach_at) == ("achieved", 0, 0.0, None)


# --- business clock --------------------------------------------------------------------------

BERLIN = ZoneInfo("Europe/Berlin")
OFFICE = WeeklySchedule(
    "Europe/Berlin",
    tuple(Interval(d, 9 * 3600, 17 * 3600) for d in range(5)),
    frozenset({date(2026, 12, 25)}),
)


def test_a_calendar_breach_on_a_holiday_moves_to_the_next_open_hours():
    created = datetime(2026, 12, 24, 15, 0, tzinfo=BERLIN)  # Thursday; Friday is a holiday
    facts = TicketFacts(created, "high", None, ((created, "open"),))
    policy = _policy(first=4.0, resolution=4.0, schedule_id=1)
    calendar = _by_metric(evaluate(facts, _policy(first=4.0), CalendarClock(), created + H))
    assert calendar["first_reply"].breach_at == datetime(2026, 12, 24, 19, 0, tzinfo=BERLIN)
    business = _by_metric(evaluate(facts, policy, BusinessClock(build(OFFICE)), created + H))
    # 2 hours on Thursday; Friday closed (holiday), the weekend closed; 2 more hours on Monday.
    assert business["first_reply"].breach_at == datetime(2026, 12, 28, 11, 0, tzinfo=BERLIN)
    assert business["first_reply"].elapsed_hours == 1.0
    on_monday = evaluate(
        facts, policy, BusinessClock(build(OFFICE)), datetime(2026, 12, 28, 12, tzinfo=BERLIN)
    )
    assert [(r.metric, r.passed_at) for r in on_monday.breached_runs] == [
        ("first_reply", datetime(2026, 12, 28, 11, 0, tzinfo=BERLIN)),
        ("resolution", datetime(2026, 12, 28, 11, 0, tzinfo=BERLIN)),
    ]


def test_a_target_used_up_at_closing_time_is_reached_then_and_passed_when_the_office_opens():
    """Met "within the target's hours": elapsed time at most the target. A target used up exactly at
    closing time is reached then (breach_at), but the clock stands still overnight: a reply before the
    office opens again, or as it opens, is in time; one still waiting after that is breached, dated at
    closing time, and the sweep looks again at the opening (due_at)."""
    office = BusinessClock(build(OFFICE))
    sunday = datetime(2026, 12, 6, 10, 0, tzinfo=BERLIN)
    closing = datetime(2026, 12, 7, 17, 0, tzinfo=BERLIN)  # Monday: 8 open hours since Sunday
    opening = datetime(2026, 12, 8, 9, 0, tzinfo=BERLIN)  # Tuesday
    policy = _policy(first=8.0, resolution=16.0, schedule_id=1)
    facts = TicketFacts(sunday, "normal", None, ((sunday, "open"),))

    def first_reply(now, facts=facts):
        return _by_metric(evaluate(facts, policy, office, now))["first_reply"]

    # Before closing time: active, reaching its target at 17:00, not when the office opens again.
    before = first_reply(datetime(2026, 12, 7, 16, 0, tzinfo=BERLIN))
    assert (before.state, before.breach_at) == ("active", closing)
    assert _by_metric(evaluate(facts, policy, office, closing))["resolution"].breach_at == datetime(
        2026, 12, 8, 17, 0, tzinfo=BERLIN
    )
    # Waiting overnight: the elapsed time equals the target, so not passed yet; the sweep's next look
    # is at the opening.
    evening = datetime(2026, 12, 7, 18, 0, tzinfo=BERLIN)
    waiting = first_reply(evening)
    assert (waiting.state, waiting.elapsed_hours, waiting.breach_at) == ("active", 8.0, closing)
    (watched,) = [
        r for r in evaluate(facts, policy, office, evening).running_runs if r.metric == "first_reply"
    ]
    assert watched.due_at == opening
    assert evaluate(facts, policy, office, opening).breached_runs == []
    # Past the opening: breached, dated where the clock reached the target.
    later = opening + timedelta(minutes=1)
    assert (first_reply(later).state, first_reply(later).elapsed_hours) == ("breached", 8.0 + 1 / 60)
    assert [r.passed_at for r in evaluate(facts, policy, office, later).breached_runs] == [closing]
    # It could first be seen at the opening: that is when the sweep finds it, and it is news then.
    assert [r.over_at for r in evaluate(facts, policy, office, later).breached_runs] == [opening]
    # Replies at closing time, overnight and as the office opens are in time; a minute later is not.
    for replied, state in (
        (closing, "achieved"),
        (closing + timedelta(minutes=30), "achieved"),
        (opening, "achieved"),
        (opening + timedelta(minutes=1), "breached"),
    ):
        answered = TicketFacts(sunday, "normal", replied, ((sunday, "open"),))
        assert first_reply(opening + timedelta(hours=2), answered).state == state, replied


def test_a_resolution_paused_right_at_its_target_runs_past_it_only_in_open_hours():
    office = BusinessClock(build(OFFICE))
    monday = datetime(2026, 12, 7, 9, 0, tzinfo=BERLIN)
    closing = datetime(2026, 12, 7, 17, 0, tzinfo=BERLIN)
    opening = datetime(2026, 12, 8, 9, 0, tzinfo=BERLIN)
    policy = _policy(resolution=8.0, pauses=("pending",), schedule_id=1)
    paused = ((monday, "open"), (closing, "pending"))
    now = datetime(2026, 12, 7, 22, 0, tzinfo=BERLIN)
    # Paused exactly as the target is reached: not passed.
    outcome = _by_metric(evaluate(TicketFacts(monday, "high", None, paused), policy, office, now))
    assert outcome["resolution"].state == "paused"
    # Open again at 20:00 (closed hours): the clock stands at the target until Tuesday's opening.
    reopened = (*paused, (datetime(2026, 12, 7, 20, 0, tzinfo=BERLIN), "open"))
    evaluation = evaluate(TicketFacts(monday, "high", None, reopened), policy, office, now)
    assert _by_metric(evaluation)["resolution"].state == "active"
    assert [r.due_at for r in evaluation.running_runs if r.metric == "resolution"] == [opening]
    # Past the opening it is breached, from where the run began again.
    later = evaluate(
        TicketFacts(monday, "high", None, reopened), policy, office, opening + timedelta(seconds=1)
    )
    assert _by_metric(later)["resolution"].state == "breached"
    assert [r.passed_at for r in later.breached_runs] == [datetime(2026, 12, 7, 20, 0, tzinfo=BERLIN)]


def _random_history(rng: random.Random, start: datetime, now: datetime) -> list[tuple[datetime, str]]:
    history = [(start, rng.choice(["open", "open", "pending"]))]
    at = start
    while True:
        at += timedelta(minutes=rng.randint(5, 3000), seconds=rng.randint(0, 59))
        if at >= now:
            return history
        history.append((at, rng.choice(["open", "pending", "on_hold", "resolved", "closed"])))


@pytest.mark.parametrize("zone_name", ["America/New_York", "Australia/Lord_Howe"])
def test_random_histories_against_the_minute_walk(zone_name):
    schedule = WeeklySchedule(zone_name, SHIFTS, HOLIDAYS)
    reference = Reference(schedule)
    clock = BusinessClock(build(schedule))
    rng = random.Random(zone_name)
    states = set()
    for _ in range(40):
        created = datetime(2026, 3, 1, tzinfo=UTC) + timedelta(minutes=rng.randint(0, 60 * 24 * 300))
        now = created + timedelta(minutes=rng.randint(1, 60 * 24 * 8))
        history = _random_history(rng, created, now)
        pauses = rng.choice([(), ("pending",), ("pending", "on_hold")])
        target = rng.choice([1.0, 4.0, 9.5, 30.0])
        policy = _policy(resolution=target, pauses=pauses, schedule_id=1)
        evaluation = evaluate(_facts_at(created, history), policy, clock, now)
        outcome = _by_metric(evaluation)["resolution"]
        running = [
            (at, following[0] if following else now)
            for (at, status), following in zip(history, [*history[1:], None], strict=True)
            if status in ("open", "pending", "on_hold") and status not in pauses
        ]
        elapsed = sum(reference.open_seconds(a, b) for a, b in running)
        assert outcome.elapsed_hours == pytest.approx(elapsed / 3600, abs=1e-9)
        last = history[-1][1]
        reached, passed = _reach(reference, running, target * 3600)
        assert passed or elapsed <= target * 3600
        if passed:
            assert outcome.state == "breached"
            # The target is passed at the instant the clock reached it: open time ran up to it.
            at = evaluation.breached_runs[0].passed_at
            assert abs((at - reached).total_seconds()) < 1e-5, (at, reached)
        elif last in ("resolved", "closed"):
            assert outcome.state == "achieved"
        elif last in pauses:
            assert outcome.state == "paused"
        else:
            assert outcome.state == "active"
            # From `now`, the target is used up exactly at breach_at, where the clock was running.
            left = target * 3600 - elapsed
            assert reference.open_seconds(now, outcome.breach_at) == pytest.approx(left, abs=1e-6)
            if left > 0:
                assert reference.is_open(outcome.breach_at - timedelta(microseconds=1))
        states.add(outcome.state)
    assert states == {"achieved", "breached", "paused", "active"}


def _reach(reference, spans, target_s):
    """Walking the running spans minute by minute: the first instant their open time reaches
    `target_s`, and whether a span runs on past it (the target is passed)."""
    used = 0.0
    for a, b in spans:
        if b <= a:  # a span that ran no time passes nothing
            continue
        if used >= target_s:  # reached exactly where an earlier span stopped: passed as this one runs
            return a, True
        t = a
        while t < b:
            step_end = min(b, (t + timedelta(minutes=1)).replace(second=0, microsecond=0))
            if reference.is_open(t):
                length = (step_end - t).total_seconds()
                if used + length >= target_s:
                    at = t + timedelta(seconds=target_s - used)
                    return at, at < b
                used += length
            t = step_end
    return None, False


def _facts_at(created, history):
    return TicketFacts(created, "normal", None, tuple(history))
