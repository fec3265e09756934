#!/usr/bin/env bash
# Entrypoint of the backend image (see the Dockerfile at the repository's root).
#
# Before the server starts (only when the command is the server, `python -m vibecode_project.serve`
# or daphne; `docker compose run backend python manage.py ...` skips all this):
#   1. the Docker socket: fail with the fix in the message when this user cannot use it;
#   2. static files: copy the ones collected at build time to the volume nginx serves them from;
#   3. database: `migrate`, then `reconcile_sessions`, one replica at a time (deploy/backend/migrate.py).
#
# Environment (besides the app's own, see .env.example):
#   VIBECODE_STATIC_SHARE        where nginx reads static files (default /srv/vibecode/static)
#   VIBECODE_MIGRATE_ON_START    true (default) or false
#   VIBECODE_RECONCILE_ON_START  true (default) or false
#   VIBECODE_DB_WAIT_SECONDS     how long to wait for PostgreSQL to answer (default 90)
set -euo pipefail

say() { printf 'entrypoint: %s\n' "$*" >&2; }

check_docker_socket() {
    local sock gid
    case "${DOCKER_HOST:-unix:///var/run/docker.sock}" in
        unix://*) sock="${DOCKER_HOST#unix://}" ;;
        *) return 0 ;; # a TCP engine: the health check reports whether it answers
    esac
    if [ ! -S "$sock" ]; then
        say "WARNING: no Docker socket at $sock: sessions cannot start."
        say "  mount the host's socket there (docker-compose.yaml does: /var/run/docker.sock)."
        return 0
    fi
    if [ ! -r "$sock" ] || [ ! -w "$sock" ]; then
        gid="$(stat -c %g "$sock")"
        say "ERROR: user $(id -un) (groups $(id -G | tr ' ' ',')) cannot use $sock, whose group is $gid."
        say "  set DOCKER_GID=$gid in .env (on the host: stat -c %g /var/run/docker.sock),"
        say "  then run: docker compose up -d"
        exit 1
    fi
}

share_static() {
    local share="${VIBECODE_STATIC_SHARE:-/srv/vibecode/static}"
    local root="${VIBECODE_STATIC_ROOT:-/app/staticfiles}"
    [ -d "$share" ] || return 0
    if [ ! -w "$share" ]; then
        say "WARNING: $share is not writable by $(id -un); nginx falls back to the backend for static files."
        return 0
    fi
    # Replicas starting together copy one at a time. Files of older releases are kept: their
    # names carry a content hash, so pages still open in a browser keep working during an upgrade.
    flock "$share/.lock" cp -R --preserve=mode,timestamps "$root/." "$share/"
    say "static files shared with nginx in $share"
}

server=false
case "${1:-}" in
    daphne | */daphne) server=true ;;
    python | */python | python3 | */python3)
        [ "${2:-}" = "-m" ] && [ "${3:-}" = "vibecode_project.serve" ] && server=true ;;
esac
case "$server" in
    true)
        check_docker_socket
        share_static
        python /app/deploy/backend/migrate.py
        ;;
esac
exec "$@"
