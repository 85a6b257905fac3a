-- name: insert_commit
-- Mirror a commit object; re-inserting the same id is a no-op (idempotent imports).
-- Returns nothing when the commit was already there.
INSERT INTO commit (dataset_id, id, parents, author, message, created_at, tables, provenance,
                    row_count, table_count, depth, generation, chain, chain_pos)
VALUES (%(dataset_id)s, %(id)s, %(parents)s, %(author)s, %(message)s, %(created_at)s,
        %(tables)s, %(provenance)s, %(row_count)s, %(table_count)s, %(depth)s,
        %(generation)s, %(chain)s, %(chain_pos)s)
ON CONFLICT ON CONSTRAINT commit_pkey DO NOTHING
RETURNING id;

-- name: insert_links
-- The parent edges of a new commit that leave its chain (see graph.py).
INSERT INTO commit_link (dataset_id, chain, chain_pos, parent_index, parent_chain, parent_pos,
                         parent_generation)
SELECT %(dataset_id)s, %(chain)s, %(chain_pos)s, l.parent_index, l.parent_chain, l.parent_pos,
       l.parent_generation
FROM unnest(%(parent_index)s::integer[], %(parent_chain)s::bigint[], %(parent_pos)s::integer[],
            %(parent_generation)s::integer[])
     AS l (parent_index, parent_chain, parent_pos, parent_generation);

-- name: new_chain
SELECT nextval('commit_chain_seq') AS chain;

-- name: points
-- Where commits sit in the graph; ``tip``: nothing continues the commit's chain yet.
SELECT c.id, c.chain, c.chain_pos, c.generation, c.depth,
       NOT EXISTS (SELECT 1 FROM commit n
                   WHERE n.dataset_id = c.dataset_id AND n.chain = c.chain
                     AND n.chain_pos = c.chain_pos + 1) AS tip
FROM commit c WHERE c.dataset_id = %(dataset_id)s AND c.id = ANY (%(ids)s);

-- name: links
-- Every link of a dataset's graph: one per branch start and per extra merge parent.
SELECT chain, chain_pos, parent_index, parent_chain, parent_pos, parent_generation
FROM commit_link WHERE dataset_id = %(dataset_id)s;

-- name: depth_of
SELECT depth FROM commit WHERE dataset_id = %(dataset_id)s AND id = %(id)s;

-- name: get_commit
SELECT id, parents, author, message, created_at, tables, provenance, row_count, table_count, depth,
       generation
FROM commit WHERE dataset_id = %(dataset_id)s AND id = %(id)s;

-- name: by_prefix
-- Commits whose id starts with a hex prefix (at most 2: enough to tell unique from ambiguous).
SELECT id FROM commit
WHERE dataset_id = %(dataset_id)s AND id LIKE %(prefix)s || '%%'
ORDER BY id LIMIT 2;

-- name: first_parent_page
-- A page of first-parent history: the given chain segments, newest first.
SELECT c.id, c.parents, c.author, c.message, c.created_at, c.row_count, c.table_count
FROM unnest(%(chains)s::bigint[], %(lo)s::integer[], %(hi)s::integer[]) AS s (chain, lo, hi)
JOIN commit c ON c.dataset_id = %(dataset_id)s AND c.chain = s.chain
             AND c.chain_pos BETWEEN s.lo AND s.hi
ORDER BY c.depth DESC;

-- name: graph_page
-- A page of whole-graph history: the ancestors are, per chain, the commits up
-- to a generation; those at or above ``floor`` hold the page. Newest first in
-- topological order (generation), ties by time, then id. Ranked from the
-- index (commit_chain_generation_idx), then the page's rows are read.
WITH page AS (
    SELECT c.id, c.generation, c.created_at
    FROM unnest(%(chains)s::bigint[], %(top)s::integer[]) AS r (chain, top)
    JOIN commit c ON c.dataset_id = %(dataset_id)s AND c.chain = r.chain
                 AND c.generation BETWEEN %(floor)s AND r.top
    ORDER BY c.generation DESC, c.created_at DESC, c.id
    OFFSET %(offset)s LIMIT %(limit)s
)
SELECT c.id, c.parents, c.author, c.message, c.created_at, c.row_count, c.table_count
FROM page JOIN commit c ON c.dataset_id = %(dataset_id)s AND c.id = page.id
ORDER BY page.generation DESC, page.created_at DESC, page.id;

-- name: graph_page_from_root
-- The same page counted from the other end, for deep pages: the ``limit``
-- oldest ancestors after skipping ``offset`` of them, oldest first (the exact
-- reverse order); those at or below ``ceiling`` hold them.
WITH page AS (
    SELECT c.id, c.generation, c.created_at
    FROM unnest(%(chains)s::bigint[], %(top)s::integer[]) AS r (chain, top)
    JOIN commit c ON c.dataset_id = %(dataset_id)s AND c.chain = r.chain
                 AND c.generation <= least(r.top, %(ceiling)s)
    ORDER BY c.generation, c.created_at, c.id DESC
    OFFSET %(offset)s LIMIT %(limit)s
)
SELECT c.id, c.parents, c.author, c.message, c.created_at, c.row_count, c.table_count
FROM page JOIN commit c ON c.dataset_id = %(dataset_id)s AND c.id = page.id
ORDER BY page.generation, page.created_at, page.id DESC;

-- name: at_points
-- The commits at given (chain, position) points, newest first (ties by id).
SELECT c.id FROM unnest(%(chains)s::bigint[], %(pos)s::integer[]) AS p (chain, pos)
JOIN commit c ON c.dataset_id = %(dataset_id)s AND c.chain = p.chain AND c.chain_pos = p.pos
ORDER BY c.generation DESC, c.created_at DESC, c.id;

-- name: every_commit
-- every commit row of a dataset, parents first (a check of what is stored)
SELECT id, parents, tables, row_count FROM commit WHERE dataset_id = %(dataset_id)s
ORDER BY generation, id

-- name: prune
-- Unreachable commits go (their links with them); a ref still at one makes it fail.
DELETE FROM commit WHERE dataset_id = %(dataset_id)s AND id = ANY (%(ids)s);

-- name: recorded_objects
-- Which of these objects the dataset's storage accounting has already.
SELECT key FROM dataset_object WHERE dataset_id = %(dataset_id)s AND key = ANY (%(keys)s);

-- name: add_objects
INSERT INTO dataset_object (dataset_id, key, bytes)
SELECT %(dataset_id)s, k, b FROM unnest(%(keys)s::text[], %(bytes)s::bigint[]) AS t (k, b)
ON CONFLICT ON CONSTRAINT dataset_object_pkey DO UPDATE SET bytes = EXCLUDED.bytes;

-- name: drop_objects_but
-- gc: the dataset's objects are exactly these now (rows added since gc
-- read the dataset's commits stay: commits that landed meanwhile).
DELETE FROM dataset_object
WHERE dataset_id = %(dataset_id)s AND NOT (key = ANY (%(keys)s)) AND added_at < %(before)s;

-- name: storage
-- The bytes a dataset's commits reference, and those no other dataset does.
SELECT coalesce(sum(o.bytes), 0) AS bytes,
       coalesce(sum(o.bytes) FILTER (WHERE NOT EXISTS (
           SELECT 1 FROM dataset_object x WHERE x.key = o.key AND x.dataset_id <> o.dataset_id
       )), 0) AS unique_bytes
FROM dataset_object o WHERE o.dataset_id = %(dataset_id)s;
