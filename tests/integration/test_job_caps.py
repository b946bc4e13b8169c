"""Each organization may have a capped number of jobs of each kind active (429 with Retry-After past
it, nothing stored or queued), and the jobs it adds while others are active wait in the overflow
queue, which workers take from in turn with the others."""

from __future__ import annotations

import os
import time
import uuid
from datetime import UTC, datetime, timedelta

import pytest
import redis
from celery.app.task import Context
from sqlalchemy import text
from sqlalchemy.orm import Session

from tests.conftest import process_env
from webapp.core.vocabulary import JOB_ROUTES, OVERFLOW_QUEUE
from webapp.jobs import claim, recovery
from webapp.models import Job

AGG = "/api/v1/analytics/aggregations"


def _busy(db_session, org_id: int, kind: str, count: int) -> None:
    db_session.add_all(
        Job(
            id=uuid.uuid4(),
            org_id=org_id,
            kind=kind,
            params={"n": i},
            params_hash=f"busy-{i}",
            state="running",
        )
        for i in range(count)
    )
    db_session.commit()


def _jobs(db_session, org_id: int, kind: str) -> int:
    return db_session.query(Job).filter_by(org_id=org_id, kind=kind).count()


@pytest.fixture
def queues(services, app):
    """The broker's queues, with any running test worker told to stop taking from the queues this
    file inspects until the test ends (a worker started by an earlier test would drain them)."""
    celery = app.extensions["celery"]
    watched = ("default", OVERFLOW_QUEUE)
    # A loaded worker may answer the control message late: ask until none says it consumes them.
    deadline = time.monotonic() + 30
    while True:
        # A connection of its own: a pooled one may predate a Redis restart of an earlier test.
        with celery.connection_for_write() as conn:
            for queue in watched:
                celery.control.cancel_consumer(queue, reply=True, timeout=2.0, connection=conn)
            active = celery.control.inspect(timeout=2.0, connection=conn).active_queues() or {}
        consumed = {q["name"] for queues in active.values() for q in queues} & set(watched)
        if not consumed:
            break
        assert time.monotonic() < deadline, f"the test worker still consumes {consumed}"
    client = redis.Redis.from_url(services.redis_url)
    yield client
    with celery.connection_for_write() as conn:
        for queue in watched:
            celery.control.add_consumer(queue, reply=True, timeout=2.0, connection=conn)


def test_twelve_async_aggregations_are_four_202s_then_429s(make_tenant, app, db_session):
    tenant = make_tenant()
    answers = [
        tenant.viewer.post(
            AGG,
            json={
                "metrics": ["response_time"],
                "start": f"2026-0{1 + i % 9}-01",
                "async": True,
                "end": "2026-11-01",
                "percentiles": [10 + i],
            },
        )
        for i in range(12)
    ]
    limit = app.config["JOB_MAX_ACTIVE_PER_ORG"]["aggregation"]
    assert [a.status_code for a in answers] == [202] * limit + [429] * (12 - limit)
    refused = answers[-1]
    error = refused.get_json()["error"]
    assert error["code"] == "too_many_active_jobs"
    assert error["details"] == {"kind": "aggregation", "limit": limit, "active": limit, "retry_after": 10}
    assert refused.headers["Retry-After"] == "10"
    assert _jobs(db_session, tenant.org_id, "aggregation") == limit


@pytest.mark.parametrize(
    ("kind", "call"),
    [
        (
            "snapshot",
            lambda t: t.admin.post(
                "/api/v1/analytics/snapshots", json={"type": "daily", "date": "2026-03-01"}
            ),
        ),
        ("cache_refresh", lambda t: t.admin.post("/api/v1/analytics/refresh-cache")),
        ("import", lambda t: t.agent.post("/api/v1/tickets/import", json=[{"subject": "one"}])),
    ],
)
def test_every_kind_has_its_cap_and_identical_jobs_are_still_answered(
    make_tenant, app, db_session, kind, call
):
    tenant, other = make_tenant("Busy"), make_tenant("Other")
    limit = app.config["JOB_MAX_ACTIVE_PER_ORG"][kind]
    _busy(db_session, tenant.org_id, kind, limit)
    refused = call(tenant)
    assert refused.status_code == 429, refused.get_json()
    assert refused.get_json()["error"]["details"]["kind"] == kind
    assert _jobs(db_session, tenant.org_id, kind) == limit
    assert call(other).status_code == 202  # per organization


