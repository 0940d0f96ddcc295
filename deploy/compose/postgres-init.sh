#!/usr/bin/env bash
# PostgreSQL first-start script for docker-compose (mounted into /docker-entrypoint-initdb.d).
# One role and one database per service; each role owns only its own database and nobody else
# may connect to it. Passwords come from the environment (INTAKE_DB_PASSWORD, ...): docker
# compose refuses to start when one is missing, and so does this script.
set -eo pipefail

for service in intake triage payout notify insights; do
  variable="${service^^}_DB_PASSWORD"
  password="${!variable:?${variable} must be set}"
  psql --no-psqlrc -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
       -v role="$service" -v password="$password" <<'SQL'
CREATE ROLE :"role" LOGIN PASSWORD :'password';
CREATE DATABASE :"role" OWNER :"role";
REVOKE ALL ON DATABASE :"role" FROM PUBLIC;
SQL
  echo "created role and database ${service}"
done
