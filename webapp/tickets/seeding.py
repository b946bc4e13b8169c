"""Synthetic tickets and their events for demos and benchmarks, written through PostgreSQL COPY.

Each ticket follows a timeline of offsets from its creation counted in quanta of 36 seconds
(0.01 h), so every event's value in hours is an exact two-decimal number. Only events before
`now` are written, and the ticket row is the state those events leave behind, exactly as
webapp.tickets would have left it had the changes arrived one at a time.
"""

from __future__ import annotations

import contextlib
import json
import math
import queue
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

import numpy as np
import psycopg

from webapp.core.timeutil import utcnow, zone
from webapp.models.tickets import CHANNELS, EVENT_TYPES, PRIORITIES, STATUSES
from webapp.tickets.writes import skip_row_checks

BATCH_TICKETS = 20_000
QUANTUM = 36  # seconds in 0.01 h

CATEGORIES = (
    "billing",
    "technical",
    "account",
    "shipping",
    "returns",
    "product",
    "feature_request",
    "general",
)
AGENTS = (
    "alice.martin",
    "bruno.costa",
    "chen.wei",
    "dana.kowalski",
    "emeka.obi",
    "fatima.zahra",
    "gustav.berg",
    "hana.sato",
    "ivan.petrov",
    "julia.romero",
    "kofi.mensah",
    "lena.fischer",
)
SUBJECTS = {
    "billing": ("Charged twice this month", "Invoice shows the wrong VAT number", "Refund not received"),
    "technical": ("App crashes on login", "Sync stuck at 99%", "Error 500 when exporting", "API timeouts"),
    "account": ("Cannot reset my password", "Please merge two accounts", "Two-factor code never arrives"),
    "shipping": ("Parcel has not arrived", "Tracking number does not work", "Wrong delivery address"),
    "returns": ("How do I return an item?", "Return label missing", "Item arrived damaged"),
    "product": ("Which plan includes SSO?", "Size chart question", "Compatibility with older models"),
    "feature_request": ("Dark mode please", "Export to Google Sheets", "Bulk edit for tags"),
    "general": ("Question about your hours", "Feedback on the new website", "Partnership enquiry"),
}

# Shares follow the order of the matching vocabulary.
PRIORITY_SHARE = (0.30, 0.45, 0.18, 0.07)
CHANNEL_SHARE = (0.36, 0.20, 0.11, 0.20, 0.05, 0.08)
CATEGORY_SHARE = (0.17, 0.22, 0.12, 0.13, 0.09, 0.10, 0.05, 0.12)
AGENT_LOAD = (1.4, 1.3, 1.2, 1.1, 1.0, 1.0, 1.0, 0.9, 0.9, 0.8, 0.7, 0.6)
UNASSIGNED_SHARE = 0.05
PRE_ASSIGNED_SHARE = 0.4  # routed by a rule at creation; the others are assigned at triage
REASSIGNED_SHARE = 0.08
ESCALATED_SHARE = 0.05
PENDING_SHARE, ON_HOLD_SHARE = 0.35, 0.05  # status set with the first response
REOPENED_SHARE = 0.06
RERESOLVED_SHARE = 0.8
CLOSED_SHARE = 0.75
NULL_SENTIMENT_SHARE = 0.10
NIGHT_WAIT_SHARE = 0.6  # non-urgent tickets filed outside 08-18 local that wait for the morning

# Median hours by priority (low, normal, high, urgent), scaled by channel and category.
FIRST_RESPONSE_MEDIAN = np.array([10.0, 4.0, 1.5, 0.5])
RESOLUTION_MEDIAN = np.array([48.0, 20.0, 8.0, 3.0])
CHANNEL_SPEED = np.array([1.2, 0.35, 0.3, 1.0, 0.8, 1.0])
CATEGORY_EFFORT = np.array([0.8, 1.6, 0.7, 1.0, 0.9, 0.8, 1.3, 0.6])

HOUR_WEIGHT = np.array(
    [0.15, 0.10, 0.08, 0.07, 0.08, 0.12, 0.25, 0.45, 0.80, 1.00, 1.00, 0.95,
     0.80, 0.90, 1.00, 0.95, 0.85, 0.65, 0.50, 0.42, 0.38, 0.32, 0.25, 0.20]
)  # fmt: skip
WEEKDAY_WEIGHT = np.array([1.15, 1.05, 1.0, 1.0, 0.9, 0.42, 0.38])  # Monday first
GROWTH = 0.3  # the newest day sees 30% more tickets than the oldest

