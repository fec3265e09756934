#!/usr/bin/env bash
# Serve VibeCode with daphne on VIBECODE_HOST:VIBECODE_PORT (default 127.0.0.1:8000), in
# VIBECODE_WORKERS processes.
# Run scripts/setup.sh first (make run does both).
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$REPO_ROOT"

HOST="${VIBECODE_HOST:-127.0.0.1}"
PORT="${VIBECODE_PORT:-8000}"

# Package egress behind a TLS-inspecting proxy: sandboxes trust what this host trusts.
if [ -z "${VIBECODE_SANDBOX_CA_BUNDLE:-}" ] && [ -n "${SSL_CERT_FILE:-}" ] && [ -r "$SSL_CERT_FILE" ]; then
  export VIBECODE_SANDBOX_CA_BUNDLE="$SSL_CERT_FILE"
fi

"$PY" manage.py migrate --noinput -v0
"$PY" manage.py ensure_admin
if "$PY" manage.py help reconcile_sessions >/dev/null 2>&1; then
  "$PY" manage.py reconcile_sessions || log "reconcile_sessions failed; see the message above"
fi
# The warm pool (VIBECODE_WARM_POOL, 2 by default): its first members, before the first create.
if "$PY" manage.py help refill_warm_pool >/dev/null 2>&1; then
  "$PY" manage.py refill_warm_pool || log "refill_warm_pool failed; creates take the cold path until maintenance refills it"
fi

shown_host="$HOST"
[ "$HOST" = "0.0.0.0" ] && shown_host="127.0.0.1"
log "VibeCode is starting at http://$shown_host:$PORT/"
log "Sign in with the staff user printed above (created on the first run only),"
log "or create more users at http://$shown_host:$PORT/admin/ . Stop with Ctrl-C."
# daphne, in VIBECODE_WORKERS processes on one socket (vibecode_project/serve.py: one on the
# embedded defaults, one per CPU with DATABASE_URL and REDIS_URL).
export VIBECODE_HOST="$HOST" VIBECODE_PORT="$PORT"
exec "$PY" -m vibecode_project.serve
