-- name: insert_dataset
INSERT INTO dataset (id, name, description, primary_key, visibility, created_by, tags, readme)
VALUES (%(id)s, %(name)s, %(description)s, %(primary_key)s, %(visibility)s, %(created_by)s,
        %(tags)s, %(readme)s)
RETURNING id, name, description, primary_key, visibility, default_branch, created_at, updated_at,
          tags, readme;

-- name: dataset_with_role
-- A live dataset and the caller's explicit role on it (NULL when none).
SELECT d.id, d.name, d.description, d.primary_key, d.visibility, d.default_branch,
       d.created_at, d.updated_at, d.tags, d.readme, p.role
FROM dataset d
LEFT JOIN dataset_permission p ON p.dataset_id = d.id AND p.user_id = %(user_id)s
WHERE d.id = %(id)s AND d.deleted_at IS NULL;

-- name: list_visible
-- Live datasets the caller may read, matching q, newest first, with the total.
SELECT d.id, d.name, d.description, d.primary_key, d.visibility, d.default_branch,
       d.created_at, d.updated_at, d.tags, d.readme, count(*) OVER () AS total
FROM dataset d
LEFT JOIN dataset_permission p ON p.dataset_id = d.id AND p.user_id = %(user_id)s
WHERE d.deleted_at IS NULL
  AND (%(is_admin)s OR d.visibility = 'public' OR p.role IS NOT NULL
       OR (d.visibility = 'internal' AND %(user_id)s::uuid IS NOT NULL))
  AND (%(only)s::uuid[] IS NULL OR d.id = ANY(%(only)s) OR d.visibility = 'public')
  AND (%(q)s::text IS NULL OR d.name ILIKE %(q)s OR d.description ILIKE %(q)s)
ORDER BY d.created_at DESC, d.id
LIMIT %(limit)s OFFSET %(offset)s;

-- name: update_dataset
UPDATE dataset SET
    name = COALESCE(%(name)s, name),
    description = COALESCE(%(description)s, description),
    primary_key = CASE WHEN %(set_primary_key)s THEN %(primary_key)s ELSE primary_key END,
    visibility = COALESCE(%(visibility)s, visibility),
    tags = COALESCE(%(tags)s, tags),
    readme = COALESCE(%(readme)s, readme),
    updated_at = now()
WHERE id = %(id)s AND deleted_at IS NULL
RETURNING id, name, description, primary_key, visibility, default_branch, created_at, updated_at,
          tags, readme;

-- name: soft_delete
UPDATE dataset SET deleted_at = now(), updated_at = now() WHERE id = %(id)s AND deleted_at IS NULL;

-- name: list_permissions
SELECT u.username, p.role, p.granted_at
FROM dataset_permission p JOIN app_user u ON u.id = p.user_id
WHERE p.dataset_id = %(id)s ORDER BY u.username;

-- name: upsert_permission
INSERT INTO dataset_permission (dataset_id, user_id, role)
VALUES (%(id)s, %(user_id)s, %(role)s)
ON CONFLICT ON CONSTRAINT dataset_permission_pkey DO UPDATE SET role = EXCLUDED.role, granted_at = now();

-- name: delete_permission
DELETE FROM dataset_permission WHERE dataset_id = %(id)s AND user_id = %(user_id)s;

-- name: lock_permissions
-- Serialises changes to one dataset's roles, so two demotions cannot each leave the other as the last admin.
SELECT id FROM dataset WHERE id = %(id)s FOR NO KEY UPDATE;

-- name: count_admins
SELECT count(*) AS n FROM dataset_permission WHERE dataset_id = %(id)s AND role = 'admin';

-- name: every_dataset
-- every dataset a check of the installation covers (soft-deleted ones too: their objects are kept until purged)
SELECT id, name, deleted_at FROM dataset
WHERE %(dataset)s::text IS NULL OR name = %(dataset)s OR id::text = %(dataset)s
ORDER BY name, id

