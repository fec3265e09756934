"""Build the sandbox image with no image registry.

Two steps, both needing a Docker engine (start one with ``scripts/dockerd.sh``):

1. Base image: ``debootstrap --variant=minbase bookworm`` into a scratch directory under
   ``var/build``, then ``tar -C ROOTFS -c . | docker import - BASE``. debootstrap's own
   resolver fails on large package sets (npm), so the base stays minimal.
2. Language servers: ``npm ci`` in ``sandbox/lsp`` on the host (the build copies
   ``sandbox/lsp/node_modules`` in: npm cannot reach its registry from inside a build here, behind
   a TLS-inspecting proxy), skipped while its lockfile has not changed.
3. Sandbox image: ``sandbox/Dockerfile`` built with ``--network host`` and
   ``--build-arg BASE=<base>``; apt inside the build reaches the Debian mirror.

With a registry, the same Dockerfile builds from ``debian:bookworm-slim`` with a plain
``docker build sandbox/``.

The engine is reached through the sandbox runtime's image methods (the one door: only the
Docker backend speaks the Docker API), plus the ``docker`` CLI for ``docker import``. Run it with
``manage.py build_sandbox_image``, which passes the configured runtime.
"""

from __future__ import annotations

import collections
import hashlib
import os
import shlex
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import IO

from sessions_app.runtime.base import ImageBuildFailed, SandboxRuntime

SANDBOX_DIR = Path(__file__).resolve().parent
REPO_ROOT = SANDBOX_DIR.parent
# Copied into the image as /opt/vibecode/lsp: package.json, its lockfile, the servers' settings,
# and node_modules once the builder has run `npm ci` here.
LSP_DIR = SANDBOX_DIR / "lsp"

DEFAULT_IMAGE = "vibecode-sandbox:latest"
DEFAULT_BASE_IMAGE = "vibecode-base:bookworm"
DEFAULT_MIRROR = "http://deb.debian.org/debian"
SUITE = "bookworm"

# How many lines of a failing command's output a SandboxBuildError carries.
TAIL_LINES = 40

# Left out of the base image: the app never needs them and the Dockerfile runs
# `apt-get update` itself.
_BASE_TAR_EXCLUDES = (
    "./var/cache/apt/archives/*.deb",
    "./var/lib/apt/lists/*",
    "./proc/*",
    "./sys/*",
)

Progress = Callable[[str], None]


class SandboxBuildError(RuntimeError):
    """Building the base or the sandbox image failed.

    ``step`` names the step that failed, ``tail`` holds the last lines of its output.
    """

    def __init__(self, step: str, message: str, tail: Iterable[str] = ()) -> None:
        self.step = step
        self.message = message
        self.tail = list(tail)
        super().__init__(str(self))

    def __str__(self) -> str:
        text = f"{self.step}: {self.message}"
        if self.tail:
            text += "\n--- last output ---\n" + "\n".join(self.tail)
        return text


def _remove_replaced(runtime: SandboxRuntime, image_ids: list[str], clock: _Clock) -> None:
    """Best effort: drop the images a rebuild untagged, unless a container still uses them."""
    for image_id in image_ids:
        outcome = runtime.image_remove_untagged(image_id)
        if outcome not in {"gone", "still tagged"}:
            clock.say("cleanup", f"replaced image {image_id[:19]}: {outcome}")


RECIPE_LABEL = "vibecode.recipe"


def recipe() -> str:
    """A digest of what the image is made from: sandbox/Dockerfile and the files of sandbox/lsp
    (package.json, package-lock.json, the servers' settings; not node_modules, which npm makes
    from the lockfile). An image labelled with another one is rebuilt (its base is kept), so a
    package added to the Dockerfile or the lockfile reaches every checkout's next setup."""
    digest = hashlib.sha256()
    for path in [SANDBOX_DIR / "Dockerfile", *_lsp_sources()]:
        name = path.relative_to(SANDBOX_DIR).as_posix().encode()
        data = path.read_bytes()
        digest.update(b"%d:%s%d:" % (len(name), name, len(data)) + data)
    return digest.hexdigest()[:16]


def _lsp_sources() -> list[Path]:
    return sorted(
        path
        for path in LSP_DIR.rglob("*")
        if path.is_file() and "node_modules" not in path.relative_to(LSP_DIR).parts
    )


def var_dir() -> Path:
    """The project's runtime directory (``VIBECODE_VAR_DIR``, default ``<repo>/var``)."""
    return Path(os.environ.get("VIBECODE_VAR_DIR") or REPO_ROOT / "var")


