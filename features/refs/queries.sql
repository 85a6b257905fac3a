-- name: insert_ref
-- A new branch or tag, and its creation in the reflog.
WITH created AS (
    INSERT INTO ref (dataset_id, name, kind, commit_id, message, created_by)
    VALUES (%(dataset_id)s, %(name)s, %(kind)s, %(commit_id)s, %(message)s, %(by)s)
    RETURNING dataset_id, name, kind, commit_id, protected, message, created_by, created_at,
              updated_at
), logged AS (
    INSERT INTO ref_log (dataset_id, ref_name, kind, action, new_commit_id, actor, reason)
    SELECT dataset_id, name, kind, 'create', commit_id, %(by)s, %(reason)s FROM created
)
SELECT name, kind, commit_id, protected, message, created_by, created_at, updated_at FROM created;

-- name: get_ref
SELECT name, kind, commit_id, protected, message, created_by, created_at, updated_at FROM ref
WHERE dataset_id = %(dataset_id)s AND name = %(name)s;

-- name: lock_ref
-- The ref, locked until the transaction ends (checks, then a change).
SELECT name, kind, commit_id, protected, message, created_by, created_at, updated_at FROM ref
WHERE dataset_id = %(dataset_id)s AND name = %(name)s
FOR UPDATE;

-- name: list_refs
SELECT name, kind, commit_id, protected, message, created_by, created_at, updated_at FROM ref
WHERE dataset_id = %(dataset_id)s ORDER BY kind, name;

-- name: cas_move
-- Compare-and-swap: move a branch only if it still points at the expected
-- commit, and log the move (a move to where it already is is not logged).
WITH moved AS (
    UPDATE ref SET commit_id = %(new)s, updated_at = now()
    WHERE dataset_id = %(dataset_id)s AND name = %(name)s AND kind = 'branch'
      AND commit_id = %(expected)s
    RETURNING dataset_id, name
), logged AS (
    INSERT INTO ref_log (dataset_id, ref_name, kind, action, old_commit_id, new_commit_id, actor,
                         reason)
    SELECT dataset_id, name, 'branch', 'move', %(expected)s, %(new)s, %(by)s, %(reason)s
    FROM moved WHERE %(new)s <> %(expected)s
)
SELECT count(*) AS n FROM moved;

-- name: set_protected
-- Protect or unprotect a branch and log the change.
WITH changed AS (
    UPDATE ref SET protected = %(protected)s, updated_at = now()
    WHERE dataset_id = %(dataset_id)s AND name = %(name)s AND kind = 'branch'
      AND protected <> %(protected)s
    RETURNING dataset_id, name, commit_id
)
INSERT INTO ref_log (dataset_id, ref_name, kind, action, old_commit_id, new_commit_id, actor,
                     reason)
SELECT dataset_id, name, 'branch', CASE WHEN %(protected)s THEN 'protect' ELSE 'unprotect' END,
       commit_id, commit_id, %(by)s, %(reason)s
FROM changed;

-- name: delete_ref
-- Delete a ref and log where it was.
WITH gone AS (
    DELETE FROM ref WHERE dataset_id = %(dataset_id)s AND name = %(name)s AND kind = %(kind)s
    RETURNING dataset_id, name, kind, commit_id
)
INSERT INTO ref_log (dataset_id, ref_name, kind, action, old_commit_id, actor, reason)
SELECT dataset_id, name, kind, 'delete', commit_id, %(by)s, %(reason)s FROM gone;

-- name: ref_log
-- One page of a ref's log, newest first.
SELECT id, ref_name AS ref, kind, action, old_commit_id, new_commit_id, actor AS by, reason,
       created_at
FROM ref_log WHERE dataset_id = %(dataset_id)s AND ref_name = %(name)s
ORDER BY id DESC OFFSET %(offset)s LIMIT %(limit)s;

-- name: ref_log_count
SELECT count(*) AS n FROM ref_log WHERE dataset_id = %(dataset_id)s AND ref_name = %(name)s;

-- name: retained_commits
-- The commits the reflog of a dataset names since a time (garbage collection keeps them).
SELECT DISTINCT c AS id FROM ref_log,
    LATERAL unnest(ARRAY[old_commit_id, new_commit_id]) AS c
WHERE dataset_id = %(dataset_id)s AND created_at >= %(since)s AND c IS NOT NULL;

-- name: expire_log
-- Reflog entries older than the retention window go.
DELETE FROM ref_log WHERE created_at < %(before)s;

-- name: nth_value
-- The value a ref had n changes ago (0: now); protection changes are not values.
SELECT new_commit_id FROM ref_log
WHERE dataset_id = %(dataset_id)s AND ref_name = %(name)s AND action IN ('create', 'move')
ORDER BY id DESC OFFSET %(n)s LIMIT 1;

-- name: value_at
-- The ref's last change at or before a time (new_commit_id NULL: deleted then).
SELECT new_commit_id FROM ref_log
WHERE dataset_id = %(dataset_id)s AND ref_name = %(name)s
  AND action IN ('create', 'move', 'delete') AND created_at <= %(at)s
ORDER BY id DESC LIMIT 1;
