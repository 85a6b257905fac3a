-- 0001: users, datasets, permissions, commits, refs, uploads, jobs

CREATE TABLE app_user (
    id            uuid PRIMARY KEY,
    username      text NOT NULL,
    password_hash text NOT NULL,
    is_admin      boolean NOT NULL DEFAULT false,
    created_at    timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT app_user_username_key UNIQUE (username)
);

CREATE TABLE api_token (
    id          uuid PRIMARY KEY,
    user_id     uuid NOT NULL REFERENCES app_user (id) ON DELETE CASCADE,
    name        text NOT NULL,
    token_hash  text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz,
    CONSTRAINT api_token_hash_key UNIQUE (token_hash)
);

CREATE TABLE dataset (
    id             uuid PRIMARY KEY,
    name           text NOT NULL,
    description    text NOT NULL DEFAULT '',
    primary_key    text[],
    visibility     text NOT NULL DEFAULT 'private',
    default_branch text NOT NULL DEFAULT 'main',
    created_by     uuid REFERENCES app_user (id),
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now(),
    deleted_at     timestamptz,
    CONSTRAINT dataset_visibility_check CHECK (visibility IN ('private', 'internal', 'public'))
);
CREATE UNIQUE INDEX dataset_name_key ON dataset (name) WHERE deleted_at IS NULL;

CREATE TABLE dataset_permission (
    dataset_id uuid NOT NULL REFERENCES dataset (id) ON DELETE CASCADE,
    user_id    uuid NOT NULL REFERENCES app_user (id) ON DELETE CASCADE,
    role       text NOT NULL,
    granted_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT dataset_permission_pkey PRIMARY KEY (dataset_id, user_id),
    CONSTRAINT dataset_permission_role_check CHECK (role IN ('read', 'write', 'admin'))
);

-- commits mirror the immutable commit objects for queries
CREATE TABLE commit (
    dataset_id  uuid NOT NULL REFERENCES dataset (id) ON DELETE CASCADE,
    id          text NOT NULL,
    parents     text[] NOT NULL,
    author      text NOT NULL,
    message     text NOT NULL,
    created_at  timestamptz NOT NULL,
    tables      jsonb NOT NULL,
    provenance  jsonb NOT NULL DEFAULT '{}',
    row_count   bigint NOT NULL,
    table_count integer NOT NULL,
    depth       integer NOT NULL,  -- first-parent distance from the root commit
    CONSTRAINT commit_pkey PRIMARY KEY (dataset_id, id)
);
CREATE INDEX commit_id_prefix_idx ON commit (dataset_id, id text_pattern_ops);

CREATE TABLE ref (
    dataset_id uuid NOT NULL REFERENCES dataset (id) ON DELETE CASCADE,
    name       text NOT NULL,
    kind       text NOT NULL,
    commit_id  text NOT NULL,
    protected  boolean NOT NULL DEFAULT false,
    message    text,
    created_by text,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT ref_pkey PRIMARY KEY (dataset_id, name),
    CONSTRAINT ref_kind_check CHECK (kind IN ('branch', 'tag')),
    CONSTRAINT ref_commit_fkey FOREIGN KEY (dataset_id, commit_id) REFERENCES commit (dataset_id, id)
);

CREATE TABLE upload (
    id         uuid PRIMARY KEY,
    dataset_id uuid NOT NULL REFERENCES dataset (id) ON DELETE CASCADE,
    object_key text NOT NULL,
    filename   text NOT NULL,
    size       bigint NOT NULL,
    blake3     text NOT NULL,
    created_by uuid REFERENCES app_user (id),
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE job (
    id           uuid PRIMARY KEY,
    kind         text NOT NULL,
    dataset_id   uuid NOT NULL REFERENCES dataset (id) ON DELETE CASCADE,
    ref_name     text NOT NULL,
    upload_id    uuid REFERENCES upload (id) ON DELETE SET NULL,
    state        text NOT NULL DEFAULT 'queued',
    params       jsonb NOT NULL DEFAULT '{}',
    rows         bigint NOT NULL DEFAULT 0,
    bytes        bigint NOT NULL DEFAULT 0,
    total_bytes  bigint,
    commit_id    text,
    error        jsonb,
    attempts     integer NOT NULL DEFAULT 0,
    created_by   uuid REFERENCES app_user (id),
    created_at   timestamptz NOT NULL DEFAULT now(),
    started_at   timestamptz,
    finished_at  timestamptz,
    heartbeat_at timestamptz,
    CONSTRAINT job_state_check CHECK (state IN ('queued', 'running', 'succeeded', 'failed', 'cancelled'))
);
CREATE INDEX job_dataset_idx ON job (dataset_id, created_at DESC);
CREATE INDEX job_active_idx ON job (state) WHERE state IN ('queued', 'running');
