-- name: insert_dataset
INSERT INTO dataset (id, name, description, primary_key, visibility, created_by)
VALUES (%(id)s, %(name)s, %(description)s, %(primary_key)s, %(visibility)s, %(created_by)s)
RETURNING id, name, description, primary_key, visibility, default_branch, created_at, updated_at;

-- name: dataset_with_role
-- A live dataset and the caller's explicit role on it (NULL when none).
SELECT d.id, d.name, d.description, d.primary_key, d.visibility, d.default_branch,
       d.created_at, d.updated_at, p.role
FROM dataset d
LEFT JOIN dataset_permission p ON p.dataset_id = d.id AND p.user_id = %(user_id)s
WHERE d.id = %(id)s AND d.deleted_at IS NULL;

-- name: list_visible
-- Live datasets the caller may read, matching q, newest first, with the total.
SELECT d.id, d.name, d.description, d.primary_key, d.visibility, d.default_branch,
       d.created_at, d.updated_at, count(*) OVER () AS total
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
    updated_at = now()
WHERE id = %(id)s AND deleted_at IS NULL
RETURNING id, name, description, primary_key, visibility, default_branch, created_at, updated_at;

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
RETURNING id, name, description, primary_key, visibility, default_branch, created_at, updated_at;

-- name: purge_deleted
-- Datasets soft-deleted longer ago than the retention go for good (their
-- commits, refs, reflog, jobs, uploads and permissions with them).
DELETE FROM dataset WHERE deleted_at < now() - make_interval(secs => %(older_than_s)s)
RETURNING id, name;

-- name: id_by_name
SELECT id FROM dataset WHERE name = %(name)s AND deleted_at IS NULL;
