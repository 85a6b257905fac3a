-- name: get_digest
SELECT digest FROM table_digest WHERE manifest_id = %(manifest_id)s;

-- name: put_digest
INSERT INTO table_digest (manifest_id, digest, row_count)
VALUES (%(manifest_id)s, %(digest)s, %(row_count)s)
ON CONFLICT (manifest_id) DO NOTHING;
