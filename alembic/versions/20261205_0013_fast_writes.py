"""job_submit: a job's submission in one statement

job_submit(...) takes the transaction-scoped advisory lock that makes identical submissions one at a
time, looks for an identical job still active (or, for imports, one that succeeded since a given
instant), checks the organization's cap of active jobs of the kind (raising 'job cap reached' with
the active count as its detail), and inserts the new one when there is none: the job that answers the submission, in one
round trip. It is PL/pgSQL because each of its statements takes a fresh snapshot after the lock
(one SQL statement would look for the duplicate in a snapshot taken before it waited for the lock).
The states that count as active are passed in, so the vocabulary stays in one place.

Revision ID: 0013_fast_writes
Revises: 0012_business_rollups
Create Date: 2026-12-05 03:00:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0013_fast_writes"
down_revision: str | None = "0012_business_rollups"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JOB_SUBMIT = """
CREATE FUNCTION job_submit(
    p_id uuid,
    p_org_id integer,
    p_created_by integer,
    p_kind text,
    p_params jsonb,
    p_params_hash text,
    p_lock_key integer,
    p_active_states text[],
    p_dedup boolean,
    p_succeeded_since timestamptz,
    p_cap integer,
    p_cap_lock_key integer
) RETURNS SETOF jobs
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    v_active bigint;
BEGIN
    PERFORM pg_advisory_xact_lock(p_org_id, p_lock_key);
    IF p_dedup THEN
        RETURN QUERY
            SELECT * FROM jobs
            WHERE org_id = p_org_id AND kind = p_kind AND params_hash = p_params_hash
              AND (state = ANY (p_active_states)
                   OR (p_succeeded_since IS NOT NULL AND state = 'succeeded'
                       AND finished_at >= p_succeeded_since))
            ORDER BY created_at
            LIMIT 1;
        IF FOUND THEN
            RETURN;
        END IF;
    END IF;
    IF p_cap IS NOT NULL THEN
        -- Checks of one organization's cap for one kind go one at a time until the transaction ends.
        PERFORM pg_advisory_xact_lock(p_org_id, p_cap_lock_key);
        SELECT count(*) INTO v_active FROM jobs
        WHERE org_id = p_org_id AND kind = p_kind AND state = ANY (p_active_states);
        IF v_active >= p_cap THEN
            RAISE EXCEPTION 'job cap reached' USING DETAIL = v_active::text;
        END IF;
    END IF;
    RETURN QUERY
        INSERT INTO jobs (id, org_id, created_by, kind, params, params_hash, state, progress, attempts,
                          cancel_requested)
        VALUES (p_id, p_org_id, p_created_by, p_kind, p_params, p_params_hash, 'queued', 0, 0, false)
        RETURNING *;
END
$$
"""


def upgrade() -> None:
    op.execute(JOB_SUBMIT)


def downgrade() -> None:
    op.execute(
        "DROP FUNCTION job_submit(uuid, integer, integer, text, jsonb, text, integer, text[], boolean, "
        "timestamptz, integer, integer)"
    )