OPEN, PENDING, ON_HOLD, RESOLVED, CLOSED = range(len(STATUSES))
NEVER = 1 << 56  # offset of a change that does not happen
# A change's key is offset * 8 + rank: one update writes priority, then assignment, then first
# response, then status (the order of webapp.tickets.update_ticket), and each event sees the
# changes whose key is <= its own.
RANK_CREATED, RANK_PRIORITY, RANK_ASSIGNED, RANK_FIRST_RESPONSE, RANK_STATUS = range(5)

TICKET_COPY = (
    "COPY tickets (id, org_id, subject, status, priority, channel, category, assigned_to, "
    "sentiment_score, created_at, updated_at, first_response_at, resolved_at, reopen_count) FROM STDIN"
)
EVENT_COPY = (
    "COPY ticket_events (org_id, ticket_id, event_type, occurred_at, status, priority, channel, "
    "category, assigned_to, value, detail) FROM STDIN"
)


@dataclass(frozen=True)
class SeedStats:
    """What a seed run wrote."""

    tickets: int
    events: int
    first_id: int | None
    last_id: int | None
    seconds: float


def seed_tickets(
    conn: psycopg.Connection,
    *,
    org_id: int,
    tickets: int,
    days: int = 365,
    seed: int = 0,
    tz: str = "UTC",
    now: datetime | None = None,
    progress: Callable[[int], None] | None = None,
) -> SeedStats:
    """COPY `tickets` synthetic tickets of `org_id` and their events, the same ones for the same seed."""
    if tickets < 0:
        raise ValueError("tickets must be >= 0")
    if days < 1:
        raise ValueError("days must be >= 1")
    if now is not None and now.utcoffset() is None:
        raise ValueError("now must be timezone-aware")
    started = time.perf_counter()
    now_s = math.floor((now or utcnow()).timestamp())
    n_batches = math.ceil(tickets / BATCH_TICKETS)
    streams = np.random.SeedSequence(seed).spawn(1 + n_batches)
    created, utc_offset = _created_times(np.random.default_rng(streams[0]), tickets, now_s, days, tz)
    events = 0
    first_id: int | None = None
    # A savepoint inside the caller's transaction, or a transaction of its own: all or nothing.
    with conn.transaction(), conn.cursor() as cur:
        cur.execute("SELECT 1 FROM organizations WHERE id = %s FOR KEY SHARE", (org_id,))
        if cur.fetchone() is None:
            raise ValueError(f"organization {org_id} does not exist")
        if tickets:
            first_id = _reserve_ids(cur, tickets)
        skipping_checks = _skip_row_checks(conn)

        def encode(batch: int) -> tuple[bytes, bytes, int, int]:
            assert first_id is not None
            lo, hi = batch * BATCH_TICKETS, min((batch + 1) * BATCH_TICKETS, tickets)
            rng = np.random.default_rng(streams[1 + batch])
            ticket_rows, event_rows, n_events = _batch(
                rng, created[lo:hi], utc_offset[lo:hi], first_id + lo, org_id, now_s
            )
            return ticket_rows, event_rows, n_events, hi

        for ticket_rows, event_rows, n_events, done in _prefetch(map(encode, range(n_batches))):
            _copy(cur, TICKET_COPY, ticket_rows)
            _copy(cur, EVENT_COPY, event_rows)
            events += n_events
            if progress is not None:
                progress(done)
        if skipping_checks:
            cur.execute("SET LOCAL session_replication_role = origin")
    last_id = None if first_id is None else first_id + tickets - 1
    return SeedStats(tickets, events, first_id, last_id, time.perf_counter() - started)