-- name: restore
-- A soft-deleted dataset made live again (its name must be free).
UPDATE dataset SET deleted_at = NULL, updated_at = now()
WHERE id = %(id)s AND deleted_at IS NOT NULL
RETURNING id, name, description, primary_key, visibility, default_branch, created_at, updated_at,
          tags, readme;

-- name: purge_deleted
-- Datasets soft-deleted longer ago than the retention go for good (their
-- commits, refs, reflog, jobs, uploads and permissions with them).
DELETE FROM dataset WHERE deleted_at < now() - make_interval(secs => %(older_than_s)s)
RETURNING id, name;

-- name: id_by_name
SELECT id FROM dataset WHERE name = %(name)s AND deleted_at IS NULL;

-- name: search
-- Live datasets the caller may read matching the query (every one when it
-- is empty), ranked, with the total; the filters narrow by tags (all of
-- them), visibility and owner (the creator). Datasets matching by name,
-- tags, description or columns rank by ts_rank over those (the readme-free
-- document; ts_rank_cd's cover density cost 12 of 26 ms for 6,000 matches:
-- decision 0036), above those matching in their readme alone. The small
-- document is tested first, then the whole one (both in the row up to 8 KB,
-- migration 0014); the ranking carries ids only (a dataset's readme is read
-- for the page's headlines alone) and is counted once, narrow (a window
-- over the wide rows spilled to disk for thousands of matches).
WITH q AS NOT MATERIALIZED (  -- inlined: the query a constant the index can use
    SELECT CASE WHEN %(q)s = '' THEN NULL
                ELSE websearch_to_tsquery('english', %(q)s) || to_tsquery('simple', %(prefix)s)
           END AS query
), hits AS MATERIALIZED (
    SELECT d.id, d.updated_at,
           CASE WHEN q.query IS NULL THEN 0
                WHEN d.search_head @@ q.query  -- names, tags, description, columns
                THEN 0.1 + ts_rank(d.search_head, q.query, 32)
                     + CASE WHEN lower(d.name) = lower(%(q)s) THEN 1 ELSE 0 END
                ELSE 0.05  -- the readme alone
           END AS score
    FROM dataset d CROSS JOIN q
    LEFT JOIN dataset_permission p ON p.dataset_id = d.id AND p.user_id = %(user_id)s
    WHERE d.deleted_at IS NULL
      AND (%(is_admin)s OR d.visibility = 'public' OR p.role IS NOT NULL
           OR (d.visibility = 'internal' AND %(user_id)s::uuid IS NOT NULL))
      AND (%(only)s::uuid[] IS NULL OR d.id = ANY(%(only)s) OR d.visibility = 'public')
      AND (q.query IS NULL OR d.search_head @@ q.query OR d.search @@ q.query)
      AND (%(tags)s::text[] IS NULL OR d.tags @> %(tags)s)
      AND (%(visibility)s::text IS NULL OR d.visibility = %(visibility)s)
      AND (%(owner_id)s::uuid IS NULL OR d.created_by = %(owner_id)s)
), page AS (
    SELECT id, updated_at, score, (SELECT count(*) FROM hits) AS total FROM hits
    ORDER BY score DESC, updated_at DESC, id
    LIMIT %(limit)s OFFSET %(offset)s
)
SELECT d.id, d.name, d.description, d.tags, d.visibility, d.created_by, d.updated_at,
       page.score, page.total,
       query IS NOT NULL AND to_tsvector('simple', d.name) @@ query AS name_matched,
       -- the stored document's weights say where a dataset matched (B:
       -- description, tables, columns; C: readme) without parsing its text
       CASE WHEN query IS NOT NULL AND ts_filter(d.search, '{b}') @@ query
                 AND to_tsvector('english', d.description) @@ query
            THEN ts_headline('english', d.description, query,
                             'StartSel=' || chr(2) || ',StopSel=' || chr(3) || ',MaxWords=30,MinWords=10')
       END AS description_hit,
       CASE WHEN query IS NOT NULL AND ts_filter(d.search, '{c}') @@ query
            -- the readme's text without its Markdown marks: links as their
            -- words, no heading, emphasis, code, quote or table marks
            THEN ts_headline('english', regexp_replace(regexp_replace(regexp_replace(
                     left(d.readme, 20000),
                     '!?\[([^]]*)\]\([^)]*\)', '\1', 'g'),
                     '(^|\n)[ \t]*([-+]|\d+\.)[ \t]+', '\1', 'g'),
                     '[#*`>|~]+', ' ', 'g'),
                     query,
                             'StartSel=' || chr(2) || ',StopSel=' || chr(3) || ',MaxWords=30,MinWords=10')
       END AS readme_hit,
       CASE WHEN query IS NOT NULL AND ts_filter(d.search, '{a}') @@ query
            THEN ARRAY(SELECT t FROM unnest(d.tags) t WHERE dataset_search_names(ARRAY[t]) @@ query)
            ELSE '{}'
       END AS tags_hit,
       CASE WHEN query IS NOT NULL AND ts_filter(d.search, '{b}') @@ query
            THEN ARRAY(SELECT t FROM unnest(d.catalog_tables) t
                       WHERE dataset_search_names(ARRAY[t]) @@ query LIMIT 10)
            ELSE '{}'
       END AS tables_hit,
       CASE WHEN query IS NOT NULL AND ts_filter(d.search, '{b}') @@ query
            THEN ARRAY(SELECT c FROM unnest(d.catalog_columns) c
                       WHERE dataset_search_names(ARRAY[c]) @@ query LIMIT 10)
            ELSE '{}'
       END AS columns_hit
