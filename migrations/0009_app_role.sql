-- 0009: the application's own role (issue 15, decision 0028).
-- The API, workers and beat connect as `dsa_app` (or a role that is a member
-- of it), not as the owner of the tables: `dsa_app` may read and write every
-- table but may only read and append to audit_log (no UPDATE, DELETE or
-- TRUNCATE), owns nothing and cannot drop the audit triggers. Migrations
-- (and `dsa restore`) run as the owner. The role is created here (NOLOGIN)
-- when the migrating role may create roles; a deployment gives it LOGIN and
-- a password (docker-compose.yml's init script, docs/operations.md), or
-- creates it first itself. Roles are per cluster: a second installation in
-- the same cluster shares it, with grants in its own database.
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'dsa_app') THEN
        IF (SELECT rolcreaterole OR rolsuper FROM pg_roles WHERE rolname = current_user) THEN
            CREATE ROLE dsa_app NOLOGIN;
        ELSE
            RAISE NOTICE 'dsa_app not created (% may not create roles): the application keeps the owner''s rights', current_user;
        END IF;
    END IF;
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'dsa_app') THEN
        EXECUTE format('GRANT CONNECT, TEMPORARY ON DATABASE %I TO dsa_app', current_database());
        GRANT USAGE ON SCHEMA public TO dsa_app;
        GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO dsa_app;
        REVOKE UPDATE, DELETE, TRUNCATE ON audit_log FROM dsa_app;
        GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO dsa_app;
        -- tables and sequences later migrations create (as this owner)
        ALTER DEFAULT PRIVILEGES IN SCHEMA public
            GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO dsa_app;
        ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT USAGE, SELECT ON SEQUENCES TO dsa_app;
    END IF;
END
$$;
