-- name: remember_disjoint
-- An import matched head's rows exhaustively against base's (decision 0041).
INSERT INTO disjoint_rows (dataset_id, base_manifest_id, head_manifest_id)
VALUES (%(dataset_id)s, %(base)s, %(head)s)
ON CONFLICT ON CONSTRAINT disjoint_rows_pkey DO NOTHING;

-- name: disjoint
-- Whether, in this dataset, the rows two manifests do not share as stored
-- rows are known to share no row hash.
SELECT EXISTS (
    SELECT 1 FROM disjoint_rows
    WHERE dataset_id = %(dataset_id)s
      AND ((base_manifest_id = %(a)s AND head_manifest_id = %(b)s)
        OR (base_manifest_id = %(b)s AND head_manifest_id = %(a)s))
) AS known;
