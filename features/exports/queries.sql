-- name: record_stored
-- A Parquet export about to be stored (recorded first: an object under
-- exports/ that no row names is garbage once past gc's cutoff).
INSERT INTO stored_export (key, dataset_id, commit_id, bytes)
VALUES (%(key)s, %(dataset_id)s, %(commit_id)s, %(bytes)s)
ON CONFLICT (key) DO UPDATE SET bytes = EXCLUDED.bytes, used_at = now();

-- name: touch_stored
UPDATE stored_export SET used_at = now() WHERE key = %(key)s;

-- name: stored
-- Every stored export, least recently used first.
SELECT key, dataset_id, commit_id, bytes, used_at FROM stored_export ORDER BY used_at, key;

-- name: forget_stored
DELETE FROM stored_export WHERE key = %(key)s;
