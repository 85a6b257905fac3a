-- 0002: the reflog (every creation, move, protection change and deletion of a
-- ref), and the commit graph in a form that history and merge-base queries can
-- walk without visiting every commit: generation numbers and a chain cover.

-- generation = 1 + the largest generation among the parents (a root is 1).
-- A commit's generation is greater than each of its parents', so ordering by
-- generation descending is a topological order, and at least k ancestors of
-- a commit of generation G have a generation > G - k.
--
-- chain, chain_pos: the commits are cut into chains, paths along first-parent
-- edges with consecutive positions from 0. A commit continues its first
-- parent's chain if nothing did so before it, else it starts a new chain.
-- Within a chain, generation and depth grow with chain_pos, and a commit
-- reaches every commit of its chain at a lower position. The parent edges
-- that leave a chain (a chain start's parents, a merge's other parents) are
-- rows of commit_link; the ancestors of a commit are, for each chain it
-- reaches, the positions 0..max, found by walking the links alone.
ALTER TABLE commit
    ADD COLUMN generation integer,
    ADD COLUMN chain bigint,
    ADD COLUMN chain_pos integer;

CREATE SEQUENCE commit_chain_seq AS bigint;

-- Fill them in for existing commits, parents before children.
DO $$
DECLARE
    r record;
    p record;
    gen integer;
BEGIN
    FOR r IN
        SELECT dataset_id, id, parents FROM commit
        ORDER BY dataset_id, depth, created_at, id
    LOOP
        -- before this migration no commit had more than one parent, so depth
        -- orders parents before children; generation is computed exactly anyway
        SELECT 1 + coalesce(max(c.generation), 0) INTO gen FROM commit c
        WHERE c.dataset_id = r.dataset_id AND c.id = ANY (r.parents);
        SELECT c.chain, c.chain_pos INTO p FROM commit c
        WHERE c.dataset_id = r.dataset_id AND c.id = r.parents[1];
        IF p.chain IS NULL OR EXISTS (
            SELECT 1 FROM commit c
            WHERE c.dataset_id = r.dataset_id AND c.chain = p.chain
              AND c.chain_pos = p.chain_pos + 1)
        THEN
            UPDATE commit SET generation = gen, chain = nextval('commit_chain_seq'), chain_pos = 0
            WHERE dataset_id = r.dataset_id AND id = r.id;
        ELSE
            UPDATE commit SET generation = gen, chain = p.chain, chain_pos = p.chain_pos + 1
            WHERE dataset_id = r.dataset_id AND id = r.id;
        END IF;
    END LOOP;
END $$;

ALTER TABLE commit
    ALTER COLUMN generation SET NOT NULL,
    ALTER COLUMN chain SET NOT NULL,
    ALTER COLUMN chain_pos SET NOT NULL,
    ADD CONSTRAINT commit_chain_key UNIQUE (dataset_id, chain, chain_pos);

-- Pages of the whole-graph history: the commits of a chain between two
-- generations, with the sort keys, so a page is ranked from the index alone.
CREATE INDEX commit_chain_generation_idx ON commit (dataset_id, chain, generation)
    INCLUDE (created_at, id);

-- The parent edges that leave a chain. parent_index 0 is the first parent
-- (only chain starts have a first-parent link); parent_generation saves a lookup.
CREATE TABLE commit_link (
    dataset_id        uuid NOT NULL,
    chain             bigint NOT NULL,
    chain_pos         integer NOT NULL,
    parent_index      integer NOT NULL,
    parent_chain      bigint NOT NULL,
    parent_pos        integer NOT NULL,
    parent_generation integer NOT NULL,
    CONSTRAINT commit_link_pkey PRIMARY KEY (dataset_id, chain, chain_pos, parent_index),
    CONSTRAINT commit_link_commit_fkey FOREIGN KEY (dataset_id, chain, chain_pos)
        REFERENCES commit (dataset_id, chain, chain_pos) ON DELETE CASCADE
);

INSERT INTO commit_link (dataset_id, chain, chain_pos, parent_index, parent_chain, parent_pos,
                         parent_generation)
SELECT c.dataset_id, c.chain, c.chain_pos, e.n - 1, p.chain, p.chain_pos, p.generation
FROM commit c
CROSS JOIN LATERAL unnest(c.parents) WITH ORDINALITY AS e (parent_id, n)
JOIN commit p ON p.dataset_id = c.dataset_id AND p.id = e.parent_id
WHERE NOT (e.n = 1 AND p.chain = c.chain);

-- One row per change of a ref, kept when the ref is deleted, so a deleted
-- branch can be found and re-created from its last commit.
CREATE TABLE ref_log (
    id            bigint GENERATED ALWAYS AS IDENTITY,
    dataset_id    uuid NOT NULL REFERENCES dataset (id) ON DELETE CASCADE,
    ref_name      text NOT NULL,
    kind          text NOT NULL,
    action        text NOT NULL,
    old_commit_id text,
    new_commit_id text,
    actor         text NOT NULL,
    reason        text NOT NULL DEFAULT '',
    created_at    timestamptz NOT NULL DEFAULT clock_timestamp(),
    CONSTRAINT ref_log_pkey PRIMARY KEY (id),
    CONSTRAINT ref_log_kind_check CHECK (kind IN ('branch', 'tag')),
    CONSTRAINT ref_log_action_check
        CHECK (action IN ('create', 'move', 'protect', 'unprotect', 'delete'))
);
CREATE INDEX ref_log_ref_idx ON ref_log (dataset_id, ref_name, id DESC);

-- Existing refs get their creation entry, so no log starts in the middle.
INSERT INTO ref_log (dataset_id, ref_name, kind, action, new_commit_id, actor, reason, created_at)
SELECT dataset_id, name, kind, 'create', commit_id, coalesce(created_by, 'system'),
       'where the ref stood when the reflog began (migration 0002)', created_at
FROM ref ORDER BY created_at;
