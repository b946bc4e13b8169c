"""job_claim: a worker's start of a job in one statement

job_claim(...) does on the worker's connection what took three statements on two connections: for a
queued job, takes one of its organization's JOB_MAX_RUNNING_PER_ORG share slots (session advisory
locks (org_id, -1 - i)); then the job's run lock (a session advisory lock on one bigint key); then
starts the job (running, one more attempt) when it is active, no cancel was asked for and attempts
are left. It answers whether the run lock is held, the slot held (none when the job was not queued,
or when the run lock was not free: the slot is then given back at once), whether the job must wait
(every slot held: nothing else taken, the wait written to updated_at so that the lost-job sweep does
not take the job for lost) and the started row. PL/pgSQL, so that each step reads after the lock
before it, and the locks are tried one by one in order.

Revision ID: 0016_job_claim
Revises: 0008_cost_limits
Create Date: 2026-12-05 06:00:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0016_job_claim"
down_revision: str | None = "0008_cost_limits"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JOB_CLAIM = """
CREATE FUNCTION job_claim(
    p_id uuid,
    p_run_lock_key bigint,
    p_slots integer,
    p_now timestamptz,
    p_active_states text[],
    p_max_attempts integer,
    OUT held boolean,
    OUT waits boolean,
    OUT org_id integer,
    OUT slot integer,
    OUT job jobs
)
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    v_state text;
BEGIN
    held := false;
    waits := false;
    SELECT j.org_id, j.state INTO org_id, v_state FROM jobs j WHERE j.id = p_id;
    IF FOUND AND v_state = 'queued' THEN
        FOR i IN 0 .. p_slots - 1 LOOP
            IF pg_try_advisory_lock(org_id, -1 - i) THEN
                slot := i;
                EXIT;
            END IF;
        END LOOP;
        IF slot IS NULL THEN
            waits := true;
            UPDATE jobs j SET updated_at = p_now WHERE j.id = p_id AND j.state = 'queued';
            RETURN;
        END IF;
    END IF;
    held := pg_try_advisory_lock(p_run_lock_key);
    IF NOT held THEN
        IF slot IS NOT NULL THEN
            PERFORM pg_advisory_unlock(org_id, -1 - slot);
            slot := NULL;
        END IF;
        RETURN;
    END IF;
    UPDATE jobs j SET state = 'running', attempts = j.attempts + 1,
                      started_at = coalesce(j.started_at, p_now), updated_at = p_now
    WHERE j.id = p_id AND j.state = ANY (p_active_states) AND NOT j.cancel_requested
      AND j.attempts < p_max_attempts
    RETURNING j.* INTO job;
END
$$
"""


def upgrade() -> None:
    op.execute(JOB_CLAIM)


def downgrade() -> None:
    op.execute("DROP FUNCTION job_claim(uuid, bigint, integer, timestamptz, text[], integer)")
