-- 0017: versions whose rows an import matched exhaustively against the
-- version it replaced (issue 19, docs/decisions/0041). A row says: of the two
-- manifests' rows, those that are not the same stored row on both sides share
-- no row hash, so a compare of the two versions need not read row hashes to
-- match them (features/compare/align.py, rule 2). Written by the import that
-- made the head manifest, for its dataset only (an import's child is not
-- trusted to speak for other datasets' versions); a cache: losing it costs a
-- compare its speed, not its answer (not backed up).
CREATE TABLE disjoint_rows (
    dataset_id       uuid NOT NULL,
    base_manifest_id text NOT NULL,
    head_manifest_id text NOT NULL,
    created_at       timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT disjoint_rows_pkey PRIMARY KEY (dataset_id, base_manifest_id, head_manifest_id),
    CONSTRAINT disjoint_rows_dataset_fkey FOREIGN KEY (dataset_id)
        REFERENCES dataset (id) ON DELETE CASCADE
);
