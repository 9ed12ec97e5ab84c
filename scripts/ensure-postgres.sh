#!/usr/bin/env bash
# Make sure a PostgreSQL server answers on 127.0.0.1:5432 with a database `test` (trust auth),
# as the test suite expects: find it, start the installed cluster, or install one from the
# distribution's packages. Used by `make test` and `.ci/run`; safe to run repeatedly.
set -euo pipefail

host=127.0.0.1
port=5432

ready() { pg_isready -q -h "$host" -p "$port" 2>/dev/null; }
as_postgres() { if [ "$(id -u)" = 0 ]; then su postgres -c "$*"; else sudo -u postgres sh -c "$*"; fi; }

if command -v pg_isready >/dev/null && ready; then
  echo "ensure-postgres: server is up on $host:$port"
else
  if ! ls /etc/postgresql/*/main >/dev/null 2>&1; then
    if [ "$(id -u)" != 0 ]; then
      echo "ensure-postgres: no PostgreSQL installed and not root: install it, or set ETL_TEST_DATABASE_URL" >&2
      exit 1
    fi
    echo "ensure-postgres: installing PostgreSQL from the distribution's packages"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq postgresql >/dev/null
    version=$(ls /etc/postgresql | sort -V | tail -n 1)
    hba=/etc/postgresql/$version/main/pg_hba.conf
    # A throwaway test server: trust on loopback only, as on the project's dev machines.
    sed -i -E 's/^(host\s+all\s+all\s+(127\.0\.0\.1\/32|::1\/128)\s+)\S+/\1trust/' "$hba"
  fi
  version=$(ls /etc/postgresql | sort -V | tail -n 1)
  echo "ensure-postgres: starting cluster $version/main"
  pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
  for _ in $(seq 1 30); do ready && break; sleep 1; done
  ready || { echo "ensure-postgres: the server did not come up on $host:$port" >&2; exit 1; }
fi

if ! psql -h "$host" -p "$port" -U postgres -d test -Atc 'select 1' >/dev/null 2>&1; then
  echo "ensure-postgres: creating database test"
  as_postgres "psql -p $port -Atc 'create database test'" >/dev/null 2>&1 \
    || psql -h "$host" -p "$port" -U postgres -d postgres -Atc 'create database test' >/dev/null
fi
echo "ensure-postgres: ok"
