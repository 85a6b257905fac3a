-- name: get_digests
SELECT manifest_id, digest FROM table_digest WHERE manifest_id = ANY(%(manifest_ids)s);

-- name: put_digest
INSERT INTO table_digest (manifest_id, digest, row_count)
VALUES (%(manifest_id)s, %(digest)s, %(row_count)s)
ON CONFLICT (manifest_id) DO NOTHING;
