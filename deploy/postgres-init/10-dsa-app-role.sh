#!/bin/sh
# The role the API, workers and beat log in as (docker-compose.yml mounts
# this directory as the postgres image's /docker-entrypoint-initdb.d, so it
# runs once, when the data directory is first made). Its rights come from
# `dsa migrate` (migrations/0009_app_role.sql): every table but the audit
# log, which it may only read and append to; it owns nothing.
# An existing data directory skips this: see docs/operations.md, "Upgrading".
set -eu
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
    -v pw="$DSA_APP_DB_PASSWORD" <<'SQL'
CREATE ROLE dsa_app LOGIN PASSWORD :'pw';
SQL
