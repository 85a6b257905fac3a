-- 0005: garbage collection (issue 14, features/integrity/gc.py, decision 0024).

-- A writer that stores objects before the rows that reference them (a merge,
-- a revert, an upload, a stored export) holds a row here meanwhile: gc keeps
-- every unreferenced object written since the oldest hold began. A hold left
-- by a killed process is ignored (and removed) once older than gc's limit.
CREATE TABLE write_hold (
    id         uuid NOT NULL,
    what       text NOT NULL,
    started_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    CONSTRAINT write_hold_pkey PRIMARY KEY (id)
);

-- Parquet exports stored in the object store (exports/<digest>): whose
-- commit they are, their size, and when last served, so gc keeps them within
-- DSA_EXPORT_CACHE_BYTES (least recently used first) and drops those of
-- commits and datasets that are gone.
CREATE TABLE stored_export (
    key        text NOT NULL,
    dataset_id uuid NOT NULL,
    commit_id  text NOT NULL,
    bytes      bigint NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    used_at    timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT stored_export_pkey PRIMARY KEY (key)
);
CREATE INDEX stored_export_used_idx ON stored_export (used_at);

-- What each dataset's commits reference (commit, schema, manifest and chunk
-- objects) and their sizes: storage accounting (GET /api/v1/datasets/{id}
-- "storage"). Rows are added after each commit lands; gc makes them exact
-- (removes what it pruned, adds what is missing).
CREATE TABLE dataset_object (
    dataset_id uuid NOT NULL REFERENCES dataset (id) ON DELETE CASCADE,
    key        text NOT NULL,
    bytes      bigint NOT NULL,
    added_at   timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT dataset_object_pkey PRIMARY KEY (dataset_id, key)
);
CREATE INDEX dataset_object_key_idx ON dataset_object (key);
