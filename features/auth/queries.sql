-- name: insert_user
-- Create a user; the username is unique (app_user_username_key).
INSERT INTO app_user (id, username, password_hash, is_admin, must_change_password)
VALUES (%(id)s, %(username)s, %(password_hash)s, %(is_admin)s, %(must_change_password)s)
RETURNING id, username, is_admin, disabled, created_at, must_change_password;

-- name: user_by_name
SELECT id, username, password_hash, is_admin, disabled, token_version, must_change_password
FROM app_user WHERE username = %(username)s;

-- name: user_by_id
-- A user who may still act (not disabled).
SELECT id, username, is_admin, must_change_password
FROM app_user WHERE id = %(id)s AND NOT disabled;

-- name: password_of
SELECT password_hash FROM app_user WHERE id = %(id)s AND NOT disabled;

-- name: set_password
-- A new password voids every access token issued before (token_version).
UPDATE app_user
SET password_hash = %(password_hash)s, token_version = token_version + 1,
    must_change_password = false
WHERE id = %(id)s;

-- name: list_users
SELECT id, username, is_admin, disabled, created_at, must_change_password
FROM app_user ORDER BY username;

-- name: lock_admins
-- The enabled administrators, locked so two changes cannot each leave the other as the last.
SELECT id FROM app_user WHERE is_admin AND NOT disabled ORDER BY id FOR UPDATE;

-- name: update_user
-- Disabling bumps token_version too, so re-enabling does not revive old sessions.
UPDATE app_user
SET is_admin = coalesce(%(is_admin)s, is_admin),
    disabled = coalesce(%(disabled)s, disabled),
    token_version = token_version + CASE WHEN %(disabled)s THEN 1 ELSE 0 END
WHERE username = %(username)s
RETURNING id, username, is_admin, disabled, created_at, must_change_password;

-- name: session_user
-- The user an access token (JWT) stands for, if it still does: the user
-- exists, is not disabled, has not changed password since, and the token was
-- not signed out.
SELECT u.id, u.username, u.is_admin, u.must_change_password
FROM app_user u
WHERE u.id = %(id)s AND NOT u.disabled AND u.token_version = %(ver)s
  AND NOT EXISTS (SELECT 1 FROM revoked_session r WHERE r.jti = %(jti)s);

-- name: revoke_session
INSERT INTO revoked_session (jti, expires_at) VALUES (%(jti)s, %(expires_at)s)
ON CONFLICT (jti) DO NOTHING;

-- name: forget_expired_sessions
DELETE FROM revoked_session WHERE expires_at < now();

-- name: insert_token
INSERT INTO api_token (id, user_id, name, token_hash, expires_at, scopes, datasets, parent_id)
VALUES (%(id)s, %(user_id)s, %(name)s, %(token_hash)s, %(expires_at)s, %(scopes)s, %(datasets)s,
        %(parent_id)s)
RETURNING id, name, created_at, expires_at, scopes, datasets, parent_id;

-- name: tokens_of_user
SELECT id, name, created_at, expires_at, scopes, datasets, parent_id
FROM api_token WHERE user_id = %(user_id)s ORDER BY created_at;

-- name: delete_token
-- The token and (by the cascade) every token made with it, at any depth:
-- the ids of all of them.
WITH RECURSIVE made (id) AS (
    SELECT id FROM api_token WHERE id = %(id)s AND user_id = %(user_id)s
    UNION ALL
    SELECT t.id FROM api_token t JOIN made m ON t.parent_id = m.id
), gone AS (
    DELETE FROM api_token WHERE id IN (SELECT id FROM made) RETURNING id
)
SELECT id FROM gone;

-- name: user_by_token
-- The user owning an unexpired API token, if not disabled, and the token's limits.
SELECT u.id, u.username, u.is_admin, u.must_change_password,
       t.id AS token_id, t.scopes, t.datasets, t.expires_at
FROM api_token t JOIN app_user u ON u.id = t.user_id
WHERE t.token_hash = %(token_hash)s AND (t.expires_at IS NULL OR t.expires_at > now())
  AND NOT u.disabled;

-- name: usernames
SELECT id, username FROM app_user WHERE id = ANY(%(ids)s);
