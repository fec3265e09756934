# Shared helpers for the project's scripts. Source it; do not run it.
# shellcheck shell=bash

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VAR_DIR="${VIBECODE_VAR_DIR:-$REPO_ROOT/var}"
VENV="$REPO_ROOT/.venv"
PY="$VENV/bin/python"
export PIP_DISABLE_PIP_VERSION_CHECK=1

log() { printf '\033[1;34m==>\033[0m %s\n' "$*" >&2; }
die() { printf '\033[1;31mERROR:\033[0m %s\n' "$*" >&2; exit 1; }

_apt_updated=""
# ensure_packages PKG... — install the Debian packages that are missing (root only).
ensure_packages() {
  local missing=()
  for pkg in "$@"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  if [ "$(id -u)" != 0 ]; then
    die "missing Debian packages: ${missing[*]}. Install them with: sudo apt-get install -y ${missing[*]}"
  fi
  log "installing Debian packages: ${missing[*]}"
  if [ -z "$_apt_updated" ]; then
    apt-get update -qq || die "apt-get update failed; check the machine's package mirror."
    _apt_updated=1
  fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null \
    || die "apt-get install ${missing[*]} failed."
}

# free_port — print a TCP port nobody listens on, on loopback.
free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

# ensure_workspaces_fs — a btrfs filesystem with quotas on for the workspaces (issue 13: disk
# quotas). VIBECODE_WORKSPACES_DIR given: check it. Otherwise make (once) the sparse image
# $VAR_DIR/workspaces.img and mount it at $VAR_DIR/workspaces (again after a reboot). Each
# checkout has its own image, so concurrent checkouts never share one; a lock serialises
# concurrent setups of one checkout. Without root or a free loop device: a warning, and
# workspaces get no disk quota.
ensure_workspaces_fs() {
  if [ -n "${VIBECODE_WORKSPACES_DIR:-}" ]; then
    if ! findmnt -n -o FSTYPE --target "$VIBECODE_WORKSPACES_DIR" 2>/dev/null | grep -qx btrfs; then
      die "VIBECODE_WORKSPACES_DIR=$VIBECODE_WORKSPACES_DIR is not on a btrfs filesystem (docs/deploy.md)."
    fi
    return 0
  fi
  local image="$VAR_DIR/workspaces.img" mnt="$VAR_DIR/workspaces"
  local size="${VIBECODE_WORKSPACES_IMAGE_SIZE:-50G}"
  if [ "$(id -u)" != 0 ]; then
    log "WARNING: not root: no loop image for workspace disk quotas; workspaces get no disk quota"
    return 0
  fi
  ensure_packages btrfs-progs util-linux
  mkdir -p "$mnt"
  (
    flock 9
    if ! mountpoint -q "$mnt"; then
      if [ ! -f "$image" ]; then
        log "making the workspaces filesystem: sparse btrfs image $image ($size)"
        truncate -s "$size" "$image.tmp"
        mkfs.btrfs -q -f "$image.tmp" >/dev/null
        mv "$image.tmp" "$image"
      fi
      # Reuse a loop device still attached to the image (an unmount half done) before taking a
      # new one: the machine has few.
      local dev
      dev="$(losetup -j "$image" -O NAME -n 2>/dev/null | head -n1)"
      log "mounting $image at $mnt"
      if [ -n "$dev" ]; then
        mount "$dev" "$mnt"
      elif ! mount -o loop "$image" "$mnt"; then
        log "WARNING: could not mount $image (no free loop device?); workspaces get no disk quota"
        exit 0
      fi
    fi
    # Idempotent: enabling quotas again is harmless.
    btrfs quota enable "$mnt"
  ) 9>"$VAR_DIR/workspaces.lock"
}
