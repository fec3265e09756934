#!/usr/bin/env bash
# Start or stop a throwaway PostgreSQL 15 and Redis 7 on loopback, for the test suite.
#
#   scripts/test-services.sh start   prints `export DATABASE_URL=... REDIS_URL=...` lines
#   scripts/test-services.sh stop    stops what `start` started and deletes its data
set -euo pipefail
source "$(dirname "$0")/lib.sh"

DIR="$VAR_DIR/test-services"
PG_BIN="/usr/lib/postgresql/15/bin"

start() {
  ensure_packages postgresql redis-server
  stop >/dev/null 2>&1 || true
  mkdir -p "$DIR/pg" "$DIR/redis"
  chown postgres "$DIR/pg"
  chmod 700 "$DIR/pg"
  local pg_port redis_port
  pg_port=$(free_port)
  redis_port=$(free_port)

  runuser -u postgres -- "$PG_BIN/initdb" -D "$DIR/pg" -U postgres --auth=trust >"$DIR/initdb.log" 2>&1 \
    || die "initdb failed: $(tail -5 "$DIR/initdb.log")"
  # deadlock_timeout above the live servers' lock_timeout (tests/conftest.py): when a test's
  # teardown empties the tables while a page's last request (a pagehide save) still writes, the
  # request gives up, not the teardown.
  local pg_opts="-p $pg_port -k $DIR/pg -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200 -c deadlock_timeout=5s"
  runuser -u postgres -- "$PG_BIN/pg_ctl" -D "$DIR/pg" -o "$pg_opts" \
    -l "$DIR/pg/server.log" -w start >/dev/null || die "PostgreSQL did not start: $(tail -5 "$DIR/pg/server.log")"

  redis-server --bind 127.0.0.1 --port "$redis_port" --daemonize yes --pidfile "$DIR/redis/redis.pid" \
    --dir "$DIR/redis" --logfile "$DIR/redis/redis.log" --save '' --appendonly no >/dev/null
  for _ in $(seq 50); do
    redis-cli -p "$redis_port" ping >/dev/null 2>&1 && break
    sleep 0.1
  done
  redis-cli -p "$redis_port" ping >/dev/null || die "Redis did not start: $(tail -5 "$DIR/redis/redis.log")"

  {
    echo "export DATABASE_URL=postgresql://postgres@127.0.0.1:$pg_port/vibecode"
    echo "export REDIS_URL=redis://127.0.0.1:$redis_port/0"
    # For the resilience tests, which stop and start these servers themselves.
    echo "export VIBECODE_TEST_PG_DATA=$DIR/pg"
    echo "export VIBECODE_TEST_PG_OPTS='$pg_opts'"
    echo "export VIBECODE_TEST_REDIS_PORT=$redis_port"
    echo "export VIBECODE_TEST_REDIS_DIR=$DIR/redis"
  } | tee "$DIR/env"
}

stop() {
  if [ -f "$DIR/pg/postmaster.pid" ]; then
    runuser -u postgres -- "$PG_BIN/pg_ctl" -D "$DIR/pg" -m immediate stop >/dev/null 2>&1 || true
  fi
  if [ -f "$DIR/redis/redis.pid" ]; then
    kill "$(cat "$DIR/redis/redis.pid")" 2>/dev/null || true
  fi
  rm -rf "$DIR"
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  *) die "usage: $0 start|stop" ;;
esac
