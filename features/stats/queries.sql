-- name: get_stats
SELECT stats FROM table_stats
WHERE manifest_id = %(manifest_id)s AND schema_id = %(schema_id)s AND version = %(version)s;

-- name: put_stats
INSERT INTO table_stats (manifest_id, schema_id, version, stats, seconds)
VALUES (%(manifest_id)s, %(schema_id)s, %(version)s, %(stats)s, %(seconds)s)
ON CONFLICT (manifest_id, schema_id) DO UPDATE
SET version = EXCLUDED.version, stats = EXCLUDED.stats, seconds = EXCLUDED.seconds,
    created_at = now()
WHERE table_stats.version <> EXCLUDED.version;
