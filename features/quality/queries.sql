-- name: get_config
SELECT rules, threshold, gate_branches, digest, updated_at
FROM quality_config WHERE dataset_id = %(dataset_id)s;

-- name: put_config
INSERT INTO quality_config (dataset_id, rules, threshold, gate_branches, digest, updated_by)
VALUES (%(dataset_id)s, %(rules)s, %(threshold)s, %(gate_branches)s, %(digest)s, %(updated_by)s)
ON CONFLICT (dataset_id) DO UPDATE
SET rules = EXCLUDED.rules, threshold = EXCLUDED.threshold,
    gate_branches = EXCLUDED.gate_branches, digest = EXCLUDED.digest,
    updated_by = EXCLUDED.updated_by, updated_at = now()
RETURNING rules, threshold, gate_branches, digest, updated_at;

-- name: get_results
SELECT commit_id, report FROM quality_result
WHERE dataset_id = %(dataset_id)s AND digest = %(digest)s AND commit_id = ANY(%(commit_ids)s);

-- name: put_result
INSERT INTO quality_result (dataset_id, commit_id, digest, report)
VALUES (%(dataset_id)s, %(commit_id)s, %(digest)s, %(report)s)
ON CONFLICT (dataset_id, commit_id, digest) DO NOTHING;
