-- 0010: table content digests (issue 16, docs/hash-spec.md "Table digest").
-- A table's digest is computed from its manifest's rows (BLAKE3 over the
-- row hashes in table order) the first time a client asks for it, and
-- remembered here by manifest id: a cache (recomputable, not backed up).
CREATE TABLE table_digest (
    manifest_id text PRIMARY KEY,
    digest      text NOT NULL,
    row_count   bigint NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);
