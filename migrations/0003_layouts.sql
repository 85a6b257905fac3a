-- 0003: read copies of fragmented table versions (core/layouts.py,
-- features/layouts, docs/decisions/0016). A cache: a row records a copy asked
-- for ('building') or stored ('ready': parts <object_prefix>/<n> of part_rows
-- rows, their row hashes digested as digest), its size, and when it was last
-- read, which decides what is evicted past the budget.
CREATE TABLE layout (
    manifest_id text NOT NULL,
    schema_id text NOT NULL,
    state text NOT NULL DEFAULT 'building',
    row_count bigint NOT NULL,
    object_prefix text,
    part_rows integer,
    digest text,
    bytes bigint,
    requested_at timestamptz NOT NULL DEFAULT now(),
    built_at timestamptz,
    used_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT layout_pkey PRIMARY KEY (manifest_id),
    CONSTRAINT layout_state_check CHECK (state IN ('building', 'ready'))
);

CREATE INDEX layout_used_idx ON layout (used_at) WHERE state = 'ready';