def test_a_full_organizations_import_is_refused_before_its_body_is_read(
    make_tenant, app, db_session, monkeypatch
):
    """At the cap, an import is a 429 from one count: its rows are neither parsed nor checked (a 10,000-row
    import was parsed and validated for 0.6 to 0.9 s first, and one with a bad row answered 400)."""
    from webapp.tickets import imports

    tenant = make_tenant("Full")
    _busy(db_session, tenant.org_id, "import", app.config["JOB_MAX_ACTIVE_PER_ORG"]["import"])

    def checked(*args, **kwargs):
        raise AssertionError("the rows were checked")

    monkeypatch.setattr(imports, "check_rows", checked)
    refused = tenant.agent.post("/api/v1/tickets/import", json=[{"subject": "one", "priority": "whenever"}])
    assert refused.status_code == 429, refused.get_json()
    assert refused.headers["Retry-After"]
    assert refused.get_json()["error"]["code"] == "too_many_active_jobs"


def test_an_identical_active_job_is_answered_at_the_cap(make_tenant, app, db_session):
    tenant = make_tenant()
    body = {"metrics": ["response_time"], "async": True}
    first = tenant.viewer.post(AGG, json=body)
    _busy(db_session, tenant.org_id, "aggregation", app.config["JOB_MAX_ACTIVE_PER_ORG"]["aggregation"] - 1)
    again = tenant.viewer.post(AGG, json=body)
    assert again.status_code == 202
    assert again.get_json()["job_id"] == first.get_json()["job_id"]


def test_jobs_added_while_others_are_active_wait_in_the_overflow_queue(make_tenant, queues):
    tenant = make_tenant()
    first = tenant.admin.post("/api/v1/analytics/snapshots", json={"type": "daily", "date": "2026-03-01"})
    second = tenant.admin.post("/api/v1/analytics/snapshots", json={"type": "daily", "date": "2026-03-02"})
    assert first.status_code == second.status_code == 202
    waiting = {queue: b"".join(queues.lrange(queue, 0, -1)) for queue in ("default", OVERFLOW_QUEUE)}
    assert first.get_json()["job_id"].encode() in waiting["default"] + waiting[OVERFLOW_QUEUE]
    assert second.get_json()["job_id"].encode() in waiting[OVERFLOW_QUEUE]


def _queued(db_session, org_id: int, count: int) -> list[uuid.UUID]:
    """`count` queued jobs, oldest first: a millisecond apart (one transaction's now() would tie them,
    and the oldest of a tie is whichever row the scan meets first)."""
    ids = [uuid.uuid4() for _ in range(count)]
    base = datetime.now(UTC) - timedelta(seconds=1)
    db_session.add_all(
        Job(
            id=key,
            org_id=org_id,
            kind="snapshot",
            params={},
            params_hash=f"q-{key}",
            state="queued",
            created_at=base + timedelta(milliseconds=i),
            updated_at=base + timedelta(milliseconds=i),
        )
        for i, key in enumerate(ids)
    )
    db_session.commit()
    return ids


def _claim(conn, job_id: uuid.UUID, slots: int) -> claim.Claim:
    return claim.claim(conn, job_id, lock_key=recovery.run_lock_key(job_id), slots=slots, max_attempts=3)


def _row(db_session, job_id: uuid.UUID) -> Job:
    db_session.expire_all()
    return db_session.get(Job, job_id)


def _free_slots(conn, org_id: int, slots: int) -> list[int]:
    """The slots nobody else holds (taken and given back at once, outside the code under test)."""
    free = []
    for slot in range(slots):
        if conn.execute(text("SELECT pg_try_advisory_lock(:o, :k)"), {"o": org_id, "k": -1 - slot}).scalar():
            conn.execute(text("SELECT pg_advisory_unlock(:o, :k)"), {"o": org_id, "k": -1 - slot})
            free.append(slot)
    return free


