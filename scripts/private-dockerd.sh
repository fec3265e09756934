#!/usr/bin/env bash
# A private Docker engine in one folder, for tests that stop, restart or break the engine: it
# shares nothing with the machine's engine (scripts/dockerd.sh), so restarting it never stops
# anybody else's containers.
#
#   scripts/private-dockerd.sh start DIR           start containerd + dockerd under DIR
#   scripts/private-dockerd.sh stop DIR            stop both (dockerd stops its containers first)
#   scripts/private-dockerd.sh destroy DIR         stop, then delete DIR and everything in it
#   scripts/private-dockerd.sh load DIR IMAGE...   copy images from the machine's engine into it
#   scripts/private-dockerd.sh status DIR          exit 0 when it answers
#
# Everything lives under DIR: the socket (DIR/docker.sock; use DOCKER_HOST=unix://DIR/docker.sock),
# data-root, exec-root, pid files, logs, and a containerd of its own (DIR/containerd/). The
# engine runs as scripts/dockerd.sh runs the machine's (--bridge=none --iptables=false, runsc
# registered), with its own daemon.json so /etc/docker/daemon.json is never read. Its own
# containerd because dockerd would otherwise share a system containerd at
# /run/containerd/containerd.sock when there is one. Needs root, dockerd and containerd.
#
# Environment:
#   PRIVATE_DOCKERD_WAIT_SECONDS   how long to wait for each daemon to answer (default: 60)
set -euo pipefail

RUNSC_PATH="/usr/bin/runsc"
WAIT_SECONDS="${PRIVATE_DOCKERD_WAIT_SECONDS:-60}"

say() { printf 'private-dockerd.sh: %s\n' "$*" >&2; }
die() { printf 'private-dockerd.sh: ERROR: %s\n' "$*" >&2; exit 1; }

usage() { sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//'; }

[ "$#" -ge 2 ] || { usage >&2; exit 2; }
command="$1"
mkdir -p "$2"
DIR="$(cd "$2" && pwd)"
shift 2

SOCK="$DIR/docker.sock"
CTRD_SOCK="$DIR/containerd/containerd.sock"
# A unix socket's path is at most 107 bytes; containerd adds ".ttrpc" to its own.
[ "${#CTRD_SOCK}" -le 100 ] || die "DIR is too long for a unix socket path: $DIR"

alive() {
    # alive PIDFILE NAME: print the pid if that process is alive and is NAME.
    local pid
    [ -f "$1" ] || return 0
    pid="$(cat "$1" 2>/dev/null || true)"
    if [[ "$pid" =~ ^[0-9]+$ ]] && [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = "$2" ]; then
        echo "$pid"
    fi
}

engine_answers() { timeout 10 docker -H "unix://$SOCK" version >/dev/null 2>&1; }

wait_for() {
    # wait_for WHAT PID LOG CHECK...: poll CHECK until it succeeds, the process dies, or time is up.
    local what="$1" pid="$2" log="$3"
    shift 3
    for _ in $(seq 1 $((WAIT_SECONDS * 4))); do
        "$@" && return 0
        if ! kill -0 "$pid" 2>/dev/null; then
            tail -n 20 "$log" >&2 || true
            die "$what exited during startup (log: $log)"
        fi
        sleep 0.25
    done
    tail -n 20 "$log" >&2 || true
    die "$what (pid $pid) did not answer within ${WAIT_SECONDS} s (log: $log)"
}

stop_pid() {
    # stop_pid PIDFILE NAME: SIGTERM, wait up to 60 s, then SIGKILL.
    local pid
    pid="$(alive "$1" "$2")"
    if [ -n "$pid" ]; then
        kill -TERM "$pid" 2>/dev/null || true
        for _ in $(seq 1 240); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.25
        done
        if kill -0 "$pid" 2>/dev/null; then
            say "$2 (pid $pid) did not exit within 60 s; sending SIGKILL"
            kill -KILL "$pid" 2>/dev/null || true
            for _ in $(seq 1 40); do
                kill -0 "$pid" 2>/dev/null || break
                sleep 0.25
            done
        fi
    fi
    rm -f "$1"
}

mounts_under() { awk -v d="$DIR/" 'index($5, d) == 1 { print $5 }' /proc/self/mountinfo | sort -r; }

start() {
    [ "$(id -u)" -eq 0 ] || die "a private dockerd needs root"
    command -v dockerd >/dev/null && command -v containerd >/dev/null \
        || die "dockerd and containerd are needed: scripts/dockerd.sh installs them"
    if engine_answers; then
        say "already running: unix://$SOCK"
        return 0
    fi
    mkdir -p "$DIR/containerd/root" "$DIR/containerd/state" "$DIR/data" "$DIR/exec"
    if [ -z "$(alive "$DIR/containerd.pid" containerd)" ]; then
        cat >"$DIR/containerd.toml" <<EOF
version = 2
root = "$DIR/containerd/root"
state = "$DIR/containerd/state"
disabled_plugins = ["io.containerd.grpc.v1.cri"]

[grpc]
  address = "$CTRD_SOCK"
EOF
        setsid nohup containerd --config "$DIR/containerd.toml" >>"$DIR/containerd.log" 2>&1 </dev/null &
        echo "$!" >"$DIR/containerd.pid"
        wait_for containerd "$!" "$DIR/containerd.log" test -S "$CTRD_SOCK"
    fi

    local runtimes='{}'
    [ -x "$RUNSC_PATH" ] \
        && runtimes="{\"runsc\": {\"path\": \"$RUNSC_PATH\", \"runtimeArgs\": [\"--network=none\"]}}"
    printf '{"runtimes": %s}\n' "$runtimes" >"$DIR/daemon.json"
    setsid nohup dockerd --bridge=none --iptables=false \
        --config-file "$DIR/daemon.json" \
        --host "unix://$SOCK" \
        --containerd "$CTRD_SOCK" \
        --data-root "$DIR/data" \
        --exec-root "$DIR/exec" \
        --pidfile "$DIR/docker.pid" \
        >>"$DIR/dockerd.log" 2>&1 </dev/null &
    local pid=$!
    wait_for dockerd "$pid" "$DIR/dockerd.log" engine_answers
    say "running: DOCKER_HOST=unix://$SOCK (dockerd pid $pid)"
}

stop() {
    # dockerd --pidfile writes its own pid there; it stops its containers before it exits.
    stop_pid "$DIR/docker.pid" dockerd
    stop_pid "$DIR/containerd.pid" containerd
    local mount
    for mount in $(mounts_under); do
        umount "$mount" 2>/dev/null || umount -l "$mount" 2>/dev/null || true
    done
}

destroy() {
    stop
    # Never delete through a mount (a bind-mounted volume could be somebody's data).
    [ -z "$(mounts_under)" ] || die "still mounted under $DIR: $(mounts_under | xargs)"
    rm -rf --one-file-system "$DIR"
}

load() {
    [ "$#" -ge 1 ] || die "load needs at least one image name"
    engine_answers || die "no private engine answers at unix://$SOCK: start it first"
    # The machine's engine is whatever DOCKER_HOST names outside this script (default socket).
    docker save "$@" | docker -H "unix://$SOCK" load >/dev/null
}

case "$command" in
    start) start ;;
    stop) stop ;;
    destroy) destroy ;;
    load) load "$@" ;;
    status) engine_answers ;;
    *) usage >&2; exit 2 ;;
esac
