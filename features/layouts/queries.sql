-- name: get
-- A manifest's read copy, if one is recorded (built or asked for); stale: a
-- build asked for stale_s seconds ago or more and not done.
SELECT manifest_id, state, row_count, object_prefix, part_rows, digest, bytes,
       state = 'building' AND requested_at < now() - make_interval(secs => %(stale_s)s) AS stale
FROM layout WHERE manifest_id = %(manifest_id)s;

-- name: request
-- Ask for a read copy: a new row in state 'building', or a request that has
-- waited longer than stale_s asked again. Returns a row only then, so one
-- caller enqueues the build.
INSERT INTO layout (manifest_id, schema_id, row_count)
VALUES (%(manifest_id)s, %(schema_id)s, %(row_count)s)
ON CONFLICT ON CONSTRAINT layout_pkey DO UPDATE SET requested_at = now()
    WHERE layout.state = 'building'
      AND layout.requested_at < now() - make_interval(secs => %(stale_s)s)
RETURNING manifest_id;

-- name: ready_among
-- Which of these manifests have a read copy.
SELECT manifest_id FROM layout WHERE manifest_id = ANY(%(ids)s) AND state = 'ready';

-- name: claim
-- A build starts: the copy asked for, still to be built; its schema. (Not
-- locked: a build takes seconds to minutes, and two builds of one copy
-- write the same object.)
UPDATE layout SET requested_at = now()
WHERE manifest_id = %(manifest_id)s AND state = 'building'
RETURNING schema_id;

-- name: built
-- The read copy is stored: ready to read (unless forgotten meanwhile, or
-- another build got there first: then this one's parts are garbage).
UPDATE layout SET state = 'ready', object_prefix = %(object_prefix)s, part_rows = %(part_rows)s,
    digest = %(digest)s, bytes = %(bytes)s, built_at = now(), used_at = now()
WHERE manifest_id = %(manifest_id)s AND state = 'building'
RETURNING manifest_id;

-- name: touch
-- A read of the copy (recorded at most once a minute: eviction is by last use).
UPDATE layout SET used_at = now()
WHERE manifest_id = %(manifest_id)s AND used_at < now() - interval '1 minute';

-- name: forget
-- The read copy is gone (evicted, or failed its check).
DELETE FROM layout WHERE manifest_id = %(manifest_id)s AND state = 'ready';

-- name: total_bytes
-- What the read copies take in the object store.
SELECT coalesce(sum(bytes), 0)::bigint AS total FROM layout WHERE state = 'ready';

-- name: least_used
-- Read copies not read for grace_s seconds, least recently read first.
SELECT manifest_id, row_count, object_prefix, part_rows, digest, bytes FROM layout
WHERE state = 'ready' AND used_at < now() - make_interval(secs => %(grace_s)s)
ORDER BY used_at, manifest_id;

-- name: superseded
-- Read copies of versions no ref points at any more (no branch or tag head
-- has the manifest among its tables) and not read for grace_s seconds.
SELECT l.manifest_id, l.row_count, l.object_prefix, l.part_rows, l.digest, l.bytes
FROM layout l
WHERE l.state = 'ready' AND l.used_at < now() - make_interval(secs => %(grace_s)s)
  AND NOT EXISTS (
      SELECT 1
      FROM ref r
      JOIN commit c ON c.dataset_id = r.dataset_id AND c.id = r.commit_id
      CROSS JOIN LATERAL jsonb_each(c.tables) AS t(name, entry)
      WHERE t.entry ->> 'manifest' = l.manifest_id
  )
ORDER BY l.used_at, l.manifest_id;

-- name: in_use
-- Every recorded copy (built or being built): what garbage collection keeps.
SELECT manifest_id, state, object_prefix FROM layout;
