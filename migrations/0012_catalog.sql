-- 0012: the catalog (issue 17): datasets gain tags and a Markdown readme,
-- and a full-text document over their name, description, tags, readme and
-- the table and column names of their default branch's head (kept by the
-- worker's datasets.index task when that branch moves), searched by
-- GET /api/v1/search through a GIN index.
ALTER TABLE dataset
    ADD COLUMN tags text[] NOT NULL DEFAULT '{}',
    ADD COLUMN readme text NOT NULL DEFAULT '',
    ADD COLUMN catalog_tables text[] NOT NULL DEFAULT '{}',
    ADD COLUMN catalog_columns text[] NOT NULL DEFAULT '{}',
    ADD COLUMN catalog_commit text,
    ADD COLUMN search tsvector NOT NULL DEFAULT ''::tsvector,
    ADD COLUMN search_head tsvector NOT NULL DEFAULT ''::tsvector;

-- Names split on "_" "-" "." (cust_id: cust, id) and are also kept whole;
-- prose is stemmed (English). Weights: A name and tags, B description,
-- tables and columns, C readme.
CREATE FUNCTION dataset_search_names(names text[]) RETURNS tsvector
LANGUAGE sql IMMUTABLE AS $$
    SELECT to_tsvector('simple', coalesce(array_to_string(names, ' '), '') || ' '
        || coalesce(regexp_replace(array_to_string(names, ' '), '[_.-]+', ' ', 'g'), ''))
$$;

-- search_head is the document without the readme: small enough to stay in
-- the row uncompressed, so ranking thousands of matches reads no TOAST.
CREATE FUNCTION dataset_search_document() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    NEW.search_head :=
        setweight(dataset_search_names(ARRAY[NEW.name]), 'A')
        || setweight(dataset_search_names(NEW.tags), 'A')
        || setweight(to_tsvector('english', NEW.description), 'B')
        || setweight(dataset_search_names(NEW.catalog_tables || NEW.catalog_columns), 'B');
    NEW.search := NEW.search_head
        || setweight(to_tsvector('english', left(NEW.readme, 100000)), 'C');
    RETURN NEW;
END
$$;

CREATE TRIGGER dataset_search_document
    BEFORE INSERT OR UPDATE OF name, description, tags, readme, catalog_tables, catalog_columns
    ON dataset FOR EACH ROW EXECUTE FUNCTION dataset_search_document();

UPDATE dataset SET name = name;  -- existing datasets get their document
CREATE INDEX dataset_search_idx ON dataset USING gin (search) WHERE deleted_at IS NULL;
-- searches test the small document first: a dataset it matches needs no
-- read of the whole one (TOASTed with the readme's words)
CREATE INDEX dataset_search_head_idx ON dataset USING gin (search_head) WHERE deleted_at IS NULL;
CREATE INDEX dataset_tags_idx ON dataset USING gin (tags) WHERE deleted_at IS NULL;
