-- name: insert_user
-- Create a user; the username is unique (app_user_username_key).
INSERT INTO app_user (id, username, password_hash, is_admin)
VALUES (%(id)s, %(username)s, %(password_hash)s, %(is_admin)s)
RETURNING id, username, is_admin, created_at;

-- name: user_by_name
SELECT id, username, password_hash, is_admin FROM app_user WHERE username = %(username)s;

-- name: user_by_id
SELECT id, username, is_admin FROM app_user WHERE id = %(id)s;

-- name: set_password
UPDATE app_user SET password_hash = %(password_hash)s WHERE id = %(id)s;

-- name: insert_token
INSERT INTO api_token (id, user_id, name, token_hash, expires_at)
VALUES (%(id)s, %(user_id)s, %(name)s, %(token_hash)s, %(expires_at)s)
RETURNING id, name, created_at, expires_at;

-- name: tokens_of_user
SELECT id, name, created_at, expires_at FROM api_token WHERE user_id = %(user_id)s ORDER BY created_at;

-- name: delete_token
DELETE FROM api_token WHERE id = %(id)s AND user_id = %(user_id)s;

-- name: user_by_token
-- The user owning an unexpired API token.
SELECT u.id, u.username, u.is_admin
FROM api_token t JOIN app_user u ON u.id = t.user_id
WHERE t.token_hash = %(token_hash)s AND (t.expires_at IS NULL OR t.expires_at > now());
