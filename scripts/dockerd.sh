#!/usr/bin/env bash
# Make sure a Docker engine answers, with the gVisor runtime `runsc` registered (and `crun`, the
# C OCI runtime that `make bench` measures against runc for cold starts).
#
#   scripts/dockerd.sh          ensure an engine is up (idempotent; safe to run from any cwd)
#   scripts/dockerd.sh stop     stop the engine this script started (by its pid file)
#   scripts/dockerd.sh status   print whether an engine answers, exit 0/1
#
# Without systemd (containers, CI runners) this script installs docker.io, runsc and crun with
# apt-get when missing, registers runsc and crun in /etc/docker/daemon.json and starts
# `dockerd --bridge=none --iptables=false` in the background. There is no default bridge:
# sandbox containers run with network "none" unless put on a network the app creates.
#
# Environment:
#   VIBECODE_VAR_DIR       where logs and the pid file go (default: <repo>/var)
#   DOCKERD_WAIT_SECONDS   how long to wait for the engine to answer (default: 30)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VAR_DIR="${VIBECODE_VAR_DIR:-$ROOT/var}"
LOG_FILE="$VAR_DIR/log/dockerd.log"
# One engine per machine, whichever checkout started it: its pid file is machine-wide.
PID_FILE="${VIBECODE_DOCKERD_PIDFILE:-/run/vibecode-dockerd.pid}"
DAEMON_JSON="/etc/docker/daemon.json"
RUNSC_PATH="/usr/bin/runsc"
CRUN_PATH="/usr/bin/crun"
WAIT_SECONDS="${DOCKERD_WAIT_SECONDS:-30}"

say() { printf 'dockerd.sh: %s\n' "$*"; }
die() {
    # Everything after the first argument is advice for the operator, one line each.
    printf 'dockerd.sh: ERROR: %s\n' "$1" >&2
    shift
    if [ "$#" -gt 0 ]; then
        printf 'dockerd.sh: what to do:\n' >&2
        printf '  %s\n' "$@" >&2
    fi
    exit 1
}

# `docker info` can hang on a wedged socket; never wait on it forever.
engine_answers() { timeout 10 docker info >/dev/null 2>&1; }

# shellcheck disable=SC2016  # a Go template, not a shell expansion
engine_runtimes() {
    timeout 10 docker info --format '{{range $name, $_ := .Runtimes}}{{$name}} {{end}}' 2>/dev/null
}

engine_has_runsc() { engine_runtimes | tr ' ' '\n' | grep -qx runsc; }
engine_has_crun() { engine_runtimes | tr ' ' '\n' | grep -qx crun; }

engine_summary() {
    local version
    version="$(timeout 10 docker info --format '{{.ServerVersion}}' 2>/dev/null || echo '?')"
    echo "docker engine ${version} answers; runtimes: $(engine_runtimes | xargs)"
}