def _reserve_ids(cur: psycopg.Cursor, n: int) -> int:
    # The lock keeps other inserts from drawing ids between our nextval and setval. It lasts until
    # the caller's transaction ends, so live ticket writes wait for the seed (reads do not).
    cur.execute("LOCK TABLE tickets IN SHARE ROW EXCLUSIVE MODE")
    cur.execute("SELECT nextval(pg_get_serial_sequence('tickets', 'id'))")
    row = cur.fetchone()
    assert row is not None
    first = int(row[0])
    cur.execute("SELECT setval(pg_get_serial_sequence('tickets', 'id'), %s)", (first + n - 1,))
    return first


def _skip_row_checks(conn: psycopg.Connection) -> bool:
    """Skip the per-row foreign-key triggers for the rest of the seed, where that is safe and allowed.

    They are half the cost of a seed and check nothing the seed does not already guarantee: the
    organization is locked above and every event's ticket is written just before it.
    """
    return skip_row_checks(conn, ("tickets", "ticket_events"))


def _copy(cur: psycopg.Cursor, statement: str, data: bytes) -> None:
    with cur.copy(statement) as copy:
        # psycopg sends large buffers in slices; slices of a memoryview are not copies.
        copy.write(memoryview(data))


def _prefetch(items: Iterator[tuple[bytes, bytes, int, int]]) -> Iterator[tuple[bytes, bytes, int, int]]:
    """Yield `items`, producing the next one in a thread while the caller handles the current one."""
    ready: queue.Queue[tuple[str, object]] = queue.Queue(maxsize=1)
    stop = threading.Event()

    def produce() -> None:
        try:
            for item in items:
                if stop.is_set():
                    return
                ready.put(("item", item))
            ready.put(("end", None))
        except BaseException as exc:  # re-raised in the consumer
            ready.put(("error", exc))

    worker = threading.Thread(target=produce, name="seed-format", daemon=True)
    worker.start()
    try:
        while True:
            kind, payload = ready.get()
            if kind == "end":
                return
            if kind == "error":
                assert isinstance(payload, BaseException)
                raise payload
            yield payload  # type: ignore[misc]
    finally:
        stop.set()
        # Drain so a producer blocked on put() can see `stop` and finish.
        while worker.is_alive():
            with contextlib.suppress(queue.Empty):
                ready.get(timeout=0.05)


