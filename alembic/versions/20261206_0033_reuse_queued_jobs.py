"""identical jobs reused only before they start: a reading job already running is not the answer

job_submit(...) answered a submission with an identical job still queued or running. A running export,
aggregation, snapshot or cache refresh may have read before a write that the client saw acknowledged
(an import that succeeded, say), so a submission after it got an answer without it. Now only a queued
job is reused: it reads when it starts. (Imports are never reused: each send is a write.) The
signature is unchanged.

Revision ID: 0033_reuse_queued_jobs
Revises: 0032_alert_events_bucket_span
Create Date: 2026-12-06 20:00:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0033_reuse_queued_jobs"
down_revision: str | None = "0032_alert_events_bucket_span"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JOB_SUBMIT = """
CREATE OR REPLACE FUNCTION job_submit(
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
              AND (state = 'queued'
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

JOB_SUBMIT_BEFORE = """
CREATE OR REPLACE FUNCTION job_submit(
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
    op.execute(JOB_SUBMIT_BEFORE)
