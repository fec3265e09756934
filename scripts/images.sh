#!/usr/bin/env bash
# `make images`: build every image the compose stack needs, with no image registry.
#
#   scripts/images.sh            build what is missing or out of date (the engine's cache decides)
#   scripts/images.sh --rebuild  build everything again from scratch, the debootstrap base included
#
# All of them start from vibecode-base:bookworm, a debootstrap minbase made by sandbox/builder.py,
# and install the rest from Debian packages (and PyPI / npm for the backend) with the build on
# the host network:
#
#   vibecode-base:bookworm    debootstrap --variant=minbase bookworm, imported
#   vibecode-sandbox:latest   sandbox/Dockerfile: what each user session runs in
#   vibecode-backend:latest   Dockerfile: daphne, the app, its collected static files
#   vibecode-postgres:15      deploy/postgres/Dockerfile: postgresql-15
#   vibecode-redis:7          deploy/redis/Dockerfile: redis-server 7
#   vibecode-nginx:1.22       deploy/nginx/Dockerfile: nginx
#
# docker-compose.offline.yaml points the stack at these. Build logs go to var/log/images/.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$REPO_ROOT"

BASE_IMAGE="vibecode-base:bookworm"
SANDBOX_IMAGE="vibecode-sandbox:latest"
LOG_DIR="$VAR_DIR/log/images"

REBUILD=""
case "${1:-}" in
  "") ;;
  --rebuild) REBUILD=1 ;;
  -h | --help) sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
  *) die "unknown option: $1 (usage: $0 [--rebuild])" ;;
esac

[ "$(id -u)" = 0 ] || die "building the debootstrap base needs root; run: sudo make images"
"$REPO_ROOT/scripts/dockerd.sh" >/dev/null
mkdir -p "$LOG_DIR"

image_id() { docker image inspect --format '{{.Id}}' "$1" 2>/dev/null || true; }

# The base and the sandbox: sandbox/builder.py through `manage.py build_sandbox_image`, with the
# project's Python (the runtime speaks the Docker API).
if ! { [ -x "$PY" ] && "$PY" -c 'import docker' 2>/dev/null; }; then
  log "setting up the project's Python first (scripts/setup.sh)"
  "$REPO_ROOT/scripts/setup.sh"
fi
started=$(date +%s)
if [ -n "$REBUILD" ] || [ -z "$(image_id "$BASE_IMAGE")" ]; then
  # The builder skips everything when the sandbox image exists; a missing base needs --rebuild.
  log "building $BASE_IMAGE and $SANDBOX_IMAGE (manage.py build_sandbox_image --rebuild)"
  "$PY" manage.py build_sandbox_image --rebuild --image "$SANDBOX_IMAGE" --base-image "$BASE_IMAGE"
else
  "$PY" manage.py build_sandbox_image --image "$SANDBOX_IMAGE" --base-image "$BASE_IMAGE"
fi

# build TAG CONTEXT [docker build options...]
build() {
  local tag="$1" context="$2" old new t0 logfile
  shift 2
  logfile="$LOG_DIR/${tag%%:*}.log"
  old="$(image_id "$tag")"
  t0=$(date +%s)
  log "building $tag from $context (log: ${logfile#"$REPO_ROOT"/})"
  # The classic builder: this Engine 20.10 has no buildx plugin beside it, and its output is
  # plain lines, which go to the log file.
  if ! DOCKER_BUILDKIT=0 docker build --network host --pull=false --force-rm ${REBUILD:+--no-cache} \
      --build-arg "BASE=$BASE_IMAGE" -t "$tag" "$@" "$context" >"$logfile" 2>&1; then
    tail -n 40 "$logfile" >&2
    die "building $tag failed; the whole log is $logfile"
  fi
  new="$(image_id "$tag")"
  # Drop the image this build replaced, unless a container still uses it.
  if [ -n "$old" ] && [ "$old" != "$new" ]; then
    docker image rm "$old" >/dev/null 2>&1 || true
  fi
  log "built $tag in $(( $(date +%s) - t0 )) s ($(docker image inspect --format '{{.Size}}' "$tag" \
    | awk '{printf "%.0f MB", $1 / 1e6}'))"
}

build vibecode-postgres:15 deploy/postgres
build vibecode-redis:7 deploy/redis
build vibecode-nginx:1.22 deploy/nginx
# pip and npm reach their registries over HTTPS. Where that goes through a TLS-inspecting proxy,
# the host trusts its authority in /usr/local/share/ca-certificates: so does the build.
# VIBECODE_EXTRA_CA_CERTS (PEM text) overrides that; empty means none.
if [ -z "${VIBECODE_EXTRA_CA_CERTS+set}" ] && [ -d /usr/local/share/ca-certificates ]; then
  VIBECODE_EXTRA_CA_CERTS="$(find /usr/local/share/ca-certificates -name '*.crt' -type f -print0 \
    | sort -z | xargs -0 -r cat)"
fi
build vibecode-backend:latest . --build-arg "NODE_IMAGE=$SANDBOX_IMAGE" \
  --build-arg "EXTRA_CA_CERTS=${VIBECODE_EXTRA_CA_CERTS:-}"

log "all images ready in $(( $(date +%s) - started )) s:"
docker image ls --format '{{.Repository}}:{{.Tag}}  {{.Size}}' \
  | grep -E '^vibecode-(base|sandbox|backend|postgres|redis|nginx):' | sed 's/^/    /' >&2 || true
