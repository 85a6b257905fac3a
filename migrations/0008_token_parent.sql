-- 0008: an API token made with an API token goes with it (issue 15).
-- Revoking (deleting) a token deletes every token made with it, and the
-- tokens made with those, by the foreign key's cascade.
ALTER TABLE api_token
    ADD COLUMN parent_id uuid REFERENCES api_token (id) ON DELETE CASCADE;
CREATE INDEX api_token_parent_idx ON api_token (parent_id) WHERE parent_id IS NOT NULL;
