#!/bin/sh
# Runs once, when the PostgreSQL volume is created (docker-entrypoint-initdb.d).
# `collector` owns the ledger database and creates its schema through migrations;
# `grafana` may only read what `collector` creates. Passwords come from the environment.
set -eu
: "${LEDGER_PASSWORD:?LEDGER_PASSWORD is not set}"
: "${GRAFANA_DB_PASSWORD:?GRAFANA_DB_PASSWORD is not set}"
db="${POSTGRES_DB:-plant}"

psql -v ON_ERROR_STOP=1 --username "${POSTGRES_USER:-postgres}" --dbname "$db" \
    -v db="$db" -v ledger_pw="$LEDGER_PASSWORD" -v grafana_pw="$GRAFANA_DB_PASSWORD" <<'SQL'
CREATE ROLE collector LOGIN PASSWORD :'ledger_pw';
CREATE ROLE grafana LOGIN PASSWORD :'grafana_pw';
ALTER DATABASE :"db" OWNER TO collector;
ALTER SCHEMA public OWNER TO collector;
GRANT CONNECT ON DATABASE :"db" TO grafana;
GRANT USAGE ON SCHEMA public TO grafana;
ALTER DEFAULT PRIVILEGES FOR ROLE collector IN SCHEMA public GRANT SELECT ON TABLES TO grafana;
-- dashboards never need more than a few seconds; a runaway query must not load the ledger
ALTER ROLE grafana SET statement_timeout = '30s';
SQL