FROM page JOIN dataset d ON d.id = page.id CROSS JOIN q
ORDER BY page.score DESC, page.updated_at DESC, page.id;

-- name: search_facets
-- What the datasets a search finds are tagged with, who made them, how visible they are.
WITH q AS (
    SELECT CASE WHEN %(q)s = '' THEN NULL
                ELSE websearch_to_tsquery('english', %(q)s) || to_tsquery('simple', %(prefix)s)
           END AS query
), hits AS (
    SELECT d.tags, d.visibility, d.created_by
    FROM dataset d CROSS JOIN q
    LEFT JOIN dataset_permission p ON p.dataset_id = d.id AND p.user_id = %(user_id)s
    WHERE d.deleted_at IS NULL
      AND (%(is_admin)s OR d.visibility = 'public' OR p.role IS NOT NULL
           OR (d.visibility = 'internal' AND %(user_id)s::uuid IS NOT NULL))
      AND (%(only)s::uuid[] IS NULL OR d.id = ANY(%(only)s) OR d.visibility = 'public')
      AND (q.query IS NULL OR d.search_head @@ q.query OR d.search @@ q.query)
      AND (%(tags)s::text[] IS NULL OR d.tags @> %(tags)s)
      AND (%(visibility)s::text IS NULL OR d.visibility = %(visibility)s)
      AND (%(owner_id)s::uuid IS NULL OR d.created_by = %(owner_id)s)
)
SELECT 'tags' AS facet, t AS value, count(*) AS n FROM hits, unnest(tags) t GROUP BY t
UNION ALL
SELECT 'visibility', visibility, count(*) FROM hits GROUP BY visibility
UNION ALL
SELECT 'owner', created_by::text, count(*) FROM hits WHERE created_by IS NOT NULL GROUP BY created_by
ORDER BY facet, n DESC, value

-- name: set_catalog
-- The table and column names of the default branch's head (the caller
-- checked that the branch is at that commit).
UPDATE dataset SET catalog_tables = %(tables)s, catalog_columns = %(columns)s,
    catalog_commit = %(commit_id)s
WHERE id = %(dataset_id)s AND catalog_commit IS DISTINCT FROM %(commit_id)s;

-- name: lock_for_catalog
-- One catalog update of a dataset at a time (two moves' tasks in a race).
SELECT default_branch FROM dataset WHERE id = %(id)s AND deleted_at IS NULL FOR NO KEY UPDATE;
