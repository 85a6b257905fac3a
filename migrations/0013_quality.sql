-- 0013: quality gates (issue 17, features/quality). A dataset's rules,
-- threshold and gated branches; and each commit's report under a version
-- of the rules (digest: BLAKE3 of the rules and threshold), computed once
-- (a cache: recomputable, not backed up).
CREATE TABLE quality_config (
    dataset_id    uuid PRIMARY KEY REFERENCES dataset(id) ON DELETE CASCADE,
    rules         jsonb NOT NULL,
    threshold     double precision NOT NULL,
    gate_branches text[] NOT NULL,
    digest        text NOT NULL,
    updated_by    text,
    updated_at    timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE quality_result (
    dataset_id uuid NOT NULL REFERENCES dataset(id) ON DELETE CASCADE,
    commit_id  text NOT NULL,
    digest     text NOT NULL,
    report     jsonb NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (dataset_id, commit_id, digest)
);