def test_an_organizations_running_share_is_held_as_slots(make_live_tenant, db_engine):
    """Workers' connections: with a share of 1 the second queued job of one organization waits (nothing
    held, its wait written) until the first gives its slot back; another organization's finds its
    own; a delivery without the run lock keeps no slot; a connection that ends gives its slots back."""
    first_org, second_org = make_live_tenant().org_id, make_live_tenant().org_id
    db_session = Session(db_engine)  # committed rows: the workers' connections see them
    a1, a2, a3 = _queued(db_session, first_org, 3)
    (b1,) = _queued(db_session, second_org, 1)
    autocommit = {"isolation_level": "AUTOCOMMIT"}
    with (
        db_engine.connect().execution_options(**autocommit) as first,
        db_engine.connect().execution_options(**autocommit) as second,
        db_engine.connect().execution_options(**autocommit) as third,
    ):
        one = _claim(first, a1, 1)
        assert (one.held, one.waits, one.org_id, one.slot) == (True, False, first_org, 0)
        assert one.started is not None
        assert (one.started.state, one.started.attempts) == ("running", 1)
        assert _row(db_session, a1).state == "running"

        waited_since = _row(db_session, a2).updated_at
        waiting = _claim(second, a2, 1)
        assert (waiting.held, waiting.waits, waiting.slot, waiting.started) == (False, True, None, None)
        row = _row(db_session, a2)
        assert (row.state, row.attempts) == ("queued", 0)
        assert row.updated_at > waited_since
        assert _free_slots(third, first_org, 2) == [1]  # the waiting delivery holds nothing

        other = _claim(second, b1, 1)
        assert (other.held, other.slot) == (True, 0)
        assert other.started is not None
        claim.release(second, other, recovery.run_lock_key(b1))
        assert _free_slots(third, second_org, 1) == [0]

        two = _claim(second, a2, 2)
        assert (two.held, two.slot) == (True, 1)
        assert two.started is not None

        # Another delivery of the running job: the claim decides, no slot is taken.
        again = _claim(third, a1, 3)
        assert (again.held, again.waits, again.slot, again.started) == (False, False, None, None)
        # A queued job whose run lock another delivery holds: the slot it took is given back at once.
        third.execute(text("SELECT pg_advisory_lock(:k)"), {"k": recovery.run_lock_key(a3)})
        with db_engine.connect().execution_options(**autocommit) as fourth:
            blocked = _claim(fourth, a3, 3)
            assert (blocked.held, blocked.waits, blocked.slot, blocked.started) == (False, False, None, None)
            assert _free_slots(fourth, first_org, 3) == [2]
        third.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": recovery.run_lock_key(a3)})

        claim.release(first, one, recovery.run_lock_key(a1))
        claim.release(second, two, recovery.run_lock_key(a2))
        assert _free_slots(third, first_org, 3) == [0, 1, 2]
    # A connection that ends (a dead worker) gives its slot and run lock back.
    (c1,) = _queued(db_session, second_org, 1)
    with db_engine.connect().execution_options(**autocommit) as dying:
        assert _claim(dying, c1, 1).slot == 0
        dying.invalidate()
    with db_engine.connect().execution_options(**autocommit) as later:
        # The server ends the closed connection's backend (and its locks) a moment after the close.
        deadline = time.monotonic() + 10
        while _free_slots(later, second_org, 1) != [0]:
            assert time.monotonic() < deadline, "the dead connection's slot was never given back"
            time.sleep(0.05)
        run_lock = {"k": recovery.run_lock_key(c1)}
        assert later.execute(text("SELECT pg_try_advisory_lock(:k)"), run_lock).scalar()
        later.execute(text("SELECT pg_advisory_unlock(:k)"), run_lock)
    db_session.close()


