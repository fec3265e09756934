#!/usr/bin/env bash
# `make test-deploy`: build every image offline (make images), start the compose stack with the
# compose tool and test it through nginx on 127.0.0.1:9000 (deploy/tests). Cleans up everything
# it started, found by its compose project and its sandboxes' vibecode.instance label, even when
# a test fails or the run is interrupted.
#
# Environment:
#   DEPLOY_PORT       loopback port for nginx (default 9000)
#   DEPLOY_PROJECT    compose project name (default vibecode-deploytest)
#   DEPLOY_INSTANCE   vibecode.instance of the sandboxes it makes (default deploytest)
#   DEPLOY_SUBNET     the stack's front network (default 172.30.91.0/24)
#   DEPLOY_DATA_SUBNET   its data network (default 172.30.92.0/24)
# Extra arguments go to pytest, e.g. `scripts/test-deploy.sh -x -k upload`.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$REPO_ROOT"

export DEPLOY_PORT="${DEPLOY_PORT:-9000}"
export DEPLOY_PROJECT="${DEPLOY_PROJECT:-vibecode-deploytest}"
export DEPLOY_INSTANCE="${DEPLOY_INSTANCE:-deploytest}"
export DEPLOY_SUBNET="${DEPLOY_SUBNET:-172.30.91.0/24}"
export DEPLOY_DATA_SUBNET="${DEPLOY_DATA_SUBNET:-172.30.92.0/24}"
export DEPLOY_ARTIFACTS="$VAR_DIR/deploy-test"
started=$(date +%s)

[ "$(id -u)" = 0 ] || die "make test-deploy builds images with debootstrap and needs root"
# Everything labelled with this project and instance is removed: never let it name a real one.
case "$DEPLOY_PROJECT/$DEPLOY_INSTANCE" in
  *deploytest*/*deploytest*) ;;
  *) die "DEPLOY_PROJECT and DEPLOY_INSTANCE must both contain 'deploytest'" ;;
esac

# 1. The host side: Docker engine, the project's Python with the test tools, a compose tool.
"$REPO_ROOT/scripts/setup.sh" --dev
if docker compose version >/dev/null 2>&1; then
  export DEPLOY_COMPOSE="docker compose"
else
  command -v docker-compose >/dev/null 2>&1 || ensure_packages docker-compose
  export DEPLOY_COMPOSE="docker-compose"
fi
log "compose tool: $($DEPLOY_COMPOSE version 2>/dev/null | head -n 1)"

# 2. Images, from Debian packages, with no registry.
t0=$(date +%s)
"$REPO_ROOT/scripts/images.sh"
images_seconds=$(( $(date +%s) - t0 ))

# 3. The stack and the tests. The fixture removes what it made; this trap covers a crash or a
#    Ctrl-C of pytest itself.
# shellcheck disable=SC2317  # called by the trap
cleanup() {
  local label
  for label in "com.docker.compose.project=$DEPLOY_PROJECT" "vibecode.instance=$DEPLOY_INSTANCE"; do
    docker ps -aq --filter "label=$label" | xargs -r docker rm -f -v >/dev/null 2>&1 || true
    docker volume ls -q --filter "label=$label" | xargs -r docker volume rm -f >/dev/null 2>&1 || true
  done
  docker network ls -q --filter "label=com.docker.compose.project=$DEPLOY_PROJECT" \
    | xargs -r docker network rm >/dev/null 2>&1 || true
}
trap cleanup EXIT

if (exec 3<>"/dev/tcp/127.0.0.1/$DEPLOY_PORT") 2>/dev/null; then
  die "something already listens on 127.0.0.1:$DEPLOY_PORT; stop it or set DEPLOY_PORT"
fi

log "testing the stack through nginx on 127.0.0.1:$DEPLOY_PORT (logs: ${DEPLOY_ARTIFACTS#"$REPO_ROOT"/}/)"
t0=$(date +%s)
set +e
"$PY" -m pytest -c deploy/tests/pytest.ini deploy/tests "$@"
status=$?
set -e
log "images ${images_seconds} s, stack tests $(( $(date +%s) - t0 )) s, total $(( $(date +%s) - started )) s"
exit $status
