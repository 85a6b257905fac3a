-- 0016: scheduled URL imports (issue 18, features/schedules). A schedule is
-- a URL import with a cron expression; beat's schedules.tick claims the
-- due ones (FOR UPDATE SKIP LOCKED: several beats never run one twice),
-- makes each run an ordinary import job, and records how its runs ended.
CREATE TABLE schedule (
    id uuid PRIMARY KEY,
    dataset_id uuid NOT NULL REFERENCES dataset (id) ON DELETE CASCADE,
    branch text NOT NULL,
    cron text NOT NULL,
    urls text[] NOT NULL,
    checksum text,
    mode text NOT NULL DEFAULT 'replace',
    options jsonb NOT NULL DEFAULT '{}',
    table_name text,
    message text,  -- a template: {date}, {url}, {schedule}
    paused boolean NOT NULL DEFAULT false,
    paused_reason text,
    failures integer NOT NULL DEFAULT 0,  -- failed runs in a row
    next_run_at timestamptz,
    etag text,  -- the validators of the last download, for a conditional fetch
    last_modified text,
    validated_commit text,  -- the branch's head they matched: sent only while it still is
    created_by uuid REFERENCES app_user (id) ON DELETE SET NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX schedule_dataset_idx ON schedule (dataset_id);
CREATE INDEX schedule_due_idx ON schedule (next_run_at) WHERE NOT paused;

CREATE TABLE schedule_run (
    id uuid PRIMARY KEY,
    schedule_id uuid NOT NULL REFERENCES schedule (id) ON DELETE CASCADE,
    job_id uuid REFERENCES job (id) ON DELETE SET NULL,
    trigger text NOT NULL,  -- cron, catch-up (a run missed while down), manual
    due_at timestamptz NOT NULL,
    started_at timestamptz NOT NULL DEFAULT now(),
    finished_at timestamptz,
    outcome text,  -- null while it runs
    commit_id text,
    bytes bigint,
    problem jsonb,
    CONSTRAINT schedule_run_trigger CHECK (trigger IN ('cron', 'catch-up', 'manual')),
    CONSTRAINT schedule_run_outcome CHECK (
        outcome IS NULL OR outcome IN ('committed', 'unchanged', 'failed', 'skipped')
    )
);
CREATE INDEX schedule_run_schedule_idx ON schedule_run (schedule_id, started_at DESC);
CREATE INDEX schedule_run_open_idx ON schedule_run (schedule_id) WHERE outcome IS NULL;