def test_a_slot_given_back_goes_to_the_oldest_job_that_waits_for_one(make_live_tenant, db_engine):
    """The statement that gives a share slot back names the organization's oldest job whose delivery
    waited for a slot (not one never delivered yet, not one whose cancel was asked for, not another
    organization's); without a slot it names none."""
    org, other_org = make_live_tenant().org_id, make_live_tenant().org_id
    db_session = Session(db_engine)
    running, cancelled, oldest, younger, undelivered = _queued(db_session, org, 5)
    (elsewhere,) = _queued(db_session, other_org, 1)
    autocommit = {"isolation_level": "AUTOCOMMIT"}
    with (
        db_engine.connect().execution_options(**autocommit) as first,
        db_engine.connect().execution_options(**autocommit) as second,
    ):
        taken = _claim(first, running, 1)
        assert taken.slot == 0
        for job_id in (cancelled, oldest, younger):
            assert _claim(second, job_id, 1).waits
        db_session.execute(text("UPDATE jobs SET cancel_requested = true WHERE id = :id"), {"id": cancelled})
        db_session.commit()
        other = _claim(second, elsewhere, 1)
        assert other.slot == 0
        assert claim.release(second, other, recovery.run_lock_key(elsewhere), elsewhere) is None

        handed = claim.release(first, taken, recovery.run_lock_key(running), running)
        assert handed == claim.Waiting(oldest, "snapshot")
        assert _free_slots(second, org, 1) == [0]

        # The next holder of the slot hands it to the next one that waited; the never-delivered
        # job is left to its own message.
        then = _claim(first, oldest, 1)
        assert then.slot == 0
        assert claim.release(first, then, recovery.run_lock_key(oldest), oldest) == claim.Waiting(
            younger, "snapshot"
        )
        assert _row(db_session, undelivered).state == "queued"
        # A claim that held no slot (another delivery of a running job) hands nothing over.
        assert _claim(second, younger, 1).slot == 0
        duplicate = _claim(first, younger, 1)
        assert (duplicate.held, duplicate.slot) == (False, None)
        assert claim.release(first, duplicate, recovery.run_lock_key(younger), younger) is None
    db_session.close()


def test_a_slot_given_back_goes_to_a_users_waiting_job_before_the_platforms_own(make_live_tenant, db_engine):
    """Jobs the platform asks for itself (created_by NULL: beat's snapshots, the snapshots a backfill
    made stale) wait behind the organization's users' jobs: after an import of a year of tickets, a
    user's next job waited 36 s behind the recomputes queued before it, oldest first."""
    tenant = make_live_tenant()
    db_session = Session(db_engine)
    running, older_system, younger_system, users_job = _queued(db_session, tenant.org_id, 4)
    user_id = db_session.scalar(text("SELECT min(id) FROM users WHERE org_id = :o"), {"o": tenant.org_id})
    by_user = {"u": user_id, "id": users_job}
    db_session.execute(text("UPDATE jobs SET created_by = :u WHERE id = :id"), by_user)
    db_session.commit()
    autocommit = {"isolation_level": "AUTOCOMMIT"}
    with (
        db_engine.connect().execution_options(**autocommit) as first,
        db_engine.connect().execution_options(**autocommit) as second,
    ):
        taken = _claim(first, running, 1)
        for job_id in (older_system, younger_system, users_job):
            assert _claim(second, job_id, 1).waits
        assert claim.release(first, taken, recovery.run_lock_key(running), running) == claim.Waiting(
            users_job, "snapshot"
        )
        # Then the platform's own, oldest first.
        then = _claim(first, users_job, 1)
        assert then.slot == 0
        assert claim.release(first, then, recovery.run_lock_key(users_job), users_job) == claim.Waiting(
            older_system, "snapshot"
        )
    db_session.close()


class _Task:
    """A job task's stand-in for workers.runner.run_job: its delivery's headers, and what it sends."""

    name = JOB_ROUTES["snapshot"].name

    def __init__(self, **headers: object) -> None:
        self.request = Context(headers)
        self.app = self
        self.sent: list[dict[str, object]] = []

    def send_task(self, name: str, **options: object) -> None:
        assert name == self.name
        self.sent.append(options)