def build_sandbox_image(
    *,
    image: str = DEFAULT_IMAGE,
    base_image: str = DEFAULT_BASE_IMAGE,
    mirror: str = DEFAULT_MIRROR,
    rebuild: bool = False,
    progress: Progress = print,
    runtime: SandboxRuntime,
) -> bool:
    """Make sure ``image`` exists, building it (and its base) when needed.

    Returns True if it built the image, False if ``image`` already existed and ``rebuild``
    is False. ``rebuild=True`` rebuilds both the base and the sandbox image.

    The base is made with debootstrap, which needs root; debootstrap is installed with
    apt-get when missing. The import uses the ``docker`` CLI on PATH, the build ``runtime``:
    both must reach the same engine (the default socket, or ``DOCKER_HOST``).

    Raises SandboxBuildError, carrying the tail of the failing output, on any failure.
    """
    if not rebuild and runtime.image_id(image):
        if runtime.image_labels(image).get(RECIPE_LABEL) == recipe():
            progress(f"{image} already exists and matches sandbox/Dockerfile and sandbox/lsp; nothing to do")
            return False
        progress(f"{image} was built from another sandbox/Dockerfile or sandbox/lsp; rebuilding it")

    clock = _Clock(progress)
    replaced = [runtime.image_id(image), runtime.image_id(base_image)]
    if rebuild or not runtime.image_id(base_image):
        _build_base_image(base_image=base_image, mirror=mirror, clock=clock)
    else:
        clock.say("base", f"{base_image} already exists; reusing it")

    _install_lsp_packages(clock)
    _build_from_dockerfile(runtime=runtime, image=image, base_image=base_image, nocache=rebuild, clock=clock)
    _remove_replaced(runtime, [old for old in replaced if old], clock)
    size_mb = runtime.image_size(image) / 1e6
    clock.say("done", f"built {image} ({size_mb:.0f} MB) in {clock.elapsed():.1f} s")
    return True


# --- steps -------------------------------------------------------------------------------


class _Clock:
    """Prefixes progress lines with the seconds elapsed since the build started."""

    def __init__(self, progress: Progress) -> None:
        self.progress = progress
        self.started = time.monotonic()

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def say(self, step: str, text: str) -> None:
        self.progress(f"[{self.elapsed():6.1f}s] {step}: {text}")


def _build_base_image(*, base_image: str, mirror: str, clock: _Clock) -> None:
    if os.geteuid() != 0:
        raise SandboxBuildError(
            "base",
            "debootstrap needs root to build the base image. Run this as root, or, where an "
            "image registry is reachable, build from the official image instead: "
            f"docker build -t {DEFAULT_IMAGE} {SANDBOX_DIR}",
        )
    if shutil.which("docker") is None:
        raise SandboxBuildError("base", "the docker CLI is not on PATH; run scripts/dockerd.sh to install it")
    _ensure_debootstrap(clock)

    build_dir = var_dir() / "build"
    build_dir.mkdir(parents=True, exist_ok=True)
    # Not /tmp: it may be a small tmpfs, and a rootfs is a few hundred MB.
    rootfs = Path(tempfile.mkdtemp(prefix="rootfs-", dir=build_dir))
    try:
        clock.say("debootstrap", f"minbase {SUITE} from {mirror} into {rootfs}")
        _run(
            ["debootstrap", "--variant=minbase", SUITE, str(rootfs), mirror],
            step="debootstrap",
            on_line=_DebootstrapPhases(clock),
        )
        clock.say("debootstrap", "done")
        clock.say("import", f"tar | docker import - {base_image}")
        _import_rootfs(rootfs, base_image)
        clock.say("import", "done")
    finally:
        _remove_rootfs(rootfs)


def _ensure_debootstrap(clock: _Clock) -> None:
    missing = []
    if shutil.which("debootstrap") is None:
        missing.append("debootstrap")
    if not Path("/usr/share/keyrings/debian-archive-keyring.gpg").exists():
        missing.append("debian-archive-keyring")
    if not missing:
        return
    if shutil.which("apt-get") is None:
        raise SandboxBuildError(
            "base", f"{' '.join(missing)} missing and apt-get is not available to install it"
        )
    clock.say("base", f"installing {' '.join(missing)} with apt-get")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    _run(["apt-get", "update", "-q"], step="apt-get update", env=env)
    _run(["apt-get", "install", "-y", "-q", *missing], step="apt-get install", env=env)


class _DebootstrapPhases:
    """Turns debootstrap's one-line-per-package output into one line per phase.

    A phase is the first word of an ``I:`` line (Retrieving, Extracting, Configuring...);
    only the first line of each run of a phase is shown. Retrieving and Validating alternate
    package by package, so they count as one phase. Warnings and errors are always shown.
    """

    _SAME_AS = {"Validating": "Retrieving"}

    def __init__(self, clock: _Clock) -> None:
        self.clock = clock
        self.phase = ""

    def __call__(self, line: str) -> None:
        if line.startswith(("W:", "E:")):
            self.clock.say("debootstrap", line)
            return
        if not line.startswith("I: "):
            return
        words = line[3:].split()
        phase = self._SAME_AS.get(words[0], words[0]) if words else ""
        if phase != self.phase:
            self.phase = phase
            self.clock.say("debootstrap", line[3:])


