#!/usr/bin/env bash
# Makes sure a PostgreSQL server answers for the tests and prints its URL.
#
# With DATABASE_URL set, that server is used as it is. Otherwise the machine's
# own server is used: the Debian package is installed when it is absent, its
# cluster is started, and a role and database for the tests are created.
set -euo pipefail

if [ -n "${DATABASE_URL:-}" ]; then
  echo "$DATABASE_URL"
  exit 0
fi

role=mentorflow
password=mentorflow
database=mentorflow_test
port=${TEST_PG_PORT:-5432}

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

if ! command -v pg_lsclusters >/dev/null 2>&1; then
  echo "installing the Debian postgresql package" >&2
  as_root apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq postgresql >&2
fi

version=$(pg_lsclusters --no-header | awk 'NR == 1 {print $1}')
if [ -z "$version" ]; then
  version=$(ls /usr/lib/postgresql | sort -n | tail -n 1)
  as_root pg_createcluster "$version" main --port "$port" >&2
fi
cluster_port=$(pg_lsclusters --no-header | awk -v v="$version" '$1 == v && $2 == "main" {print $3}')
status=$(pg_lsclusters --no-header | awk -v v="$version" '$1 == v && $2 == "main" {print $4}')
if [ "$status" != "online" ]; then
  as_root pg_ctlcluster "$version" main start >&2
fi

as_postgres() {
  if [ "$(id -un)" = postgres ]; then "$@"; else as_root runuser -u postgres -- "$@"; fi
}
psql_admin() {
  as_postgres psql -X -q -v ON_ERROR_STOP=1 -p "$cluster_port" -d postgres "$@"
}

for _ in $(seq 1 30); do
  psql_admin -c 'SELECT 1' >/dev/null 2>&1 && break
  sleep 1
done

if ! psql_admin -tAc "SELECT 1 FROM pg_roles WHERE rolname = '$role'" | grep -q 1; then
  psql_admin -c "CREATE ROLE $role LOGIN CREATEDB PASSWORD '$password'" >&2
fi
# Dropping a test database WITH (FORCE) terminates what still runs in it,
# autovacuum workers included, which only pg_signal_backend may do.
if ! psql_admin -tAc "SELECT pg_has_role('$role', 'pg_signal_backend', 'MEMBER')" \
  | grep -q t; then
  psql_admin -c "GRANT pg_signal_backend TO $role" >&2
fi
if ! psql_admin -tAc "SELECT 1 FROM pg_database WHERE datname = '$database'" | grep -q 1
then
  psql_admin -c "CREATE DATABASE $database OWNER $role" >&2
fi

echo "postgresql://$role:$password@127.0.0.1:$cluster_port/$database"