def test_a_deferred_delivery_that_is_due_takes_its_turn_in_the_queues(
    make_live_tenant, db_engine, live_app, monkeypatch, services
):
    """A delivery that found its organization's slots held is deferred (a countdown, marked); when due
    it claims nothing and runs nothing, even with a slot free: it sends the job again to the overflow
    queue at once. (Celery runs a due countdown from the worker's memory, ahead of every message in
    the queues: claiming there, an organization's many deferred jobs took each slot that came free.)"""
    # The workers package builds its app from the environment as it is imported: a worker's.
    monkeypatch.setattr(os, "environ", process_env(services))
    from workers import claiming, runner

    monkeypatch.setitem(live_app.config, "JOB_MAX_RUNNING_PER_ORG", 1)
    org = make_live_tenant().org_id
    db_session = Session(db_engine)
    (job_id,) = _queued(db_session, org, 1)
    ran: list[object] = []
    with live_app.app_context():
        # Every slot held: the delivery waits, deferred and marked.
        with db_engine.connect() as holder:
            holder.execute(text("SELECT pg_advisory_lock(:o, -1)"), {"o": org})
            waiting = _Task()
            runner.run_job(waiting, str(job_id), ran.append)
            holder.execute(text("SELECT pg_advisory_unlock_all()"))
            holder.rollback()
        assert [(o["queue"], o["countdown"], o["headers"]) for o in waiting.sent] == [
            (OVERFLOW_QUEUE, claiming.FAIR_SHARE_DEFER_SECONDS, {claiming.DEFERRED_HEADER: True})
        ]
        # Due, with the slot free: sent again at once, unmarked; the job is still queued, unclaimed.
        due = _Task(**{claiming.DEFERRED_HEADER: True})
        runner.run_job(due, str(job_id), ran.append)
        assert ran == []
        assert [(o["queue"], o.get("countdown"), o.get("headers")) for o in due.sent] == [
            (OVERFLOW_QUEUE, None, None)
        ]
        row = _row(db_session, job_id)
        assert (row.state, row.attempts) == ("queued", 0)
        with db_engine.connect() as conn:
            assert _free_slots(conn, org, 1) == [0]
        # The delivery sent again claims and runs the job.
        runner.run_job(_Task(), str(job_id), lambda ctx: ran.append(ctx.job.id) or {})
        assert ran == [job_id]
        assert _row(db_session, job_id).state == "succeeded"
    db_session.close()


def test_a_delivery_whose_state_connection_is_lost_sends_the_job_again_shortly(
    make_live_tenant, db_engine, live_app, monkeypatch, services
):
    """The server ends the connection holding the run lock while the work runs, and the work fails: the
    delivery can record neither the failure nor a retry. It sends the job again after a short
    countdown (a new delivery claims it, an attempt more) instead of leaving it running, held by
    nobody, until beat's lost-job sweep a minute on."""
    monkeypatch.setattr(os, "environ", process_env(services))
    from sqlalchemy.exc import PendingRollbackError

    from workers import claiming, runner

    org = make_live_tenant().org_id
    db_session = Session(db_engine)
    (job_id,) = _queued(db_session, org, 1)

    def work(ctx: object) -> None:
        state = ctx._state_session.connection()  # type: ignore[attr-defined]
        pid = state.execute(text("SELECT pg_backend_pid()")).scalar()
        with db_engine.connect() as other:
            assert other.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid}).scalar()
            other.commit()
        raise PendingRollbackError("the work's session could not go on", None)

    with live_app.app_context():
        task = _Task()
        runner.run_job(task, str(job_id), work)
    assert [(o["queue"], o["countdown"]) for o in task.sent] == [
        (OVERFLOW_QUEUE, claiming.STATE_LOST_RETRY_SECONDS)
    ]
    row = _row(db_session, job_id)
    assert (row.state, row.attempts) == ("running", 1)  # the next delivery's claim takes it from here
    with live_app.app_context():
        runner.run_job(_Task(), str(job_id), lambda ctx: {})
    row = _row(db_session, job_id)
    assert (row.state, row.attempts) == ("succeeded", 2)
    db_session.close()


def test_only_a_lost_connection_sends_a_job_again(monkeypatch, services):
    """A connection found gone, or a reconnect that failed while handling that, is lost; a statement's
    own failure on a live connection (a deadlock) or a session left to roll back is not."""
    monkeypatch.setattr(os, "environ", process_env(services))
    from sqlalchemy import exc as sa_exc

    from workers import claiming

    gone = sa_exc.OperationalError(
        "UPDATE jobs", {}, Exception("terminating connection"), connection_invalidated=True
    )
    deadlock = sa_exc.OperationalError("UPDATE jobs", {}, Exception("deadlock detected"))
    assert claiming.connection_lost(gone)
    assert not claiming.connection_lost(deadlock)
    assert not claiming.connection_lost(sa_exc.PendingRollbackError("rollback first"))
    # A reconnect that failed while the lost connection's error was being handled: that one is its context.
    failed_reconnect = sa_exc.OperationalError("reconnect", {}, Exception("connection refused"))
    failed_reconnect.__context__ = gone
    assert claiming.connection_lost(failed_reconnect)
