-- name: insert_commit
-- Mirror a commit object; re-inserting the same id is a no-op (idempotent imports).
INSERT INTO commit (dataset_id, id, parents, author, message, created_at, tables, provenance,
                    row_count, table_count, depth)
VALUES (%(dataset_id)s, %(id)s, %(parents)s, %(author)s, %(message)s, %(created_at)s,
        %(tables)s, %(provenance)s, %(row_count)s, %(table_count)s, %(depth)s)
ON CONFLICT ON CONSTRAINT commit_pkey DO NOTHING;

-- name: depth_of
SELECT depth FROM commit WHERE dataset_id = %(dataset_id)s AND id = %(id)s;

-- name: get_commit
SELECT id, parents, author, message, created_at, tables, provenance, row_count, table_count, depth
FROM commit WHERE dataset_id = %(dataset_id)s AND id = %(id)s;

-- name: by_prefix
-- Commits whose id starts with a hex prefix (at most 2: enough to tell unique from ambiguous).
SELECT id FROM commit
WHERE dataset_id = %(dataset_id)s AND id LIKE %(prefix)s || '%%'
ORDER BY id LIMIT 2;

-- name: first_parent_history
-- The first-parent chain from a head, newest first, one page of it.
WITH RECURSIVE chain AS (
    SELECT c.*, 0 AS n FROM commit c WHERE c.dataset_id = %(dataset_id)s AND c.id = %(head)s
  UNION ALL
    SELECT c.*, chain.n + 1 FROM chain
    JOIN commit c ON c.dataset_id = chain.dataset_id AND c.id = chain.parents[1]
    WHERE chain.n < %(stop)s
)
SELECT id, parents, author, message, created_at, row_count, table_count
FROM chain ORDER BY n OFFSET %(offset)s LIMIT %(limit)s;
