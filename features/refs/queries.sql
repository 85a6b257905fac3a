-- name: insert_ref
INSERT INTO ref (dataset_id, name, kind, commit_id, message, created_by)
VALUES (%(dataset_id)s, %(name)s, %(kind)s, %(commit_id)s, %(message)s, %(by)s)
RETURNING name, kind, commit_id, protected;

-- name: get_ref
SELECT name, kind, commit_id, protected FROM ref
WHERE dataset_id = %(dataset_id)s AND name = %(name)s;

-- name: list_refs
SELECT name, kind, commit_id, protected FROM ref
WHERE dataset_id = %(dataset_id)s ORDER BY kind, name;

-- name: cas_move
-- Compare-and-swap: move a branch only if it still points at the expected commit.
UPDATE ref SET commit_id = %(new)s, updated_at = now()
WHERE dataset_id = %(dataset_id)s AND name = %(name)s AND kind = 'branch'
  AND commit_id = %(expected)s;
