-- name: datasets
-- every dataset fsck checks (soft-deleted ones too: their objects are kept until purged)
SELECT id, name, deleted_at FROM dataset
WHERE %(dataset)s::text IS NULL OR name = %(dataset)s OR id::text = %(dataset)s
ORDER BY name, id

-- name: refs
SELECT name, kind, commit_id FROM ref WHERE dataset_id = %(dataset_id)s ORDER BY name

-- name: commits
SELECT id, parents, tables, row_count FROM commit WHERE dataset_id = %(dataset_id)s
ORDER BY generation, id
