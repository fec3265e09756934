#!/usr/bin/env bash
# `make test`: set everything up, start throwaway PostgreSQL and Redis (unless DATABASE_URL /
# REDIS_URL are given), run the whole pytest suite on them, and stop what it started.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$REPO_ROOT"

ensure_packages postgresql redis-server nginx chromium
"$REPO_ROOT/scripts/setup.sh" --dev

started=""
cleanup() { [ -n "$started" ] && "$REPO_ROOT/scripts/test-services.sh" stop; }
trap cleanup EXIT

if [ -z "${DATABASE_URL:-}" ] || [ -z "${REDIS_URL:-}" ]; then
  log "starting throwaway PostgreSQL and Redis on loopback"
  given_db="${DATABASE_URL:-}"
  given_redis="${REDIS_URL:-}"
  eval "$("$REPO_ROOT/scripts/test-services.sh" start)"
  started=1
  [ -n "$given_db" ] && export DATABASE_URL="$given_db"
  [ -n "$given_redis" ] && export REDIS_URL="$given_redis"
fi

# Package egress behind a TLS-inspecting proxy: sandboxes trust what this host trusts.
if [ -z "${VIBECODE_SANDBOX_CA_BUNDLE:-}" ] && [ -n "${SSL_CERT_FILE:-}" ] && [ -r "$SSL_CERT_FILE" ]; then
  export VIBECODE_SANDBOX_CA_BUNDLE="$SSL_CERT_FILE"
fi
# One label per run, so that two runs on one engine (two checkouts) never clean up each other's
# sandboxes.
export VIBECODE_INSTANCE="test-$$"
# No maintenance thread in the servers tests start: it would reconcile sessions whose rows live in
# a test's uncommitted transaction. The tests that need it turn it on for their own server.
export VIBECODE_CLEANUP_INTERVAL=0
# No warm pool either (tests/pytest_env.py says why); the pool's tests turn it on themselves.
export VIBECODE_WARM_POOL=0
log "running the test suite (PostgreSQL, Redis, Docker, Chromium)"
set +e
"$PY" -m pytest "$@"
status=$?
set -e
if [ -d "$REPO_ROOT/test-artifacts" ]; then
  log "screenshots and other artifacts: $REPO_ROOT/test-artifacts/"
fi
exit $status