def _import_rootfs(rootfs: Path, base_image: str) -> None:
    tar_cmd = ["tar", "-C", str(rootfs), "--numeric-owner"]
    tar_cmd += [f"--exclude={pattern}" for pattern in _BASE_TAR_EXCLUDES]
    tar_cmd += ["-c", "."]
    import_cmd = [
        "docker", "import",
        "--change", "LABEL app=vibecode-base",
        "--change", "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "-", base_image,
    ]  # fmt: skip
    # Streamed through a pipe: the rootfs never exists as a tarball on disk.
    with tempfile.TemporaryFile(mode="w+") as tar_err:
        tar = subprocess.Popen(tar_cmd, stdout=subprocess.PIPE, stderr=tar_err)
        try:
            assert tar.stdout is not None
            _run(import_cmd, step="docker import", stdin=tar.stdout)
        finally:
            if tar.stdout is not None:
                tar.stdout.close()
            if tar.poll() is None:
                tar.kill()
            tar_rc = tar.wait()
        if tar_rc != 0:
            tar_err.seek(0)
            raise SandboxBuildError("tar", f"{shlex.join(tar_cmd)} exited with {tar_rc}", _tail(tar_err))


def _remove_rootfs(rootfs: Path) -> None:
    """Remove a debootstrap target even if a failed run left /proc or /dev mounted in it."""
    prefix = str(rootfs) + "/"
    try:
        with open("/proc/self/mountinfo") as f:
            mounts = [line.split()[4] for line in f]
    except OSError:
        mounts = []
    for mount in sorted((m for m in mounts if m.startswith(prefix)), key=len, reverse=True):
        subprocess.run(["umount", "-l", mount], check=False)
    # --one-file-system: never follow a mount we failed to take down into the host.
    subprocess.run(["rm", "-rf", "--one-file-system", str(rootfs)], check=False)


def _install_lsp_packages(clock: _Clock) -> None:
    """``npm ci`` into sandbox/lsp/node_modules, unless it was already run on this lockfile (a
    stamp in node_modules, left out of the image by sandbox/.dockerignore, says so)."""
    lock_digest = hashlib.sha256((LSP_DIR / "package-lock.json").read_bytes()).hexdigest()[:16]
    stamp = LSP_DIR / "node_modules" / f".vibecode-installed-{lock_digest}"
    if stamp.exists():
        clock.say("npm", "sandbox/lsp/node_modules matches its lockfile; reusing it")
        return
    npm = shutil.which("npm")
    if npm is None:
        raise SandboxBuildError(
            "npm",
            "npm is not on PATH; it installs the sandbox's language servers before the build. "
            "Install Node.js and npm (scripts/setup.sh does), or build online with "
            f"docker build -t {DEFAULT_IMAGE} {SANDBOX_DIR}",
        )
    clock.say("npm", f"npm ci in {LSP_DIR}")
    _run([npm, "ci", "--omit=dev", "--no-audit", "--no-fund", "--loglevel=error"], step="npm ci", cwd=LSP_DIR)
    stamp.touch()
    clock.say("npm", "done")


def _build_from_dockerfile(
    *, runtime: SandboxRuntime, image: str, base_image: str, nocache: bool, clock: _Clock
) -> None:
    """The equivalent of ``docker build --network host --build-arg BASE=... -t IMAGE sandbox/``."""
    clock.say("build", f"{image} from {SANDBOX_DIR / 'Dockerfile'} (BASE={base_image})")
    tail: collections.deque[str] = collections.deque(maxlen=TAIL_LINES)
    try:
        for line in runtime.image_build(
            context_dir=str(SANDBOX_DIR),
            tag=image,
            buildargs={"BASE": base_image},
            nocache=nocache,
            labels={RECIPE_LABEL: recipe()},
        ):
            tail.append(line)
            if line.startswith("Step "):
                clock.say("build", _shorten(line, 110))
    except ImageBuildFailed as exc:
        raise SandboxBuildError("build", str(exc), tail) from exc


# --- helpers -----------------------------------------------------------------------------


def _run(
    cmd: Sequence[str],
    *,
    step: str,
    on_line: Callable[[str], None] | None = None,
    env: dict[str, str] | None = None,
    stdin: IO[bytes] | None = None,
    cwd: Path | None = None,
) -> None:
    """Run ``cmd``, feeding each output line to ``on_line``; raise with the tail on failure."""
    tail: collections.deque[str] = collections.deque(maxlen=TAIL_LINES)
    proc = subprocess.Popen(
        list(cmd),
        stdin=stdin if stdin is not None else subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=env,
        cwd=cwd,
        text=True,
        errors="replace",
    )
    try:
        assert proc.stdout is not None
        for raw in proc.stdout:
            line = raw.rstrip()
            tail.append(line)
            if on_line is not None:
                on_line(line)
        rc = proc.wait()
    except BaseException:
        # Ctrl-C or a failing callback: do not leave the child running.
        proc.kill()
        proc.wait()
        raise
    if rc != 0:
        raise SandboxBuildError(step, f"{shlex.join(cmd)} exited with {rc}", tail)


def _tail(f: IO[str]) -> list[str]:
    return list(collections.deque((line.rstrip() for line in f), maxlen=TAIL_LINES))


def _shorten(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 3] + "..."
