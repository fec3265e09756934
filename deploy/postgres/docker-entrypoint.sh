#!/usr/bin/env bash
# Entrypoint of vibecode-postgres (deploy/postgres/Dockerfile): a small subset of the official
# postgres image's. On the first start (an empty PGDATA) it creates the cluster with
# POSTGRES_USER as superuser, password POSTGRES_PASSWORD (scram-sha-256 over TCP; the local
# socket trusts, as in the official image) and the database POSTGRES_DB. Then it runs the
# command as the postgres user.
set -euo pipefail

say() { printf 'postgres-entrypoint: %s\n' "$*" >&2; }

if [ "$(id -u)" = 0 ]; then
    # A fresh volume belongs to root: give it to postgres, then continue as postgres.
    mkdir -p "$PGDATA" /var/run/postgresql
    chown postgres:postgres "$PGDATA" /var/run/postgresql
    chmod 0700 "$PGDATA"
    exec setpriv --reuid=postgres --regid=postgres --init-groups -- "$0" "$@"
fi

POSTGRES_USER="${POSTGRES_USER:-postgres}"
POSTGRES_DB="${POSTGRES_DB:-$POSTGRES_USER}"

if [ "${1:-}" = postgres ] && [ ! -s "$PGDATA/PG_VERSION" ]; then
    if [ -z "${POSTGRES_PASSWORD:-}" ]; then
        say "ERROR: the database is not initialised and POSTGRES_PASSWORD is empty; set it in .env"
        exit 1
    fi
    say "initialising a new cluster in $PGDATA for user $POSTGRES_USER"
    initdb -D "$PGDATA" --username="$POSTGRES_USER" --pwfile=<(printf '%s\n' "$POSTGRES_PASSWORD") \
        --auth-local=trust --auth-host=scram-sha-256 --encoding=UTF8 --locale=C.UTF-8 >/dev/null
    printf "\nlisten_addresses = '*'\n" >>"$PGDATA/postgresql.conf"
    printf '\nhost all all all scram-sha-256\n' >>"$PGDATA/pg_hba.conf"
    if [ "$POSTGRES_DB" != postgres ]; then
        # Socket only while setting up: nobody can connect over the network yet.
        pg_ctl -D "$PGDATA" -o "-c listen_addresses=''" -w start >/dev/null
        createdb --username="$POSTGRES_USER" "$POSTGRES_DB"
        pg_ctl -D "$PGDATA" -m fast -w stop >/dev/null
    fi
    say "cluster ready; database $POSTGRES_DB created"
fi

exec "$@"
