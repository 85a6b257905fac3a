-- 0006: accounts and sessions (issue 15, features/auth, decision 0026).

-- A disabled user's sessions and tokens stop working at once; bumping
-- token_version (a password change) voids every access token issued before;
-- must_change_password asks the generated first admin to pick their own.
ALTER TABLE app_user
    ADD COLUMN disabled             boolean NOT NULL DEFAULT false,
    ADD COLUMN token_version        integer NOT NULL DEFAULT 0,
    ADD COLUMN must_change_password boolean NOT NULL DEFAULT false;

-- What an API token may do: a ceiling on the roles it carries (the highest of
-- its scopes) and, when not NULL, the only datasets it is for.
ALTER TABLE api_token
    ADD COLUMN scopes   text[] NOT NULL DEFAULT '{read,write,admin}',
    ADD COLUMN datasets uuid[],
    ADD CONSTRAINT api_token_scopes_check CHECK (scopes <@ '{read,write,admin}'::text[]);

-- Access tokens signed out before they expire (the session cookie's JWT):
-- checked on every use, forgotten by gc once past their expiry.
CREATE TABLE revoked_session (
    jti        uuid NOT NULL,
    expires_at timestamptz NOT NULL,
    CONSTRAINT revoked_session_pkey PRIMARY KEY (jti)
);
CREATE INDEX revoked_session_expires_idx ON revoked_session (expires_at);