# The pid of the engine this script started, if it is still alive; empty otherwise.
our_pid() {
    local pid
    [ -f "$PID_FILE" ] || return 0
    pid="$(cat "$PID_FILE" 2>/dev/null || true)"
    if [[ "$pid" =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null \
        && [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = "dockerd" ]; then
        echo "$pid"
    fi
}

stop_ours() {
    local pid
    pid="$(our_pid)"
    if [ -z "$pid" ]; then
        rm -f "$PID_FILE"
        say "no engine started by this script is running"
        return 0
    fi
    say "stopping dockerd (pid $pid)"
    kill -TERM "$pid"
    # dockerd gives each running container up to 15 s to stop before it exits.
    for _ in $(seq 1 60); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.5
    done
    if kill -0 "$pid" 2>/dev/null; then
        say "dockerd (pid $pid) did not exit after 30 s; sending SIGKILL"
        kill -KILL "$pid" 2>/dev/null || true
        sleep 1
    fi
    rm -f "$PID_FILE"
    say "stopped"
}

need_root() {
    [ "$(id -u)" -eq 0 ] || die "$1 needs root, and this runs as $(id -un)." \
        "run it as root: sudo $ROOT/scripts/dockerd.sh" \
        "or start a Docker engine yourself with the runsc runtime registered in $DAEMON_JSON," \
        "  and give this user access to its socket (the 'docker' group)."
}

install_missing() {
    local pkgs=()
    command -v dockerd >/dev/null 2>&1 && command -v docker >/dev/null 2>&1 || pkgs+=(docker.io)
    [ -x "$RUNSC_PATH" ] || pkgs+=(runsc)
    [ -x "$CRUN_PATH" ] || pkgs+=(crun)
    [ "${#pkgs[@]}" -eq 0 ] && return 0

    need_root "installing ${pkgs[*]}"
    command -v apt-get >/dev/null 2>&1 || die "apt-get is not available to install ${pkgs[*]}." \
        "install Docker Engine and gVisor (runsc) with this system's package manager," \
        "then run this script again."
    say "installing ${pkgs[*]} with apt-get"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q || die "apt-get update failed." "check the Debian mirror in /etc/apt/sources.list*"
    apt-get install -y -q --no-install-recommends "${pkgs[@]}" \
        || die "apt-get install ${pkgs[*]} failed." "see the apt output above"
}

# Register runsc in daemon.json, keeping every other key. Prints "changed" if it wrote the file.
register_runsc() {
    mkdir -p "$(dirname "$DAEMON_JSON")"
    if [ ! -s "$DAEMON_JSON" ]; then
        cat >"$DAEMON_JSON" <<EOF
{
  "runtimes": {
    "runsc": {"path": "$RUNSC_PATH", "runtimeArgs": ["--network=none"]},
    "crun": {"path": "$CRUN_PATH"}
  }
}
EOF
        echo changed
        return 0
    fi
    command -v python3 >/dev/null 2>&1 || die "python3 is needed to merge $DAEMON_JSON." \
        "add this to $DAEMON_JSON by hand:" \
        "  \"runtimes\": {\"runsc\": {\"path\": \"$RUNSC_PATH\", \"runtimeArgs\": [\"--network=none\"]}}"
    python3 -c '
import json, sys
path, runsc, crun = sys.argv[1], sys.argv[2], sys.argv[3]
with open(path) as f:
    try:
        conf = json.load(f)
    except ValueError as exc:
        sys.exit(f"{path} is not valid JSON: {exc}")
want = {"runsc": {"path": runsc, "runtimeArgs": ["--network=none"]}, "crun": {"path": crun}}
if any(conf.get("runtimes", {}).get(name) != value for name, value in want.items()):
    conf.setdefault("runtimes", {}).update(want)
    with open(path + ".tmp", "w") as f:
        json.dump(conf, f, indent=2)
        f.write("\n")
    import os
    os.replace(path + ".tmp", path)
    print("changed")
' "$DAEMON_JSON" "$RUNSC_PATH" "$CRUN_PATH" || die "could not merge runsc into $DAEMON_JSON." "fix the file by hand"
}

start_engine() {
    local pid
    mkdir -p "$(dirname "$LOG_FILE")" "$(dirname "$PID_FILE")"
    say "starting dockerd --bridge=none --iptables=false (log: $LOG_FILE)"
    printf '\n=== %s dockerd.sh starting dockerd ===\n' "$(date -Is)" >>"$LOG_FILE"
    # setsid: own session, so the engine outlives this shell and the caller's Ctrl-C.
    # In a non-interactive script the background child is not a group leader, so setsid
    # and nohup exec in place and $! is dockerd's own pid.
    setsid nohup dockerd --bridge=none --iptables=false >>"$LOG_FILE" 2>&1 </dev/null &
    pid=$!
    echo "$pid" >"$PID_FILE"

    for _ in $(seq 1 $((WAIT_SECONDS * 2))); do
        if engine_answers; then
            return 0
        fi
        if ! kill -0 "$pid" 2>/dev/null; then
            rm -f "$PID_FILE"
            echo "--- last lines of $LOG_FILE ---" >&2
            tail -n 20 "$LOG_FILE" >&2 || true
            die "dockerd exited during startup." \
                "read $LOG_FILE; a common cause is another dockerd or containerd already" \
                "holding /var/run/docker.sock or /var/lib/docker."
        fi
        sleep 0.5
    done
    echo "--- last lines of $LOG_FILE ---" >&2
    tail -n 20 "$LOG_FILE" >&2 || true
    die "dockerd (pid $pid) did not answer within ${WAIT_SECONDS} s." \
        "read $LOG_FILE; stop it with: $ROOT/scripts/dockerd.sh stop"
}

# A foreign engine (e.g. docker.service started by installing docker.io on a systemd host)
# lacks runsc: register it and ask that engine to reload. Runtimes are reloaded on SIGHUP,
# so running containers are kept.
fix_foreign_engine() {
    if [ "$(id -u)" -eq 0 ]; then
        install_missing
        register_runsc >/dev/null
        if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet docker 2>/dev/null; then
            say "registered runsc; reloading docker.service"
            systemctl reload docker || true
            sleep 1
            engine_has_runsc && return 0
        fi
    fi
    die "a Docker engine that this script did not start is running without the runsc runtime." \
        "make sure gVisor is installed (apt-get install -y runsc) and registered in $DAEMON_JSON" \
        "  (as root, this script has just done both if it could):" \
        "  {\"runtimes\": {\"runsc\": {\"path\": \"$RUNSC_PATH\", \"runtimeArgs\": [\"--network=none\"]}}}" \
        "then reload that engine (SIGHUP reloads runtimes and keeps running containers):" \
        "  systemctl reload docker    # or: kill -HUP <pid of that dockerd>" \
        "and run this script again."
}

# crun is optional (runc stays the default unless it measures faster): an engine without it is
# given it by a reload (SIGHUP, or `systemctl reload docker`), which keeps running containers;
# failing that, a warning, never a restart of an engine that sandboxes run on.
ensure_crun() {
    local pid
    engine_has_crun && return 0
    if [ "$(id -u)" -ne 0 ]; then
        say "WARNING: crun is not registered with the engine (that needs root); runc and runsc work"
        return 0
    fi
    if [ ! -x "$CRUN_PATH" ]; then
        say "installing crun with apt-get"
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends crun >/dev/null \
            || { say "WARNING: apt-get install crun failed; runc and runsc work"; return 0; }
    fi
    register_runsc >/dev/null
    pid="$(our_pid)"
    if [ -n "$pid" ]; then
        say "registered crun; reloading dockerd (pid $pid, SIGHUP keeps containers running)"
        kill -HUP "$pid"
    elif command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet docker 2>/dev/null; then
        say "registered crun; reloading docker.service"
        systemctl reload docker || true
    else
        say "WARNING: registered crun in $DAEMON_JSON; reload the engine to use it (kill -HUP <dockerd pid>)"
        return 0
    fi
    for _ in $(seq 1 20); do
        engine_has_crun && return 0
        sleep 0.5
    done
    say "WARNING: the engine does not list crun after a reload; see $LOG_FILE"
}

ensure() {
    local pid
    if engine_answers && engine_has_runsc; then
        ensure_crun
        say "$(engine_summary)"
        return 0
    fi

    if ! engine_answers; then
        # Tell "no permission on the socket" apart from "no engine".
        if [ -S /var/run/docker.sock ] && [ "$(id -u)" -ne 0 ] && [ ! -w /var/run/docker.sock ]; then
            die "/var/run/docker.sock exists but $(id -un) cannot use it." \
                "add this user to the docker group (usermod -aG docker $(id -un)) and log in again," \
                "or run this script as root."
        fi
        need_root "starting dockerd"
        install_missing
        register_runsc >/dev/null
    fi

    if engine_answers; then
        # An engine answers but lacks runsc (or installing docker.io just started one).
        engine_has_runsc && { say "$(engine_summary)"; return 0; }
        pid="$(our_pid)"
        if [ -z "$pid" ]; then
            fix_foreign_engine
            say "$(engine_summary)"
            return 0
        fi
        need_root "restarting dockerd"
        install_missing
        register_runsc >/dev/null
        say "dockerd (pid $pid) lacks runsc; restarting it"
        stop_ours
    else
        pid="$(our_pid)"
        if [ -n "$pid" ]; then
            # Ours and alive, but it does not answer: wedged. Start over.
            say "dockerd (pid $pid) does not answer; restarting it"
            stop_ours
        fi
    fi

    start_engine
    engine_has_runsc || die "dockerd started but does not list the runsc runtime." \
        "check $DAEMON_JSON and $LOG_FILE"
    say "$(engine_summary)"
}

case "${1:-ensure}" in
    ensure | start) ensure ;;
    stop) stop_ours ;;
    status)
        if engine_answers; then say "$(engine_summary)"; else say "no engine answers"; exit 1; fi
        ;;
    -h | --help | help) sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//' ;;
    *) die "unknown command: $1" "usage: $0 [ensure|stop|status]" ;;
esac