def _created_times(
    rng: np.random.Generator, n: int, now_s: int, days: int, tz: str
) -> tuple[np.ndarray, np.ndarray]:
    """Creation instants (epoch seconds, ascending) and the zone's UTC offset at each."""
    zi = zone(tz)
    slots = now_s - days * 86400 + 3600 * np.arange(days * 24, dtype=np.int64)
    # Weighting real hours by their local hour keeps DST right: the repeated autumn hour is two slots.
    offsets = np.array([_utc_offset(int(s) + 1800, zi) for s in slots], dtype=np.int64)
    local = slots + 1800 + offsets
    hour = (local // 3600) % 24
    weekday = (local // 86400 + 3) % 7  # 1970-01-01 was a Thursday
    trend = 1 + GROWTH * np.arange(len(slots)) / len(slots)
    cumulative = np.cumsum(HOUR_WEIGHT[hour] * WEEKDAY_WEIGHT[weekday] * trend)
    slot = np.searchsorted(cumulative, rng.random(n) * cumulative[-1], side="right")
    slot = np.minimum(slot, len(slots) - 1)
    created = slots[slot] + rng.integers(0, 3600, n)
    # Ids ascend with creation time, as they do when tickets arrive live.
    order = np.argsort(created, kind="stable")
    return created[order], offsets[slot][order]


def _utc_offset(epoch: int, zi: ZoneInfo) -> int:
    offset = datetime.fromtimestamp(epoch, zi).utcoffset()
    assert offset is not None
    return int(offset.total_seconds())


def _quanta(hours: np.ndarray, minimum: int) -> np.ndarray:
    return np.maximum(minimum, np.rint(hours * 100)).astype(np.int64)


def _key(offset: np.ndarray, rank: int) -> np.ndarray:
    return np.where(offset < NEVER, offset * 8 + rank, NEVER)


Changes = list[tuple[np.ndarray, np.ndarray]]  # per change: key and new value, one per ticket


def _value_at(changes: Changes, initial: np.ndarray, ix: np.ndarray, at: np.ndarray) -> np.ndarray:
    """A dimension of tickets `ix` at keys `at`; `changes` are in time order within each ticket."""
    value = initial[ix]
    for key, new in changes:
        value = np.where(key[ix] <= at, new[ix], value)
    return value


def _batch(
    rng: np.random.Generator,
    created: np.ndarray,
    utc_offset: np.ndarray,
    first_id: int,
    org_id: int,
    now_s: int,
) -> tuple[bytes, bytes, int]:
    """COPY text of one batch of tickets and of their events, and the number of events."""
    n = len(created)
    full = np.full
    priority0 = rng.choice(len(PRIORITIES), n, p=PRIORITY_SHARE)
    channel = rng.choice(len(CHANNELS), n, p=CHANNEL_SHARE)
    category = rng.choice(len(CATEGORIES), n, p=CATEGORY_SHARE)
    subject = _SUBJECT_FIRST[category] + (rng.random(n) * _SUBJECT_COUNT[category]).astype(np.int64)
    # Agent codes: 0 is unassigned, i > 0 is AGENTS[i - 1].
    agent = 1 + rng.choice(len(AGENTS), n, p=np.array(AGENT_LOAD) / sum(AGENT_LOAD))
    agent[rng.random(n) < UNASSIGNED_SHARE] = 0
    pre_assigned = (agent > 0) & (rng.random(n) < PRE_ASSIGNED_SHARE)
    reassigned = (agent > 0) & (rng.random(n) < REASSIGNED_SHARE)
    agent2 = np.where(reassigned, (agent - 1 + rng.integers(1, len(AGENTS), n)) % len(AGENTS) + 1, agent)

    local_hour = ((created + utc_offset) % 86400) / 3600
    night_wait = np.where(local_hour >= 18, 32 - local_hour, np.where(local_hour < 8, 8 - local_hour, 0.0))
    waits = (priority0 < 3) & (rng.random(n) < NIGHT_WAIT_SHARE)
    response_hours = FIRST_RESPONSE_MEDIAN[priority0] * CHANNEL_SPEED[channel] * rng.lognormal(0, 0.9, n)
    q_fr = _quanta(response_hours + np.where(waits, night_wait, 0.0), 1)

    escalated = (priority0 < 3) & (rng.random(n) < ESCALATED_SHARE)
    priority = priority0 + escalated
    q_work = _quanta(RESOLUTION_MEDIAN[priority] * CATEGORY_EFFORT[category] * rng.lognormal(0, 1.0, n), 2)
    q_r1 = q_fr + q_work
    # Escalations and reassignments land strictly between first response and resolution.
    q_esc = np.where(escalated, q_fr + 1 + ((q_work - 1) * rng.random(n)).astype(np.int64), NEVER)
    q_reassign = np.where(reassigned, q_fr + 1 + ((q_work - 1) * rng.random(n)).astype(np.int64), NEVER)
    q_assign = np.where((agent > 0) & ~pre_assigned, (q_fr * rng.random(n)).astype(np.int64), NEVER)

    draw = rng.random(n)
    waiting = np.where(draw < PENDING_SHARE, PENDING, ON_HOLD)
    waiting = np.where(draw < PENDING_SHARE + ON_HOLD_SHARE, waiting, OPEN)
    q_wait = np.where(waiting != OPEN, q_fr, NEVER)
    # Reopened within 70 h, before the earliest close (72 h), so always from `resolved`.
    reopened = rng.random(n) < REOPENED_SHARE
    reopen_after = _quanta(np.minimum(20 * rng.lognormal(0, 1.0, n), 70), 1)
    q_reopen = np.where(reopened, q_r1 + reopen_after, NEVER)
    reresolved = reopened & (rng.random(n) < RERESOLVED_SHARE)
    rework = _quanta(RESOLUTION_MEDIAN[priority] / 3 * rng.lognormal(0, 1.0, n), 1)
    q_r2 = np.where(reresolved, q_reopen + rework, NEVER)
    q_final = np.where(reresolved, q_r2, np.where(reopened, NEVER, q_r1))
    closes = (q_final < NEVER) & (rng.random(n) < CLOSED_SHARE)
    q_close = np.where(closes, q_final + _quanta(72 + rng.exponential(24, n), 1), NEVER)

    typical = 100 * (FIRST_RESPONSE_MEDIAN[priority] + RESOLUTION_MEDIAN[priority])
    sentiment = rng.normal(0.15, 0.35, n) - 0.12 * np.log(q_r1 / typical) - 0.25 * reopened
    sentiment_milli = np.rint(np.clip(sentiment, -1, 1) * 1000).astype(np.int64)
    sentiment_null = rng.random(n) < NULL_SENTIMENT_SHARE

    status_changes: Changes = [
        (_key(q_wait, RANK_STATUS), waiting),
        (_key(q_r1, RANK_STATUS), full(n, RESOLVED)),
        (_key(q_reopen, RANK_STATUS), full(n, OPEN)),
        (_key(q_r2, RANK_STATUS), full(n, RESOLVED)),
        (_key(q_close, RANK_STATUS), full(n, CLOSED)),
    ]
    priority_changes: Changes = [(_key(q_esc, RANK_PRIORITY), priority)]
    agent_changes: Changes = [
        (_key(q_assign, RANK_ASSIGNED), agent),
        (_key(q_reassign, RANK_ASSIGNED), agent2),
    ]
    initial_agent = np.where(pre_assigned, agent, 0)

    # The last offset whose instant is before now.
    q_last = (now_s - 1 - created) // QUANTUM
    parts: list[tuple[np.ndarray, ...]] = []

    def add(
        q: np.ndarray,
        rank: int,
        sub: int,
        event_type: str,
        *,
        value: bool = False,
        detail: np.ndarray | None = None,
    ) -> None:
        ix = np.flatnonzero(q <= q_last)
        m = len(ix)
        parts.append(
            (
                ix,
                q[ix],
                full(m, rank * 2 + sub),
                full(m, EVENT_TYPES.index(event_type)),
                q[ix] if value else full(m, -1),
                full(m, 0) if detail is None else detail[ix],
            )
        )

    add(np.zeros(n, np.int64), RANK_CREATED, 0, "created")
    add(q_esc, RANK_PRIORITY, 0, "priority_changed", detail=_priority_detail(priority0, priority))
    add(q_assign, RANK_ASSIGNED, 0, "assigned", detail=_agent_detail(full(n, 0), agent))
    add(q_reassign, RANK_ASSIGNED, 0, "assigned", detail=_agent_detail(agent, agent2))
    add(q_fr, RANK_FIRST_RESPONSE, 0, "first_response", value=True)
    add(q_wait, RANK_STATUS, 0, "status_changed", detail=_status_detail(full(n, OPEN), waiting))
    add(q_r1, RANK_STATUS, 0, "status_changed", detail=_status_detail(waiting, full(n, RESOLVED)))
    add(q_r1, RANK_STATUS, 1, "resolved", value=True)
    add(q_reopen, RANK_STATUS, 0, "reopened", detail=_status_detail(full(n, RESOLVED), full(n, OPEN)))
    add(q_reopen, RANK_STATUS, 1, "status_changed", detail=_status_detail(full(n, RESOLVED), full(n, OPEN)))
    add(q_r2, RANK_STATUS, 0, "status_changed", detail=_status_detail(full(n, OPEN), full(n, RESOLVED)))
    add(q_r2, RANK_STATUS, 1, "resolved", value=True)
    add(q_close, RANK_STATUS, 0, "status_changed", detail=_status_detail(full(n, RESOLVED), full(n, CLOSED)))
    columns = [np.concatenate(column) for column in zip(*parts, strict=True)]
    order = np.lexsort((columns[2], columns[1], columns[0]))  # by ticket, then time, then rank
    ix, q, sub_rank, event_type, value_q, detail = (column[order] for column in columns)
    at = q * 8 + sub_rank // 2
    occurred = created[ix] + QUANTUM * q

    events = _encode(
        [
            [_const(str(org_id), len(ix))],
            [_ints(first_id + ix)],
            [_EVENT_TYPE.column(event_type)],
            [_timestamps(occurred)],
            [_STATUS.column(_value_at(status_changes, full(n, OPEN), ix, at))],
            [_PRIORITY.column(_value_at(priority_changes, priority0, ix, at))],
            [_CHANNEL.column(channel[ix])],
            [_CATEGORY.column(category[ix])],
            [_AGENT.column(_value_at(agent_changes, initial_agent, ix, at))],
            _nullable(_hundredths(np.maximum(value_q, 0)), value_q < 0),
            [_DETAIL.column(detail)],
        ]
    )

    # The ticket row: the state after its last written event.
    every = np.arange(n)
    cut = q_last * 8 + 7
    q_updated = np.zeros(n, np.int64)
    for q_change in (q_assign, q_esc, q_reassign, q_fr, q_r1, q_reopen, q_r2, q_close):
        q_updated = np.maximum(q_updated, np.where(q_change <= q_last, q_change, 0))
    resolved_q = np.where(q_r2 <= q_last, q_r2, np.where(q_reopen <= q_last, NEVER, q_r1))
    resolved_q = np.where(resolved_q <= q_last, resolved_q, NEVER)
    tickets = _encode(
        [
            [_ints(first_id + every)],
            [_const(str(org_id), n)],
            [_SUBJECT.column(subject)],
            [_STATUS.column(_value_at(status_changes, full(n, OPEN), every, cut))],
            [_PRIORITY.column(_value_at(priority_changes, priority0, every, cut))],
            [_CHANNEL.column(channel)],
            [_CATEGORY.column(category)],
            [_AGENT.column(_value_at(agent_changes, initial_agent, every, cut))],
            _nullable([_sentiment(sentiment_milli)], sentiment_null),
            [_timestamps(created)],
            [_timestamps(created + QUANTUM * q_updated)],
            _nullable([_timestamps(created + QUANTUM * np.minimum(q_fr, q_last))], q_fr > q_last),
            _nullable([_timestamps(created + QUANTUM * np.minimum(resolved_q, q_last))], resolved_q == NEVER),
            [_ints((q_reopen <= q_last).astype(np.int64))],
        ]
    )
    return tickets, events, len(ix)


# COPY text encoding. A piece is a byte matrix (one row per COPY row) and each row's length
# (None: the full width); a field is a list of pieces written back to back.
Piece = tuple[np.ndarray, np.ndarray | None]

_TWO_DIGITS = np.array([list(f"{i:02d}".encode()) for i in range(100)], dtype=np.uint8)


def _encode(fields: list[list[Piece]]) -> bytes:
    """Rows of tab-separated fields, each ended by a newline, as one buffer."""
    n = fields[0][0][0].shape[0]
    matrices: list[np.ndarray] = []
    masks: list[np.ndarray] = []
    for i, field in enumerate(fields):
        separator = b"\n" if i == len(fields) - 1 else b"\t"
        for matrix, lengths in [*field, _const(separator.decode(), n)]:
            matrices.append(matrix)
            width = matrix.shape[1]
            if lengths is None:
                masks.append(np.ones((n, width), dtype=bool))
            else:
                masks.append(np.arange(width) < lengths[:, None])
    return np.concatenate(matrices, axis=1)[np.concatenate(masks, axis=1)].tobytes()


def _const(text: str, n: int) -> Piece:
    raw = np.frombuffer(text.encode(), dtype=np.uint8)
    return np.broadcast_to(raw, (n, len(raw))), None


def _ints(values: np.ndarray) -> Piece:
    """Non-negative integers in decimal."""
    width = len(str(int(values.max()))) if len(values) else 1
    raw = values.astype(f"S{width}")
    return raw.view(np.uint8).reshape(len(values), width), np.strings.str_len(raw)


def _hundredths(values: np.ndarray) -> list[Piece]:
    """Non-negative integers divided by 100, written exactly: 1234 -> 12.34."""
    return [_ints(values // 100), _const(".", len(values)), (_TWO_DIGITS[values % 100], None)]


def _sentiment(milli: np.ndarray) -> Piece:
    """Integers in [-1000, 1000] divided by 1000, with a sign: -250 -> -0.250."""
    out = np.empty((len(milli), 6), dtype=np.uint8)
    magnitude = np.abs(milli)
    out[:, 0] = np.where(milli < 0, ord("-"), ord("+"))
    out[:, 1] = ord("0") + magnitude // 1000
    out[:, 2] = ord(".")
    out[:, 3] = ord("0") + magnitude % 1000 // 100
    out[:, 4:6] = _TWO_DIGITS[magnitude % 100]
    return out, None


def _timestamps(epoch: np.ndarray) -> Piece:
    """Epoch seconds as 'YYYY-MM-DD HH:MM:SS+00'."""
    out = np.empty((len(epoch), 22), dtype=np.uint8)
    if not len(epoch):
        return out, None
    day = epoch // 86400
    second = epoch - day * 86400
    # Few distinct days per batch: format each once and gather.
    first = int(day.min())
    calendar = np.arange(first, int(day.max()) + 1).astype("datetime64[D]")
    dates = np.datetime_as_string(calendar).astype("S10").view(np.uint8).reshape(-1, 10)
    out[:, 0:10] = dates[day - first]
    out[:, 10] = ord(" ")
    out[:, 11:13] = _TWO_DIGITS[second // 3600]
    out[:, 13] = ord(":")
    out[:, 14:16] = _TWO_DIGITS[second // 60 % 60]
    out[:, 16] = ord(":")
    out[:, 17:19] = _TWO_DIGITS[second % 60]
    out[:, 19:22] = np.frombuffer(b"+00", dtype=np.uint8)
    return out, None


def _nullable(field: list[Piece], null: np.ndarray) -> list[Piece]:
    """`field`, or \\N where `null`."""
    marker, _ = _const("\\N", len(null))
    pieces: list[Piece] = [(marker, np.where(null, 2, 0))]
    for matrix, lengths in field:
        full_length = np.full(len(null), matrix.shape[1]) if lengths is None else lengths
        pieces.append((matrix, np.where(null, 0, full_length)))
    return pieces


class _Vocabulary:
    """A text column whose values come from a short list, looked up by code; None is NULL."""

    def __init__(self, values: Sequence[str | None]) -> None:
        # COPY text would need these escaped; the vocabularies never contain them.
        assert not any(c in v for v in values if v is not None for c in "\t\n\\"), "unescaped COPY text"
        encoded = [b"\\N" if v is None else v.encode() for v in values]
        width = max(len(v) for v in encoded)
        self.matrix = np.zeros((len(encoded), width), dtype=np.uint8)
        for i, v in enumerate(encoded):
            self.matrix[i, : len(v)] = np.frombuffer(v, dtype=np.uint8)
        self.lengths = np.array([len(v) for v in encoded])

    def column(self, codes: np.ndarray) -> Piece:
        return self.matrix[codes], self.lengths[codes]


def _pairs(values: Sequence[str | None]) -> list[str]:
    return [json.dumps({"from": a, "to": b}) for a in values for b in values]


_STATUS = _Vocabulary(STATUSES)
_PRIORITY = _Vocabulary(PRIORITIES)
_CHANNEL = _Vocabulary(CHANNELS)
_CATEGORY = _Vocabulary(CATEGORIES)
_AGENT = _Vocabulary((None, *AGENTS))
_EVENT_TYPE = _Vocabulary(EVENT_TYPES)
_SUBJECT = _Vocabulary([s for category in CATEGORIES for s in SUBJECTS[category]])
_SUBJECT_COUNT = np.array([len(SUBJECTS[c]) for c in CATEGORIES])
_SUBJECT_FIRST = np.concatenate([[0], np.cumsum(_SUBJECT_COUNT)[:-1]])
# Detail is NULL (code 0) or {"from": .., "to": ..} of statuses, priorities or assignees.
_STATUS_PAIRS_AT = 1
_PRIORITY_PAIRS_AT = _STATUS_PAIRS_AT + len(STATUSES) ** 2
_AGENT_PAIRS_AT = _PRIORITY_PAIRS_AT + len(PRIORITIES) ** 2
_DETAIL = _Vocabulary([None, *_pairs(STATUSES), *_pairs(PRIORITIES), *_pairs((None, *AGENTS))])


def _status_detail(before: np.ndarray, after: np.ndarray) -> np.ndarray:
    return _STATUS_PAIRS_AT + before * len(STATUSES) + after


def _priority_detail(before: np.ndarray, after: np.ndarray) -> np.ndarray:
    return _PRIORITY_PAIRS_AT + before * len(PRIORITIES) + after


def _agent_detail(before: np.ndarray, after: np.ndarray) -> np.ndarray:
    return _AGENT_PAIRS_AT + before * (len(AGENTS) + 1) + after
