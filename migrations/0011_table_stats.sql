-- 0011: column statistics of table versions (issue 17, features/stats).
-- Computed from a version's rows after a branch moves to it (the worker's
-- stats.follow task) or at the first request, and remembered by manifest
-- and schema (the same rows read as other types give other statistics):
-- a cache, recomputable, not backed up.
CREATE TABLE table_stats (
    manifest_id text NOT NULL,
    schema_id   text NOT NULL,
    version     integer NOT NULL,
    stats       jsonb NOT NULL,
    seconds     double precision NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (manifest_id, schema_id)
);
