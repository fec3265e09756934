"""VibeCode's helper inside a sandbox: runs as the sandbox user, under ``python3 -I -c``.

Standard library only: it runs on the sandbox image's interpreter, by absolute path, started
through the container engine's exec API (never over a network), in ``/``, isolated (``-I``: no
``PYTHON*`` variables, no user site or ``.pth`` of the user's, no script directory or cwd on
``sys.path``). Nothing the user writes in /workspace or $HOME changes what runs here.

A persistent RPC loop: requests and responses are frames of a 4-byte big-endian length, a JSON
header and ``header["size"]`` payload bytes. Requests carry an ``id``; responses echo it, with
``ok``, ``result`` or ``error`` and ``more`` (further frames follow, for streams). Requests run on
threads, so a long exec does not hold up a file read. Frames with id 0 are the helper's own: a
``hello`` with its pid first, then a ``beat`` every second, so the backend can tell a stopped or
vanished helper from a busy one within seconds.

Runs (``exec``) take all their processes with them when they end or time out: each run's
processes carry a marker in their environment, the helper is a child subreaper (orphans of runs
come back to it) and a run's direct child dies with the helper (``PR_SET_PDEATHSIG``).

Path safety at the point of use: every path is walked from an fd of ``/workspace`` one component
at a time with ``O_NOFOLLOW``, so a symbolic link is never followed, anywhere in the path, and a
link swapped in mid-walk makes the call fail rather than escape (no check-then-use on strings).
"""

import sys

# Belt and braces beside -I: nothing under the user's directories is ever importable here.
sys.path[:] = [p for p in sys.path if p and p.startswith("/usr/") and not p.startswith("/usr/local")]

import base64
import ctypes
import errno
import fcntl
import hashlib
import json
import os
import pwd
import queue
import select
import selectors
import shutil
import signal
import socket
import stat
import struct
import subprocess
import threading
import time
import zipfile

ROOT = "/workspace"
CHUNK = 256 * 1024
MAX_LIST_ENTRIES = 10000
SKIP_DIRS = {".git", "node_modules", "__pycache__", ".home", ".venv", "venv"}


class AgentError(Exception):
    def __init__(self, code, detail, status=400, **extra):
        super().__init__(detail)
        self.payload = {"code": code, "detail": detail, "status": status, **extra}


ERRNO_ERRORS = {
    errno.ENOENT: ("not_found", "No such file or directory: {path}", 404),
    errno.EEXIST: ("already_exists", "{path} already exists.", 409),
    errno.ENOTEMPTY: ("already_exists", "{path} already exists.", 409),
    errno.ELOOP: ("symlink_refused", "{path} goes through a symbolic link; links are not followed.", 400),
    errno.ENOTDIR: ("not_a_directory", "{path}: a part of it is not a directory.", 400),
    errno.EISDIR: ("is_a_directory", "{path} is a directory.", 400),
    errno.EACCES: ("permission_denied", "Permission denied: {path}", 403),
    errno.EPERM: ("permission_denied", "Permission denied: {path}", 403),
    errno.ENOSPC: ("no_space", "The workspace is out of space.", 507),
    errno.EDQUOT: ("no_space", "The workspace is out of space.", 507),
    errno.ENAMETOOLONG: ("path_invalid", "The path is too long.", 400),
    errno.EXDEV: ("path_invalid", "{path} cannot be moved there.", 400),
}


def os_error(exc, path):
    code, detail, status = ERRNO_ERRORS.get(
        exc.errno, ("io_error", "{path}: " + (exc.strerror or "I/O error"), 500)
    )
    return AgentError(code, detail.format(path=path or "/workspace"), status)


# --- safe paths -------------------------------------------------------------------------------


def split(path):
    parts = [part for part in str(path).split("/") if part not in ("", ".")]
    for part in parts:
        if part == ".." or "\0" in part:
            raise AgentError("path_outside_workspace", "The path leaves the workspace.")
        if len(part.encode()) > 255:
            raise AgentError("path_invalid", "A part of the path is too long.")
    return parts


def open_dir(parts, *, create=False, path=""):
    """An fd of the directory ``/workspace/<parts>``, never following a link."""
    fd = os.open(ROOT, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        for part in parts:
            if create:
                try:
                    os.mkdir(part, 0o755, dir_fd=fd)
                except FileExistsError:
                    pass
            child = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=fd)
            os.close(fd)
            fd = child
        return fd
    except OSError as exc:
        os.close(fd)
        if exc.errno == errno.ENOTDIR:
            # O_DIRECTORY|O_NOFOLLOW on a link gives ENOTDIR on some kernels: tell them apart.
            link = _is_link_somewhere(parts)
            raise (os_error(OSError(errno.ELOOP, "link"), path) if link else os_error(exc, path)) from None
        raise os_error(exc, path) from None
    except BaseException:
        os.close(fd)
        raise


def _is_link_somewhere(parts):
    current = ROOT
    for part in parts:
        current = os.path.join(current, part)
        if os.path.islink(current):
            return True
    return False


def parent_of(path, *, create=False):
    parts = split(path)
    if not parts:
        raise AgentError("workspace_root", "That operation is not allowed on the workspace root.")
    return open_dir(parts[:-1], create=create, path=path), parts[-1]


def shown(name):
    """A name as the API shows it: names that are not UTF-8 get U+FFFD where bytes don't decode
    (they can be seen and deleted from the terminal, not opened from the explorer)."""
    return os.fsencode(name).decode("utf-8", "replace")


def entry(dir_fd, name, rel):
    info = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    if stat.S_ISLNK(info.st_mode):
        kind = "symlink"
    elif stat.S_ISDIR(info.st_mode):
        kind = "directory"
    else:
        kind = "file"
    return {
        "name": shown(name),
        "path": shown(rel),
        "type": kind,
        "size": info.st_size,
        "mtime": info.st_mtime,
    }


def join(base, name):
    return f"{base}/{name}" if base else name


def etag_of(data):
    return hashlib.sha256(data).hexdigest()[:32]


def read_fd(fd):
    chunks = []
    while True:
        chunk = os.read(fd, CHUNK)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)


def open_file(dir_fd, name, path):
    try:
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK, dir_fd=dir_fd)
    except OSError as exc:
        raise os_error(exc, path) from None
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode):
        os.close(fd)
        if stat.S_ISDIR(info.st_mode):
            raise AgentError("is_a_directory", f"{path} is a directory.")
        raise AgentError("not_a_file", f"{path} is not a regular file.")
    os.set_blocking(fd, True)
    return fd, info


def open_path(path):
    """An fd of the regular file at ``path``, walked without following links, and its stat."""
    dir_fd, name = parent_of(path)
    try:
        return open_file(dir_fd, name, path)
    finally:
        os.close(dir_fd)


# --- operations -------------------------------------------------------------------------------

_path_locks = {}
_path_locks_guard = threading.Lock()


def path_lock(path):
    with _path_locks_guard:
        return _path_locks.setdefault(path, threading.Lock())


def op_list(args, payload):
    rel = "/".join(split(args.get("path", "")))
    fd = open_dir(split(rel), path=rel)
    try:
        entries = []
        names = sorted(os.listdir(fd))
        for name in names[:MAX_LIST_ENTRIES]:
            try:
                entries.append(entry(fd, name, join(rel, name)))
            except FileNotFoundError:
                continue
    finally:
        os.close(fd)
    entries.sort(key=lambda e: (e["type"] != "directory", e["name"].lower()))
    return {"path": rel, "entries": entries, "truncated": len(names) > MAX_LIST_ENTRIES}, b""


def op_read(args, payload):
    path = args["path"]
    fd, info = open_path(path)
    try:
        if info.st_size > int(args["max_bytes"]):
            raise AgentError(
                "file_too_large",
                f"{path} is {info.st_size} bytes, over the editor's limit.",
                413,
                size=info.st_size,
            )
        data = read_fd(fd)
    finally:
        os.close(fd)
    return {"path": path, "size": len(data), "mtime": info.st_mtime, "etag": etag_of(data)}, data


def op_write(args, payload):
    """Atomic save: a temporary file in the same directory, then a rename over the target."""
    path = args["path"]
    dir_fd, name = parent_of(path, create=bool(args.get("create_parents")))
    try:
        with path_lock(path):
            mode = 0o644
            try:
                current = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
            except FileNotFoundError:
                current = None
            if current is not None:
                if stat.S_ISDIR(current.st_mode):
                    raise AgentError("is_a_directory", f"{path} is a directory; choose a file name.")
                if stat.S_ISLNK(current.st_mode):
                    raise AgentError("symlink_refused", f"{path} is a symbolic link; links are not followed.")
                mode = stat.S_IMODE(current.st_mode)
            expected = args.get("etag")
            if expected:
                actual = None
                if current is not None:
                    fd, _ = open_file(dir_fd, name, path)
                    try:
                        actual = etag_of(read_fd(fd))
                    finally:
                        os.close(fd)
                if actual != expected:
                    raise AgentError(
                        "conflict", f"{path} changed since you opened it.", 409, current_etag=actual
                    )
            if args.get("exclusive") and current is not None:
                raise AgentError("already_exists", f"{path} already exists.", 409)
            temp = f".{name[:200]}.vibecode-{os.getpid()}-{threading.get_ident()}.tmp"
            fd = os.open(
                temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, mode, dir_fd=dir_fd
            )
            try:
                digest = hashlib.sha256()
                size = 0
                for chunk in payload:
                    view = memoryview(chunk)
                    while view:
                        written = os.write(fd, view)
                        view = view[written:]
                    digest.update(chunk)
                    size += len(chunk)
                os.fchmod(fd, mode)
                os.close(fd)
                fd = None
                os.rename(temp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
            except BaseException:
                if fd is not None:
                    os.close(fd)
                try:
                    os.unlink(temp, dir_fd=dir_fd)
                except OSError:
                    pass
                raise
            info = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except OSError as exc:
        raise os_error(exc, path) from None
    finally:
        os.close(dir_fd)
    return {"path": path, "size": size, "mtime": info.st_mtime, "etag": digest.hexdigest()[:32]}, b""


def op_create(args, payload):
    path = args["path"]
    dir_fd, name = parent_of(path, create=True)
    try:
        if args["type"] == "directory":
            os.mkdir(name, 0o755, dir_fd=dir_fd)
        else:
            os.close(
                os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644, dir_fd=dir_fd)
            )
        result = entry(dir_fd, name, "/".join(split(path)))
    except OSError as exc:
        raise os_error(exc, path) from None
    finally:
        os.close(dir_fd)
    return result, b""


_libc = ctypes.CDLL(None, use_errno=True)
RENAME_NOREPLACE = 1


def rename_noreplace(src_fd, src, dst_fd, dst):
    renameat2 = getattr(_libc, "renameat2", None)
    if renameat2 is not None:
        if renameat2(src_fd, src.encode(), dst_fd, dst.encode(), RENAME_NOREPLACE) == 0:
            return
        err = ctypes.get_errno()
        if err not in (errno.ENOSYS, errno.EINVAL):
            raise OSError(err, os.strerror(err))
    # No renameat2 (old kernel or gVisor): check, then rename; the window is tiny.
    try:
        os.stat(dst, dir_fd=dst_fd, follow_symlinks=False)
        raise OSError(errno.EEXIST, "exists")
    except FileNotFoundError:
        os.rename(src, dst, src_dir_fd=src_fd, dst_dir_fd=dst_fd)


def op_move(args, payload):
    source, target = args["from"], args["to"]
    if split(target)[: len(split(source))] == split(source):
        raise AgentError("path_invalid", "A folder cannot be moved into itself.")
    src_fd, src_name = parent_of(source)
    try:
        dst_fd, dst_name = parent_of(target, create=True)
    except BaseException:
        os.close(src_fd)
        raise
    try:
        os.stat(src_name, dir_fd=src_fd, follow_symlinks=False)
        try:
            rename_noreplace(src_fd, src_name, dst_fd, dst_name)
        except OSError as exc:
            raise os_error(exc, target) from None
        result = entry(dst_fd, dst_name, "/".join(split(target)))
    except OSError as exc:
        raise os_error(exc, source) from None
    finally:
        os.close(src_fd)
        os.close(dst_fd)
    return result, b""


def op_delete(args, payload):
    path = args["path"]
    dir_fd, name = parent_of(path)
    try:
        info = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
        if stat.S_ISDIR(info.st_mode):
            shutil.rmtree(name, dir_fd=dir_fd)  # fd-based, never follows links
        else:
            os.unlink(name, dir_fd=dir_fd)
    except OSError as exc:
        raise os_error(exc, path) from None
    finally:
        os.close(dir_fd)
    return {"path": path}, b""


# --- search: ripgrep, run as an argv list (no shell) -----------------------------------------
#
# One op, three kinds (``args["kind"]``): ``text`` (matches, grouped by the caller), ``files``
# (every file name, for quick open) and ``replace`` (one file's new content, for preview and
# replace-all; the backend saves it through ``write`` with the etag, like the editor). rg is
# started by absolute path, without its config file, from an fd of the folder walked without
# links; it never follows links itself. Caps: matches in all and per file, result bytes per line,
# and time; past any of them rg is killed and the answer says ``truncated`` and why.

RG = "/usr/bin/rg"
RG_SKIP_GLOBS = ["!" + name for name in sorted(SKIP_DIRS)]
RG_LINE_CAP = 256 * 1024  # longer JSON lines (minified files) are dropped, not buffered
RG_TEXT_CAP = 500  # characters of a matching line kept around its first match
RG_ERRORS_CAP = 64 * 1024
RG_ETAG_BUDGET = 64 * 1024 * 1024  # bytes read to give the files with matches their etags


def _rg_pattern_args(args):
    argv = ["--no-config", "--color", "never"]
    argv.append("--case-sensitive" if args.get("match_case") else "--ignore-case")
    if not args.get("regex"):
        argv.append("--fixed-strings")
    if args.get("whole_word"):
        argv.append("--word-regexp")
    return argv


def _rg_glob_args(args):
    argv = ["--hidden", "--no-require-git"]
    for glob in RG_SKIP_GLOBS:
        argv += ["--glob", glob]
    for glob in args.get("include") or []:
        # A --glob would override .gitignore (rg lets globs win over ignore files); a file type
        # only narrows. Types match file names, so a glob with a folder in it stays a --glob.
        if "/" in str(glob):
            argv += ["--glob", str(glob)]
        else:
            argv += ["--type-add", f"vcinclude:{glob}"]
    if any("/" not in str(glob) for glob in args.get("include") or []):
        argv += ["--type", "vcinclude"]
    for glob in args.get("exclude") or []:
        argv += ["--glob", "!" + str(glob)]
    return argv


def _rg_refusal(errors):
    """rg's own complaint about the pattern or a glob, as a 400 (not about files it met)."""
    text = errors.decode("utf-8", "replace").strip()
    if "glob" in text and "error parsing glob" in text:
        return AgentError("invalid_glob", "A glob is not valid: " + text[:400])
    if "regex" in text or "not allowed" in text:
        return AgentError("invalid_regex", "The pattern is not a valid regular expression: " + text[:400])
    return None


class _Rg:
    """One rg process in its own session, a leader of this helper (so no run's clean-up takes it
    for an orphan), killed with the helper's thread, the deadline, or ``stop``."""

    def __init__(self, argv, dir_fd, stdin=None):
        def prepare():
            _die_with_helper()
            os.fchdir(dir_fd)

        with _leaders_lock:
            try:
                self.proc = subprocess.Popen(
                    [RG, *argv],
                    cwd="/",
                    env={"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"},
                    start_new_session=True,
                    preexec_fn=prepare,
                    stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                )
            except FileNotFoundError:
                raise AgentError(
                    "search_unavailable",
                    "This workspace's image has no ripgrep; recreate the workspace to search it.",
                    503,
                ) from None
            except OSError as exc:
                raise AgentError("workspace_busy", f"Search could not start: {exc.strerror}", 503) from None
            _leaders.add(self.proc.pid)
        self.errors = bytearray()
        if stdin is not None:
            threading.Thread(target=self._feed, args=(stdin,), daemon=True).start()

    def _feed(self, data):
        # The only writer and closer of rg's stdin; rg killed mid-write ends it with EPIPE.
        try:
            self.proc.stdin.write(data)
        except (OSError, ValueError):
            pass
        finally:
            try:
                self.proc.stdin.close()
            except (OSError, ValueError):
                pass

    def chunks(self, deadline):
        """stdout in chunks until EOF; ``None`` once when the deadline passes."""
        out, err = self.proc.stdout.fileno(), self.proc.stderr.fileno()
        fds = {out, err}
        while out in fds:
            left = deadline - time.monotonic()
            if left <= 0:
                yield None
                return
            readable, _, _ = select.select(list(fds), [], [], min(left, 0.5))
            for fd in readable:
                chunk = os.read(fd, 65536)
                if not chunk:
                    fds.discard(fd)
                elif fd == err:
                    self.errors += chunk[: max(0, RG_ERRORS_CAP - len(self.errors))]
                else:
                    yield chunk
        # Whatever rg still says on stderr (its refusal of a pattern comes just before it exits).
        while err in fds and time.monotonic() < deadline:
            readable, _, _ = select.select([err], [], [], 0.2)
            if not readable:
                break
            chunk = os.read(err, 65536)
            if not chunk:
                break
            self.errors += chunk[: max(0, RG_ERRORS_CAP - len(self.errors))]

    def stop(self):
        """Kill rg (if it still runs) and wait for it; its exit status (negative: a signal)."""
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except OSError:
            pass
        try:
            return self.proc.wait()
        finally:
            with _leaders_lock:
                _leaders.discard(self.proc.pid)
            for stream in (self.proc.stdout, self.proc.stderr):
                try:
                    stream.close()
                except OSError:
                    pass

    def wait(self, deadline):
        """Wait for rg to end by itself until the deadline; True if it did."""
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                return True
            time.sleep(0.01)
        return False


def _rg_lines(rg, deadline, state):
    """Complete lines of rg's stdout; a line over RG_LINE_CAP is dropped (``state["long"]``)."""
    buffer = bytearray()
    skipping = False
    for chunk in rg.chunks(deadline):
        if chunk is None:
            state["reason"] = "time"
            return
        start = 0
        while True:
            newline = chunk.find(b"\n", start)
            if newline < 0:
                if not skipping:
                    buffer += chunk[start:]
                    if len(buffer) > RG_LINE_CAP:
                        buffer.clear()
                        skipping = True
                        state["long"] += 1
                break
            if skipping:
                skipping = False
            else:
                buffer += chunk[start:newline]
                yield bytes(buffer)
            buffer.clear()
            start = newline + 1


def _rg_text(value):
    if value is None:
        return ""
    if "text" in value:
        return value["text"]
    return base64.b64decode(value.get("bytes") or "").decode("utf-8", "replace")


def _rg_path(base, raw):
    return join(base, raw[2:] if raw.startswith("./") else raw)


def _search_text(args, fd, rel):
    limit = int(args.get("max_matches", 2000))
    per_file = int(args.get("max_per_file", 200))
    deadline = time.monotonic() + float(args.get("timeout", 10))
    argv = _rg_pattern_args(args) + _rg_glob_args(args)
    argv += ["--json", "--no-messages", "--sort", "path", "--max-count", str(per_file)]
    argv += ["--regexp", str(args["q"]), "--", "."]
    rg = _Rg(argv, fd)
    state = {"reason": None, "long": 0}
    matches = []
    try:
        for line in _rg_lines(rg, deadline, state):
            try:
                event = json.loads(line)
            except ValueError:
                continue
            kind, data = event.get("type"), event.get("data") or {}
            if kind == "end" and data.get("stats", {}).get("matched_lines", 0) >= per_file:
                state["per_file"] = True
            if kind != "match":
                continue
            text = _rg_text(data.get("lines")).rstrip("\r\n")
            raw = text.encode("utf-8", "surrogatepass")
            ranges = []
            for sub in (data.get("submatches") or [])[:50]:
                # Byte offsets in the line; the browser wants character offsets.
                start = len(raw[: sub["start"]].decode("utf-8", "replace"))
                end = len(raw[: sub["end"]].decode("utf-8", "replace"))
                ranges.append([start, end])
            cut = 0
            if len(text) > RG_TEXT_CAP:
                first = ranges[0][0] if ranges else 0
                cut = max(0, min(first - 40, len(text) - RG_TEXT_CAP))
                text = text[cut : cut + RG_TEXT_CAP]
                ranges = [
                    [s - cut, min(e - cut, RG_TEXT_CAP)] for s, e in ranges if 0 <= s - cut < RG_TEXT_CAP
                ]
            matches.append(
                {
                    "path": _rg_path(rel, _rg_text(data.get("path"))),
                    "line": int(data.get("line_number") or 0),
                    "text": text,
                    "ranges": ranges,
                    "offset": cut,
                }
            )
            if len(matches) >= limit:
                state["reason"] = "matches"
                break
        finished = state["reason"] is None and rg.wait(deadline)
    finally:
        code = rg.stop()
    if finished and code == 2 and not matches:
        refusal = _rg_refusal(bytes(rg.errors))
        if refusal is not None:
            raise refusal
    if state["reason"] is None and code is not None and code < 0:
        state["reason"] = "interrupted"  # rg was killed, by the tenant or the kernel
    if state["reason"] is None and not finished:
        state["reason"] = "time"
    reason = state["reason"] or ("per_file" if state.get("per_file") else None)
    if reason is None and state["long"]:
        reason = "long_lines"
    return {
        "matches": matches,
        "truncated": reason is not None,
        "reason": reason,
        "etags": _etags([m["path"] for m in matches], int(args.get("etag_max_bytes") or 0)),
    }


def _etags(paths, max_bytes):
    """The etag of each file with matches, as the search saw it (replace-all checks it later):
    files the editor could open, up to RG_ETAG_BUDGET bytes in all; the others get none."""
    etags = {}
    budget = RG_ETAG_BUDGET
    for path in dict.fromkeys(paths):
        try:
            fd, info = open_path(path)
        except (AgentError, OSError):
            continue
        try:
            if info.st_size > max_bytes or info.st_size > budget:
                continue
            data = read_fd(fd)
            budget -= len(data)
            etags[path] = etag_of(data)
        except OSError:
            continue
        finally:
            os.close(fd)
    return etags


def _search_files(args, fd, rel):
    limit = int(args.get("max_files", 50000))
    deadline = time.monotonic() + float(args.get("timeout", 10))
    argv = ["--no-config", "--files", "--null", "--no-messages", "--sort", "path", *_rg_glob_args(args)]
    argv += ["--", "."]
    rg = _Rg(argv, fd)
    names = []
    reason = None
    buffer = b""
    try:
        for chunk in rg.chunks(deadline):
            if chunk is None:
                reason = "time"
                break
            parts = (buffer + chunk).split(b"\0")
            buffer = parts.pop()
            names.extend(parts)
            if len(names) >= limit:
                reason = "files"
                del names[limit:]
                break
        finished = reason is None and rg.wait(deadline)
    finally:
        code = rg.stop()
    if reason is None and code is not None and code < 0:
        reason = "interrupted"
    if reason is None and not finished:
        reason = "time"
    base = rel.encode("utf-8", "surrogateescape") + b"/" if rel else b""
    files = []
    for name in names:
        name = name[2:] if name.startswith(b"./") else name
        files.append(shown(os.fsdecode(base + name)))
    return {"files": files, "truncated": reason is not None, "reason": reason}


def _search_replace(args, payload):
    """One file's content with every match replaced (rg's ``--passthru --replace``: the same
    matcher as the search, ``$1``/``${name}`` in the replacement), and the lines that change.
    Refuses (409 ``conflict``) when ``etag`` is given and the file is not that version."""
    path = args["path"]
    fd, info = open_path(path)
    try:
        if info.st_size > int(args["max_bytes"]):
            raise AgentError("file_too_large", f"{path} is over the editor's limit.", 413, size=info.st_size)
        data = read_fd(fd)
    finally:
        os.close(fd)
    etag = etag_of(data)
    expected = args.get("etag")
    if expected and expected != etag:
        raise AgentError("conflict", f"{path} changed since the search.", 409, current_etag=etag)
    if b"\0" in data:
        raise AgentError("not_text", f"{path} is a binary file; it is left alone.", 415)
    try:
        old_text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise AgentError("not_text", f"{path} is not UTF-8 text; it is left alone.", 415) from None
    deadline = time.monotonic() + float(args.get("timeout", 10))
    argv = [*_rg_pattern_args(args), "--passthru", "--no-line-number", "--text", "--no-messages"]
    argv += ["--replace", str(args["replace"]), "--regexp", str(args["q"]), "-"]
    root = os.open(ROOT, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        rg = _Rg(argv, root, stdin=data)
    finally:
        os.close(root)
    out = bytearray()
    cap = int(args["max_bytes"])
    reason = None
    try:
        for chunk in rg.chunks(deadline):
            if chunk is None:
                reason = "time"
                break
            out += chunk
            if len(out) > cap + 1:
                reason = "size"
                break
        finished = reason is None and rg.wait(deadline)
    finally:
        code = rg.stop()
    if reason == "size":
        raise AgentError("file_too_large", f"{path} would grow over the editor's limit.", 413)
    if reason == "time" or not finished:
        raise AgentError("search_timeout", f"Replacing in {path} took too long.", 503)
    if code == 2:
        raise _rg_refusal(bytes(rg.errors)) or AgentError("search_failed", "ripgrep failed.", 503)
    if code not in (0, 1):
        raise AgentError("search_failed", f"ripgrep stopped ({code}) while replacing in {path}.", 503)
    if not data.endswith(b"\n") and out.endswith(b"\n"):
        del out[-1:]  # rg ends the last line; the file had no final newline
    new = bytes(out) if code == 0 else data
    new_text = new.decode("utf-8", "replace")
    old_lines, new_lines = old_text.split("\n"), new_text.split("\n")
    changes = []
    changed = 0
    if len(old_lines) == len(new_lines):
        for number, (before, after) in enumerate(zip(old_lines, new_lines, strict=True), 1):
            if before != after:
                changed += 1
                if len(changes) < int(args.get("max_changes", 200)):
                    changes.append(
                        {"line": number, "before": before[:RG_TEXT_CAP], "after": after[:RG_TEXT_CAP]}
                    )
    else:
        import difflib

        matcher = difflib.SequenceMatcher(a=old_lines, b=new_lines, autojunk=False)
        for tag, i1, i2, j1, j2 in matcher.get_opcodes():
            if tag == "equal":
                continue
            changed += 1
            if len(changes) < int(args.get("max_changes", 200)):
                changes.append(
                    {
                        "line": i1 + 1,
                        "before": "\n".join(old_lines[i1:i2])[:RG_TEXT_CAP],
                        "after": "\n".join(new_lines[j1:j2])[:RG_TEXT_CAP],
                    }
                )
    result = {"path": path, "etag": etag, "lines": changed, "changes": changes}
    return result, (new if args.get("content") else b"")


def op_search(args, payload):
    kind = args.get("kind", "text")
    if kind == "replace":
        return _search_replace(args, payload)
    rel = "/".join(split(args.get("path", "")))
    fd = open_dir(split(rel), path=rel)
    try:
        if kind == "files":
            return _search_files(args, fd, rel), b""
        return _search_text(args, fd, rel), b""
    finally:
        os.close(fd)


class FrameWriter:
    """A write-only stream whose bytes go out as response frames (``more: true``)."""

    def __init__(self, send, request_id):
        self.send = send
        self.request_id = request_id
        self.buffer = bytearray()

    def write(self, data):
        self.buffer += data
        if len(self.buffer) >= CHUNK:
            self.flush()
        return len(data)

    def flush(self):
        if self.buffer:
            self.send({"id": self.request_id, "ok": True, "more": True}, bytes(self.buffer))
            self.buffer.clear()


def op_stat(args, payload):
    path = args.get("path", "")
    parts = split(path)
    if not parts:
        return {"name": "", "path": "", "type": "directory", "size": 0, "mtime": os.stat(ROOT).st_mtime}, b""
    dir_fd, name = parent_of(path)
    try:
        return entry(dir_fd, name, "/".join(parts)), b""
    except OSError as exc:
        raise os_error(exc, path) from None
    finally:
        os.close(dir_fd)


def op_cat(args, payload, send=None, request_id=None):
    """Stream a file of any size as ``more`` frames (downloads)."""
    path = args["path"]
    limit = int(args.get("max_bytes") or 0)
    fd, info = open_path(path)
    try:
        if limit and info.st_size > limit:
            raise too_large(path, info.st_size, limit)
        sent = 0
        while True:
            chunk = os.read(fd, CHUNK)
            if not chunk:
                break
            sent += len(chunk)
            if limit and sent > limit:  # it grew while we read
                raise too_large(path, sent, limit)
            send({"id": request_id, "ok": True, "more": True}, chunk)
    finally:
        os.close(fd)
    return {"path": path, "size": info.st_size}, b""


def too_large(path, size, limit):
    return AgentError(
        "download_too_large",
        f"{path or 'The workspace'} is {size} bytes, over the download limit of {limit} bytes.",
        413,
        size=size,
        limit=limit,
    )


def tree_size(fd):
    total = 0
    for _, _dirs, filenames, dir_fd in os.fwalk(".", dir_fd=fd, follow_symlinks=False):
        for name in filenames:
            try:
                info = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
            except OSError:
                continue
            if stat.S_ISREG(info.st_mode):
                total += info.st_size
    return total


def op_zip(args, payload, send=None, request_id=None):
    rel = "/".join(split(args.get("path", "")))
    limit = int(args.get("max_bytes") or 0)
    fd = open_dir(split(rel), path=rel)
    out = FrameWriter(send, request_id)
    try:
        if limit:
            total = tree_size(fd)
            if total > limit:
                raise too_large(rel, total, limit)
        with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=1) as archive:
            for dirpath, dirnames, filenames, dir_fd in os.fwalk(".", dir_fd=fd, follow_symlinks=False):
                dirnames.sort()
                prefix = os.path.normpath(dirpath)
                prefix = "" if prefix == "." else prefix + "/"
                if prefix:
                    archive.writestr(zipfile.ZipInfo(prefix), b"")
                for name in sorted(filenames):
                    try:
                        ffd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK, dir_fd=dir_fd)
                    except OSError:
                        continue  # links and vanished files are left out
                    try:
                        info = os.fstat(ffd)
                        if not stat.S_ISREG(info.st_mode):
                            continue
                        os.set_blocking(ffd, True)
                        member = zipfile.ZipInfo(
                            prefix + name, time.localtime(max(info.st_mtime, 315532800))[:6]
                        )
                        member.compress_type = zipfile.ZIP_DEFLATED
                        member.external_attr = (stat.S_IMODE(info.st_mode) | stat.S_IFREG) << 16
                        with archive.open(member, "w", force_zip64=info.st_size > 2**31) as sink:
                            while True:
                                chunk = os.read(ffd, CHUNK)
                                if not chunk:
                                    break
                                sink.write(chunk)
                    finally:
                        os.close(ffd)
        out.flush()
    finally:
        os.close(fd)
    return {"path": rel}, b""


# --- supervised processes ---------------------------------------------------------------------


def oom_kills():
    for path in ("/sys/fs/cgroup/memory.events", "/sys/fs/cgroup/memory/memory.oom_control"):
        try:
            with open(path) as events:
                for line in events:
                    key, _, value = line.partition(" ")
                    if key == "oom_kill":
                        return int(value)
        except (OSError, ValueError):
            continue
    return None


PR_SET_PDEATHSIG = 1
PR_SET_CHILD_SUBREAPER = 36
RUN_MARKER = "VIBECODE_RUN"
_prctl = _libc.prctl
_prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]

# The environment runs get: the container's (HOME, PATH with ~/.local/bin...), captured before
# the helper trims its own (see ``main``).
USER_ENV = dict(os.environ)
# Pids of the runs' direct children still supervised; every other child of this subreaper is an
# orphan of a run (or a run's leftover zombie) and may be killed and reaped.
_leaders = set()
_active_tokens = set()
_leaders_lock = threading.Lock()


def _die_with_helper():
    """In the child between fork and exec: SIGKILL when the helper's thread that started it dies."""
    _prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


def _proc_stats():
    """(pid, the fields of /proc/<pid>/stat after the command name) of every process visible;
    fields[1] is the parent's pid and fields[3] the session's, as bytes. Processes that end
    meanwhile are skipped."""
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as handle:
                fields = handle.read().rsplit(b")", 1)[1].split()
        except (OSError, IndexError):
            continue
        yield int(name), fields


def _children():
    """Pids whose parent is this helper (its own threads are not in /proc's top level)."""
    me = str(os.getpid()).encode()
    return [pid for pid, fields in _proc_stats() if len(fields) > 1 and fields[1] == me]


def _environ(pid):
    try:
        with open(f"/proc/{pid}/environ", "rb") as handle:
            return set(handle.read().split(b"\0"))
    except OSError:
        return set()


def _marked(token):
    """Pids of processes whose environment carries ``VIBECODE_RUN=<token>``."""
    needle = f"{RUN_MARKER}={token}".encode()
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/environ", "rb") as handle:
                if needle in handle.read().split(b"\0"):
                    found.append(int(name))
        except OSError:
            continue
    return found


def reap_orphans(*, kill):
    """Reap (and with ``kill`` first SIGKILL) children of this subreaper that are not a run's
    supervised direct child: processes of runs that outlived them."""
    with _leaders_lock:  # held while listing: a run starting now is either a leader or not seen
        leaders, active = set(_leaders), {f"{RUN_MARKER}={t}".encode() for t in _active_tokens}
        children = _children()
    for pid in children:
        if pid in leaders or (kill and active and _environ(pid) & active):
            continue  # a run still going, or one of its processes
        if pid in _pty_hosts:
            if not kill:
                try:
                    if os.waitpid(pid, os.WNOHANG)[0]:
                        _pty_hosts.discard(pid)
                except ChildProcessError:
                    _pty_hosts.discard(pid)
            continue  # the terminals' host: not a run's
        if kill:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        try:
            os.waitpid(pid, 0 if kill else os.WNOHANG)
        except ChildProcessError:
            pass


def _alive(pid):
    """Whether ``pid`` is a live (not zombie) process."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            return handle.read().rsplit(b")", 1)[1].split()[0] != b"Z"
    except (OSError, IndexError):
        return False


def kill_runs_of_dead_helpers():
    """Kill processes of runs whose helper has died. ``PR_SET_PDEATHSIG`` reaches only a run's
    direct child; its setsid and double-forked descendants carry the run's marker, whose token
    starts with the pid of the helper that ran it. The next helper (and every live helper, now
    and then) finds and kills them, so a run never outlives its helper for long."""
    prefix = f"{RUN_MARKER}=".encode()
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        for item in _environ(name):
            if item.startswith(prefix):
                owner = item[len(prefix) :].split(b"-", 1)[0]
                if owner.isdigit() and not _alive(int(owner)):
                    try:
                        os.kill(int(name), signal.SIGKILL)
                    except OSError:
                        pass
                break


class Reaper:
    """Waits for the direct child with ``wait4``, which gives that child's own peak memory
    (``RUSAGE_CHILDREN`` would mix in every earlier command of this helper)."""

    def __init__(self, pid, token):
        self.pid = pid
        self.token = token
        self.status = None
        self.max_rss_kb = None

    def poll(self):
        if self.status is None:
            pid, status, usage = os.wait4(self.pid, os.WNOHANG)
            if pid:
                self.status, self.max_rss_kb = status, usage.ru_maxrss or None
        return self.status is not None

    def wait(self):
        if self.status is None:
            _, self.status, usage = os.wait4(self.pid, 0)
            self.max_rss_kb = usage.ru_maxrss or None
        return os.waitstatus_to_exitcode(self.status)

    def kill_all(self):
        """SIGKILL every process of the run until none is left: its process group, anything
        carrying its marker (setsid, nohup, double forks keep the environment), then orphans
        that came back to this subreaper (a descendant that wiped its environment)."""
        for _ in range(400):
            self.poll()
            victims = _marked(self.token)
            try:
                os.killpg(self.pid, signal.SIGKILL)
                group_alive = True
            except (ProcessLookupError, PermissionError):
                group_alive = False
            for pid in victims:
                try:
                    os.kill(pid, signal.SIGKILL)
                except OSError:
                    pass
            if not group_alive and not victims:
                break
            time.sleep(0.002)
        reap_orphans(kill=True)


def supervise(request):
    """Run ``argv`` in a new session; on timeout, and at the end in any case, kill its whole
    process group. Keep ``limit`` bytes of each stream and drain the rest."""
    limit = int(request["limit"])
    stdin_data = base64.b64decode(request.get("stdin") or "")
    env = dict(USER_ENV)
    env.update(request.get("env") or {})
    token = f"{os.getpid()}-{threading.get_ident()}-{time.monotonic_ns()}"
    env[RUN_MARKER] = token
    started = time.monotonic()
    oom_before = oom_kills()
    argv = [str(a) for a in request["argv"]]
    failure = None
    # Under the lock, so that no other run's clean-up takes this child for an orphan.
    with _leaders_lock:
        _active_tokens.add(token)
        try:
            child = subprocess.Popen(
                argv,
                cwd=request.get("cwd") or ROOT,
                env=env,
                start_new_session=True,
                preexec_fn=_die_with_helper,  # glibc keeps malloc fork-safe for this one call
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
            )
            _leaders.add(child.pid)
        except OSError as exc:
            failure = exc
            _active_tokens.discard(token)
        except BaseException:
            _active_tokens.discard(token)
            raise
    if failure is not None:
        message = f"{argv[0] if argv else ''}: {failure.strerror or failure}\n".encode()
        return {
            "exit_code": 127 if isinstance(failure, FileNotFoundError) else 126,
            "stdout": "",
            "stderr": base64.b64encode(message).decode(),
            "duration_ms": 0,
            "timed_out": False,
            "truncated": False,
            "oom_killed": False,
            "max_rss_kb": None,
        }
    reaper = Reaper(child.pid, token)
    out_fd, err_fd = child.stdout.fileno(), child.stderr.fileno()
    kept = {out_fd: bytearray(), err_fd: bytearray()}
    open_fds = {out_fd, err_fd}
    truncated = False
    stdin_fd = child.stdin.fileno()
    os.set_blocking(stdin_fd, False)
    pending = stdin_data
    if not pending:
        child.stdin.close()
        stdin_fd = None
    deadline = started + float(request["timeout"])
    timed_out = False
    exited_at = None
    while open_fds or not reaper.poll():
        now = time.monotonic()
        if now >= deadline:
            timed_out = True
            break
        if exited_at is None and reaper.poll():
            exited_at = now
        if exited_at is not None and now - exited_at > 0.2:
            break  # done; a background child still holding the output is not waited for
        if not open_fds:
            time.sleep(0.005)
            continue
        writers = [stdin_fd] if stdin_fd is not None else []
        readable, writable, _ = select.select(list(open_fds), writers, [], min(deadline - now, 0.05))
        for fd in readable:
            chunk = os.read(fd, 65536)
            if not chunk:
                open_fds.discard(fd)
                continue
            room = limit - len(kept[fd])
            if room > 0:
                kept[fd] += chunk[:room]
            if len(chunk) > room:
                truncated = True
        if writable:
            try:
                sent = os.write(stdin_fd, pending[:65536])
                pending = pending[sent:]
            except BrokenPipeError:
                pending = b""
            if not pending:
                child.stdin.close()
                stdin_fd = None
    try:
        reaper.kill_all()
        returncode = reaper.wait()
    finally:
        with _leaders_lock:
            _leaders.discard(child.pid)
            _active_tokens.discard(token)
    child.returncode = returncode  # so that Popen never waits for it again
    for stream in (child.stdout, child.stderr, child.stdin):
        try:
            stream.close()
        except (OSError, ValueError):
            pass
    duration_ms = int((time.monotonic() - started) * 1000)
    oom_after = oom_kills()
    killed = returncode == -signal.SIGKILL
    if oom_before is not None and oom_after is not None:
        oom_killed = oom_after > oom_before and killed and not timed_out
    else:
        oom_killed = killed and not timed_out  # no cgroup view (gVisor): a SIGKILL we did not send
    return {
        "exit_code": None if timed_out else (returncode if returncode >= 0 else 128 - returncode),
        "stdout": base64.b64encode(bytes(kept[out_fd])).decode(),
        "stderr": base64.b64encode(bytes(kept[err_fd])).decode(),
        "duration_ms": duration_ms,
        "timed_out": timed_out,
        "truncated": truncated,
        "oom_killed": oom_killed,
        "max_rss_kb": reaper.max_rss_kb,
    }


def op_exec(args, payload):
    return supervise(args), b""


MAX_PORTS = 256
MAX_FDS_SCANNED = 50000


def op_ports(args, payload):
    """Listening TCP ports of the sandbox (``/proc/net/tcp`` and ``tcp6``, LISTEN state), each with
    its address and, where this user may read ``/proc/<pid>/fd``, the owning process. Bounded: at
    most ``MAX_PORTS`` entries (``truncated`` says more exist) and ``MAX_FDS_SCANNED`` fds read."""

    def address(hex_addr):
        raw = bytes.fromhex(hex_addr)
        # The kernel prints each 32-bit word in host (little-endian) order.
        raw = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
        if len(raw) == 16 and raw[:12] == b"\0" * 10 + b"\xff\xff":
            raw = raw[12:]  # IPv4-mapped
        return socket.inet_ntop(socket.AF_INET if len(raw) == 4 else socket.AF_INET6, raw)

    found = {}
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as handle:
                lines = handle.readlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if len(fields) < 10 or fields[3] != "0A":  # 0A: TCP_LISTEN
                continue
            try:
                hex_addr, hex_port = fields[1].split(":")
                port, addr, inode = int(hex_port, 16), address(hex_addr), int(fields[9])
            except ValueError:
                continue
            found.setdefault((port, addr), inode)
    entries = sorted(found.items())
    truncated = len(entries) > MAX_PORTS
    entries = entries[:MAX_PORTS]
    wanted = {inode: None for _, inode in entries if inode}
    scanned = 0
    try:
        pids = sorted(int(name) for name in os.listdir("/proc") if name.isdigit())
    except OSError:
        pids = []
    for pid in pids:
        if scanned >= MAX_FDS_SCANNED or all(owner is not None for owner in wanted.values()):
            break
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue  # gone, or not ours to read
        hits = []
        for fd in fds:
            scanned += 1
            if scanned > MAX_FDS_SCANNED:
                break
            try:
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if target.startswith("socket:["):
                inode = int(target[8:-1]) if target[8:-1].isdigit() else 0
                if inode in wanted and wanted[inode] is None:
                    hits.append(inode)
        if hits:
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as handle:
                    argv = handle.read(4096).split(b"\0")
                command = " ".join(a.decode("utf-8", "replace") for a in argv if a)[:200]
            except OSError:
                command = ""
            for inode in hits:
                wanted[inode] = (pid, command)
    ports = []
    for (port, addr), inode in entries:
        owner = wanted.get(inode)
        ports.append(
            {
                "port": port,
                "address": addr,
                "pid": owner[0] if owner else None,
                "command": owner[1] if owner else "",
            }
        )
    return {"ports": ports, "truncated": truncated}, b""


# --- runs: long programs owned by this helper, read back from an offset -----------------------
#
# A streaming Run outlives any one backend request: ``run_start`` spawns it (supervised like
# ``exec``: its own session, the run marker, a leader of this subreaper, killed with the helper)
# and a pump thread copies its output (stdout and stderr merged, in the order written) into a
# bounded ring buffer. ``run_read`` returns output from a byte offset, waiting up to a second
# for more; bytes that fell out of the ring are reported as ``dropped``. ``run_input`` writes to
# its stdin without ever blocking, ``run_stop`` kills its whole tree, ``run_list`` lists them.
# Finished runs are kept (a bounded number) so that a reattach still sees the end.

RUN_BUFFER_BYTES = 1024 * 1024
RUN_READ_BYTES = 256 * 1024
RUN_READ_WAIT = 1.0
RUN_MAX_ACTIVE = 8
RUN_KEEP_FINISHED = 16
RUN_INPUT_BYTES = 64 * 1024

_runs = {}
_runs_lock = threading.Lock()


class _Run:
    def __init__(self, run_id, argv, label, timeout):
        self.id = run_id
        self.argv = argv
        self.label = label
        self.timeout = timeout
        self.started_at = time.time()
        self.started = time.monotonic()
        self.cond = threading.Condition()
        self.data = bytearray()  # the ring: bytes [base, base + len(data)) of the output
        self.base = 0
        self.finished = False
        self.stopped = False
        self.result = {}
        self.child = None
        self.reaper = None
        self.stdin_fd = None
        self.stdin_lock = threading.Lock()
        self.oom_before = oom_kills()

    def end(self):
        return self.base + len(self.data)

    def append(self, chunk):
        with self.cond:
            self.data += chunk
            excess = len(self.data) - RUN_BUFFER_BYTES
            if excess > 0:
                del self.data[:excess]
                self.base += excess
            self.cond.notify_all()

    def info(self):
        with self.cond:
            return {
                "run_id": self.id,
                "argv": self.argv,
                "label": self.label,
                "started_at": self.started_at,
                "running": not self.finished,
                "end_offset": self.end(),
                "first_offset": self.base,
                **self.result,
            }


def _run_get(args):
    run = _runs.get(str(args.get("run_id") or ""))
    if run is None:
        raise AgentError("run_not_found", "No such run: it ended long ago, or its helper restarted.", 404)
    return run


def _run_pump(run):
    """Copy the run's output into its ring until it ends, times out or is stopped; then kill
    every process it left and record how it ended."""
    child, reaper = run.child, run.reaper
    out_fd = child.stdout.fileno()
    open_out = True
    deadline = run.started + run.timeout
    timed_out = False
    exited_at = None
    while open_out or not reaper.poll():
        now = time.monotonic()
        if run.stopped:
            break
        if now >= deadline:
            timed_out = True
            break
        if exited_at is None and reaper.poll():
            exited_at = now
        if exited_at is not None and now - exited_at > 0.2:
            break  # done; a background child still holding the output is not waited for
        if not open_out:
            time.sleep(0.02)
            continue
        readable, _, _ = select.select([out_fd], [], [], min(deadline - now, 0.1))
        if readable:
            chunk = os.read(out_fd, 65536)
            if chunk:
                run.append(chunk)
            else:
                open_out = False
    try:
        reaper.kill_all()
        returncode = reaper.wait()
    finally:
        with _leaders_lock:
            _leaders.discard(child.pid)
            _active_tokens.discard(reaper.token)
    child.returncode = returncode
    with run.stdin_lock:
        run.stdin_fd = None
    for stream in (child.stdout, child.stdin):
        try:
            stream.close()
        except (OSError, ValueError):
            pass
    killed = returncode == -signal.SIGKILL
    code = returncode if returncode >= 0 else 128 - returncode
    oom_after = oom_kills()
    if run.oom_before is not None and oom_after is not None:
        killed = killed and oom_after > run.oom_before
    with run.cond:
        run.result = {
            "exit_code": None if timed_out or run.stopped else code,
            "timed_out": timed_out,
            "stopped": run.stopped and not timed_out,
            "oom_killed": killed and not timed_out and not run.stopped,
            "duration_ms": int((time.monotonic() - run.started) * 1000),
            "max_rss_kb": reaper.max_rss_kb,
        }
        run.finished = True
        run.cond.notify_all()
    _runs_prune()


def _runs_prune():
    with _runs_lock:
        done = [run for run in _runs.values() if run.finished]
        done.sort(key=lambda run: run.started)
        for run in done[: max(len(done) - RUN_KEEP_FINISHED, 0)]:
            _runs.pop(run.id, None)


def op_run_start(args, payload):
    argv = [str(a) for a in args.get("argv") or []]
    if not argv:
        raise AgentError("invalid_command", "argv is empty.")
    with _runs_lock:
        if sum(1 for run in _runs.values() if not run.finished) >= RUN_MAX_ACTIVE:
            detail = f"{RUN_MAX_ACTIVE} runs are going already; stop one first."
            raise AgentError("too_many_runs", detail, 429)
        run = _Run(os.urandom(8).hex(), argv, str(args.get("label") or argv[0])[:300], float(args["timeout"]))
        _runs[run.id] = run
    env = dict(USER_ENV)
    env.update(args.get("env") or {})
    env.setdefault("PYTHONUNBUFFERED", "1")  # output shows as it is printed, not at exit
    env[RUN_MARKER] = f"{os.getpid()}-{threading.get_ident()}-{time.monotonic_ns()}"
    failure = None
    with _leaders_lock:
        _active_tokens.add(env[RUN_MARKER])
        try:
            child = subprocess.Popen(
                argv,
                cwd=args.get("cwd") or ROOT,
                env=env,
                start_new_session=True,
                preexec_fn=_die_with_helper,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
            )
            _leaders.add(child.pid)
        except OSError as exc:
            failure = exc
            _active_tokens.discard(env[RUN_MARKER])
        except BaseException:
            _active_tokens.discard(env[RUN_MARKER])
            with _runs_lock:
                _runs.pop(run.id, None)
            raise
    if failure is not None:
        run.append(f"{argv[0]}: {failure.strerror or failure}\n".encode())
        with run.cond:
            run.result = {
                "exit_code": 127 if isinstance(failure, FileNotFoundError) else 126,
                "timed_out": False,
                "stopped": False,
                "oom_killed": False,
                "duration_ms": 0,
                "max_rss_kb": None,
            }
            run.finished = True
        return run.info(), b""
    run.child = child
    run.reaper = Reaper(child.pid, env[RUN_MARKER])
    run.stdin_fd = child.stdin.fileno()
    os.set_blocking(run.stdin_fd, False)
    try:
        threading.Thread(target=_run_pump, args=(run,), daemon=True).start()
    except RuntimeError:  # no room for a thread (a fork bomb elsewhere): nothing unsupervised
        run.reaper.kill_all()
        run.reaper.wait()
        child.returncode = -signal.SIGKILL
        child.stdout.close()
        child.stdin.close()
        with _leaders_lock:
            _leaders.discard(child.pid)
            _active_tokens.discard(env[RUN_MARKER])
        with _runs_lock:
            _runs.pop(run.id, None)
        raise AgentError("workspace_busy", "The workspace has no room to start a run now.", 503) from None
    return run.info(), b""


def op_run_read(args, payload):
    run = _run_get(args)
    offset = max(int(args.get("offset") or 0), 0)
    wait = min(max(float(args.get("wait", RUN_READ_WAIT)), 0.0), RUN_READ_WAIT)
    limit = min(max(int(args.get("max_bytes") or RUN_READ_BYTES), 1), RUN_READ_BYTES)
    until = time.monotonic() + wait
    with run.cond:
        while offset >= run.end() and not run.finished:
            left = until - time.monotonic()
            if left <= 0:
                break
            run.cond.wait(left)
        dropped = max(run.base - offset, 0)
        start = max(min(offset, run.end()), run.base)
        data = bytes(run.data[start - run.base : start - run.base + limit])
        finished = run.finished and start + len(data) >= run.end()
    info = run.info()
    info.update(offset=start, next_offset=start + len(data), dropped=dropped, finished=finished)
    return info, data


def op_run_input(args, payload):
    run = _run_get(args)
    data = b"".join(payload)
    if len(data) > RUN_INPUT_BYTES:
        raise AgentError("input_too_large", f"Send at most {RUN_INPUT_BYTES} bytes at a time.", 413)
    with run.stdin_lock:
        if run.stdin_fd is None or run.finished:
            raise AgentError("run_finished", "The run has ended or closed its input.", 409)
        try:
            written = os.write(run.stdin_fd, data) if data else 0
        except BlockingIOError:
            written = 0
        except OSError:  # the program closed its stdin
            run.stdin_fd = None
            raise AgentError("run_finished", "The program closed its input.", 409) from None
        if written < len(data):
            raise AgentError(
                "input_full", "The program is not reading its input; try again later.", 409, accepted=written
            )
        if args.get("eof"):
            try:
                run.child.stdin.close()
            except OSError:
                pass
            run.stdin_fd = None
    return {"run_id": run.id, "accepted": written}, b""


def op_run_stop(args, payload):
    run = _run_get(args)
    with run.cond:
        if not run.finished:
            run.stopped = True  # the pump sees it within 0.1 s and kills the run's every process
        until = time.monotonic() + 5
        while not run.finished and time.monotonic() < until:
            run.cond.wait(0.1)
    return run.info(), b""


def op_run_list(args, payload):
    with _runs_lock:
        runs = sorted(_runs.values(), key=lambda run: run.started)
    return {"runs": [run.info() for run in runs]}, b""


OPERATIONS = {
    "list": op_list,
    "read": op_read,
    "write": op_write,
    "create": op_create,
    "move": op_move,
    "delete": op_delete,
    "search": op_search,
    "stat": op_stat,
    "cat": op_cat,
    "zip": op_zip,
    "exec": op_exec,
    "ports": op_ports,
    "run_start": op_run_start,
    "run_read": op_run_read,
    "run_input": op_run_input,
    "run_stop": op_run_stop,
    "run_list": op_run_list,
}

STREAMING = {"cat", "zip"}

# --- the RPC loop -----------------------------------------------------------------------------


class Workers:
    """Threads started up front, plus extra ones while all are busy. A fork bomb in the session
    can leave no room for a new thread; then requests wait for a free worker instead of the
    helper dying (and taking the bomb's timeout with it)."""

    def __init__(self, count):
        self.jobs = queue.SimpleQueue()
        self.idle = 0
        self.lock = threading.Lock()
        for _ in range(count):
            self._start()

    def _start(self):
        thread = threading.Thread(target=self._work, daemon=True)
        thread.start()

    def _work(self):
        while True:
            with self.lock:
                self.idle += 1
            job = self.jobs.get()
            with self.lock:
                self.idle -= 1
            job[0](*job[1:])

    def submit(self, *job):
        self.jobs.put(job)
        with self.lock:
            busy = self.idle == 0
        if busy:
            try:
                self._start()
            except RuntimeError:
                pass  # no room for a thread now: the job waits for a worker


HEARTBEAT_SECONDS = 1.0
SWEEP_EVERY_BEATS = 3


def serve():
    workers = Workers(8)
    stdin = sys.stdin.buffer
    stdout = sys.stdout.buffer
    write_lock = threading.Lock()

    def send(header, payload=b""):
        header = dict(header, size=len(payload))
        data = json.dumps(header).encode()
        with write_lock:
            stdout.write(struct.pack(">I", len(data)) + data)
            if payload:
                stdout.write(payload)
            stdout.flush()

    def read_exact(n):
        data = stdin.read(n)
        if data is None or len(data) < n:
            raise EOFError
        return data

    def payload_chunks(size):
        remaining = size
        while remaining:
            chunk = stdin.read(min(CHUNK, remaining))
            if not chunk:
                raise EOFError
            remaining -= len(chunk)
            yield chunk

    def run(request_id, op, args, payload):
        try:
            if op in STREAMING:
                result, data = OPERATIONS[op](args, payload, send=send, request_id=request_id)
            else:
                result, data = OPERATIONS[op](args, payload)
            send({"id": request_id, "ok": True, "result": result}, data)
        except AgentError as exc:
            send({"id": request_id, "ok": False, "error": exc.payload})
        except Exception as exc:  # report, and keep serving
            send(
                {
                    "id": request_id,
                    "ok": False,
                    "error": {"code": "agent_error", "detail": f"{type(exc).__name__}: {exc}", "status": 500},
                }
            )

    def heartbeat():
        # Also reaps orphans of runs that ended on their own (this helper is their subreaper),
        # and now and then kills what runs of dead helpers left behind.
        beats = 0
        while True:
            time.sleep(HEARTBEAT_SECONDS)
            beats += 1
            try:
                send({"id": 0, "beat": True})
                reap_orphans(kill=False)
                if beats % SWEEP_EVERY_BEATS == 0:
                    kill_runs_of_dead_helpers()
            except Exception:  # noqa: S110 (stdout gone: the main loop sees EOF and ends)
                pass

    send({"id": 0, "hello": True, "pid": os.getpid()})
    threading.Thread(target=heartbeat, daemon=True).start()
    while True:
        try:
            (length,) = struct.unpack(">I", read_exact(4))
            header = json.loads(read_exact(length))
        except EOFError:
            return
        request_id, op = header.get("id"), header.get("op")
        args = header.get("args") or {}
        size = int(header.get("size") or 0)
        if op not in OPERATIONS:
            for _ in payload_chunks(size):
                pass
            send(
                {
                    "id": request_id,
                    "ok": False,
                    "error": {"code": "bad_op", "detail": f"unknown {op}", "status": 500},
                }
            )
            continue
        if op == "write":
            # The payload streams in on this thread, straight into the file. Whatever a refused
            # write did not read is drained, so the next frame starts where it should.
            chunks = payload_chunks(size)
            run(request_id, op, args, chunks)
            for _ in chunks:
                pass
            continue
        payload = b"".join(payload_chunks(size))
        workers.submit(run, request_id, op, args, [payload])


# --- tunnel mode: TCP connections both ways, over this process's stdin/stdout -------------------
#
# Started as ``... tunnel <egress_port>``, a second helper process carries TCP connections between
# the backend and 127.0.0.1 inside the sandbox, like ``kubectl port-forward`` through the API
# server: previews (the backend opens a channel to a port) and package egress (a program in the
# sandbox connects to 127.0.0.1:<egress_port>; the backend gets the connection as a channel).
# Same frames as ``serve``. Backend to here: ``open`` {ch, port}, ``data`` {ch} + bytes,
# ``credit`` {ch, n}, ``eof`` {ch}, ``close`` {ch}. Here to the backend: ``hello``, ``beat``,
# ``opened``/``refused`` {ch}, ``accept`` {ch} (an egress connection; its id is negative),
# ``data``, ``credit``, ``eof``, ``closed``. Each direction of a channel has a window of
# TUNNEL_WINDOW bytes: a side sends no more than the other has granted, so neither buffers more
# than that per channel, and a reader that stalls stalls only its own connection.

TUNNEL_WINDOW = 1024 * 1024
TUNNEL_FRAME = 256 * 1024
TUNNEL_CREDIT_BATCH = 64 * 1024
TUNNEL_MAX_CHANNELS = 512


class _TunnelChannel:
    def __init__(self, ch, sock, *, connecting):
        self.ch = ch
        self.sock = sock
        self.connecting = connecting
        self.send_credit = TUNNEL_WINDOW  # bytes we may still send to the backend
        self.inbox = bytearray()  # from the backend, not yet written to the socket
        self.written = 0  # written to the socket since the last credit we granted
        self.read_eof = False  # the socket said EOF (sent to the backend)
        self.write_eof = False  # the backend said EOF (shut down our write side once flushed)
        self.shut = False
        self.closing = False  # the backend closed it: deliver what it sent, then drop it


def tunnel(egress_port):
    import selectors

    sel = selectors.DefaultSelector()
    stdin_fd = sys.stdin.buffer.fileno()
    stdout_fd = sys.stdout.buffer.fileno()
    os.set_blocking(stdin_fd, False)
    os.set_blocking(stdout_fd, False)
    outbox = bytearray()
    inbuf = bytearray()
    channels = {}
    next_accept = [-1]

    def emit(header, payload=b""):
        header = dict(header, size=len(payload))
        data = json.dumps(header, separators=(",", ":")).encode()
        outbox.extend(struct.pack(">I", len(data)) + data)
        outbox.extend(payload)

    def interest(chan):
        if chan.sock is None:
            return
        events = 0
        if chan.connecting or chan.inbox or (chan.write_eof and not chan.shut):
            events |= selectors.EVENT_WRITE
        readable = not (chan.connecting or chan.read_eof or chan.closing) and chan.send_credit > 0
        if readable and len(outbox) < 4 * TUNNEL_WINDOW:
            events |= selectors.EVENT_READ
        key = sel.get_map().get(chan.sock)
        if events and key is None:
            sel.register(chan.sock, events, chan)
        elif events and key.events != events:
            sel.modify(chan.sock, events, chan)
        elif not events and key is not None:
            sel.unregister(chan.sock)

    def drop(chan, *, tell=True):
        if channels.pop(chan.ch, None) is None:
            return
        if chan.sock is not None:
            if chan.sock in sel.get_map():
                sel.unregister(chan.sock)
            chan.sock.close()
        if tell:
            emit({"ev": "closed", "ch": chan.ch})

    def on_frame(header, payload):
        op, ch = header.get("op"), header.get("ch")
        chan = channels.get(ch)
        if op == "open" and isinstance(ch, int) and ch > 0 and chan is None:
            port = header.get("port")
            if not isinstance(port, int) or not 0 < port < 65536 or len(channels) >= TUNNEL_MAX_CHANNELS:
                emit({"ev": "refused", "ch": ch, "error": "bad port or too many connections"})
                return
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # a relay: never wait to batch
            sock.setblocking(False)
            err = sock.connect_ex(("127.0.0.1", port))
            if err not in (0, errno.EINPROGRESS):
                sock.close()
                emit({"ev": "refused", "ch": ch, "error": os.strerror(err)})
                return
            chan = channels[ch] = _TunnelChannel(ch, sock, connecting=True)
            interest(chan)
        elif chan is None:
            return  # closed already on this side; its late frames are dropped
        elif op == "data":
            chan.inbox.extend(payload)
            if len(chan.inbox) > TUNNEL_WINDOW:
                drop(chan)  # the backend ignored our window
                return
            interest(chan)
        elif op == "credit":
            chan.send_credit += int(header.get("n") or 0)
            interest(chan)
        elif op == "eof":
            chan.write_eof = True
            interest(chan)
        elif op == "close":
            # What the backend sent before it closed still reaches the program, as with TCP.
            chan.closing = chan.write_eof = True
            if chan.inbox:
                interest(chan)
            else:
                drop(chan, tell=False)

    def on_stdin():
        while True:
            try:
                chunk = os.read(stdin_fd, 1 << 20)
            except BlockingIOError:
                return True
            if not chunk:
                return False
            inbuf.extend(chunk)
            while len(inbuf) >= 4:
                (length,) = struct.unpack(">I", inbuf[:4])
                if len(inbuf) < 4 + length:
                    break
                header = json.loads(inbuf[4 : 4 + length])
                size = int(header.get("size") or 0)
                if len(inbuf) < 4 + length + size:
                    break
                payload = bytes(inbuf[4 + length : 4 + length + size])
                del inbuf[: 4 + length + size]
                on_frame(header, payload)

    def on_socket(chan, events):
        if chan.connecting:
            err = chan.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if err:
                channels.pop(chan.ch, None)
                sel.unregister(chan.sock)
                chan.sock.close()
                emit({"ev": "refused", "ch": chan.ch, "error": os.strerror(err)})
                return
            chan.connecting = False
            emit({"ev": "opened", "ch": chan.ch})
        if events & selectors.EVENT_WRITE and chan.inbox:
            try:
                sent = chan.sock.send(chan.inbox)
            except BlockingIOError:
                sent = 0
            except OSError:
                drop(chan)
                return
            del chan.inbox[:sent]
            chan.written += sent
            if chan.written >= TUNNEL_CREDIT_BATCH or not chan.inbox:
                emit({"ev": "credit", "ch": chan.ch, "n": chan.written})
                chan.written = 0
        if chan.write_eof and not chan.inbox and not chan.shut:
            chan.shut = True
            try:
                chan.sock.shutdown(socket.SHUT_WR)
            except OSError:
                pass
        if chan.closing and not chan.inbox:
            drop(chan, tell=False)
            return
        if events & selectors.EVENT_READ:
            try:
                data = chan.sock.recv(min(chan.send_credit, TUNNEL_FRAME))
            except BlockingIOError:
                data = None
            except OSError:
                data = b""
            if data:
                chan.send_credit -= len(data)
                emit({"ev": "data", "ch": chan.ch}, data)
            elif data is not None:
                chan.read_eof = True
                emit({"ev": "eof", "ch": chan.ch})
        if chan.read_eof and chan.shut and not chan.inbox:
            drop(chan)
            return
        interest(chan)

    def on_accept(listener):
        try:
            sock, _ = listener.accept()
        except OSError:
            return
        if len(channels) >= TUNNEL_MAX_CHANNELS:
            sock.close()
            return
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.setblocking(False)
        ch = next_accept[0]
        next_accept[0] -= 1
        chan = channels[ch] = _TunnelChannel(ch, sock, connecting=False)
        emit({"ev": "accept", "ch": ch, "kind": "egress"})
        interest(chan)

    sel.register(stdin_fd, selectors.EVENT_READ, "stdin")
    if egress_port:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        # Each backend replica has a tunnel of its own: they share the port.
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        try:
            listener.bind(("127.0.0.1", egress_port))
            listener.listen(64)
            listener.setblocking(False)
            sel.register(listener, selectors.EVENT_READ, "listener")
        except OSError as exc:  # taken by the user's own program: no egress for them
            emit({"id": 0, "ev": "warning", "detail": f"egress port {egress_port}: {exc}"})
    emit({"id": 0, "hello": True, "pid": os.getpid()})
    next_beat = time.monotonic() + HEARTBEAT_SECONDS
    stdout_registered = False
    while True:
        if outbox and not stdout_registered:
            sel.register(stdout_fd, selectors.EVENT_WRITE, "stdout")
            stdout_registered = True
        timeout = max(next_beat - time.monotonic(), 0)
        for key, events in sel.select(timeout):
            if key.data == "stdin":
                if not on_stdin():
                    return
            elif key.data == "stdout":
                try:
                    sent = os.write(stdout_fd, outbox[:TUNNEL_WINDOW])
                except BlockingIOError:
                    sent = 0
                del outbox[:sent]
                if not outbox:
                    sel.unregister(stdout_fd)
                    stdout_registered = False
                    for chan in list(channels.values()):
                        interest(chan)
            elif key.data == "listener":
                on_accept(key.fileobj)
            elif key.data.ch in channels:
                on_socket(key.data, events)
        if time.monotonic() >= next_beat:
            next_beat = time.monotonic() + HEARTBEAT_SECONDS
            emit({"id": 0, "beat": True})


# --- lsp mode: one language server per language, behind a supervisor ----------------------------
#
# Started as ``... lsp LANGUAGE -- ARGV...`` by the runtime's ``open_language_server``; the contract
# is docs/lsp-protocol.md ("In the sandbox: the supervisor"). This process's stdin and stdout carry
# LSP's Content-Length framing to and from the backend, and the server gets the same on its pipes.
# Both directions are parsed into whole messages, so what the supervisor adds itself (file changes
# and settings for the server, ``$/vibecode/...`` notices for the backend) never lands inside
# another message. Threads: one per direction, the file watcher, and one waiting for the server;
# the main thread starts the server and ends everything.
#
# The server is not a run: no run marker, not a child of any helper. The helper's sweeps (orphans
# of runs, runs of dead helpers) never see it, and this mode never sweeps anything but its own
# children.

LSP_LOCK_DIR = "/tmp/vibecode-lsp"
# <language>.json in the image: the server's defaults, laid under what the editor sends (see
# ``lsp_defaults``).
LSP_SETTINGS_DIR = "/opt/vibecode/lsp/settings"
LSP_MAX_HEADER = 8 * 1024
LSP_MAX_MESSAGE = 64 * 1024 * 1024  # well over the backend's own cap: only a bound on memory here
LSP_TAKEOVER_SECONDS = 2.0  # a supervisor told to stop that still holds the lock then is killed
LSP_LOCK_GIVE_UP_SECONDS = 20.0
LSP_WATCH_SECONDS = 2.0
LSP_WATCH_MAX_ENTRIES = 20000
LSP_WATCH_SKIP = {".git", "node_modules", "__pycache__", ".venv", "venv", ".mypy_cache", ".home"}
LSP_CREATED, LSP_CHANGED, LSP_DELETED = 1, 2, 3  # LSP's FileChangeType
# The editor's messages that get the image's defaults (``lsp_defaults``) laid under a field of
# their params; the defaults' key is the field's name.
LSP_DEFAULTED = {"initialize": "initializationOptions", "workspace/didChangeConfiguration": "settings"}


class LspReader:
    """Whole LSP messages from a pipe: ``read()`` gives the next body, ``None`` at the end, and
    raises ``ValueError`` when the framing is broken (a header line that is not one, no or a bad
    Content-Length, a header over LSP_MAX_HEADER or a body over LSP_MAX_MESSAGE)."""

    def __init__(self, fd):
        self.fd = fd
        self.buffer = bytearray()

    def _fill(self):
        chunk = os.read(self.fd, 65536)
        self.buffer += chunk
        return bool(chunk)

    def read(self):
        while (end := self.buffer.find(b"\r\n\r\n")) < 0:
            if len(self.buffer) > LSP_MAX_HEADER:
                raise ValueError("header too long")
            if not self._fill():
                return None  # ended between messages, or inside a header: either way, the end
        length = None
        for line in bytes(self.buffer[:end]).split(b"\r\n"):
            name, colon, value = line.partition(b":")
            if not colon:
                raise ValueError("not a header line")
            if name.strip().lower() == b"content-length":
                value = value.strip()
                if not value.isdigit() or len(value) > 12:
                    raise ValueError("bad Content-Length")
                length = int(value)
        if length is None or length > LSP_MAX_MESSAGE:
            raise ValueError("no Content-Length, or too long a message")
        del self.buffer[: end + 4]
        while len(self.buffer) < length:
            if not self._fill():
                return None  # ended inside a message: what came of it is dropped
        body = bytes(self.buffer[:length])
        del self.buffer[:length]
        return body


def lsp_frame(message):
    body = message if isinstance(message, bytes) else json.dumps(message, separators=(",", ":")).encode()
    return b"Content-Length: %d\r\n\r\n" % len(body) + body


def write_all(fd, data):
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def lsp_lock(language):
    """The fd of ``LSP_LOCK_DIR/<language>.lock``, exclusively flocked; ``None`` if it could not
    be had within LSP_LOCK_GIVE_UP_SECONDS. Its holder is told it is replaced (SIGUSR1 to its
    process group: a SIGTERM is the user's ``pkill``, which the editor must see as a crash, not a
    takeover); if it still holds the lock LSP_TAKEOVER_SECONDS later, it and its server's process
    group are killed (their pids are in the file)."""
    import fcntl

    os.makedirs(LSP_LOCK_DIR, mode=0o700, exist_ok=True)
    flags = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC
    fd = os.open(f"{LSP_LOCK_DIR}/{language}.lock", flags, 0o600)
    started = time.monotonic()
    told = killed = False
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return fd
        except BlockingIOError:
            pass
        holders = [int(word) for word in os.pread(fd, 64, 0).split() if word.isdigit() and int(word) > 1]
        waited = time.monotonic() - started
        if waited > LSP_LOCK_GIVE_UP_SECONDS:
            os.close(fd)
            return None
        if not told:
            told = True
            victims, how = holders[:1], signal.SIGUSR1  # the supervisor: it kills its server
        elif not killed and waited > LSP_TAKEOVER_SECONDS:
            killed = True
            victims, how = holders, signal.SIGKILL  # the supervisor and its server
        else:
            victims = []
        for pid in victims:
            try:
                os.killpg(pid, how)
            except OSError:
                pass
        time.sleep(0.05)


def lsp_defaults(language):
    """The image's defaults for a language's server, from ``LSP_SETTINGS_DIR/<language>.json``:
    ``initializationOptions`` go under the editor's own in ``initialize``; ``settings`` are sent
    as workspace/didChangeConfiguration right after ``initialized``, and go under the editor's own
    in any later one (the Python server replaces its settings with each, rather than merging). No file, or
    not an object: nothing."""
    try:
        with open(f"{LSP_SETTINGS_DIR}/{language}.json", "rb") as handle:
            defaults = json.loads(handle.read(64 * 1024))
    except (OSError, ValueError):
        return {}
    if not isinstance(defaults, dict):
        return {}
    return {key: value for key, value in defaults.items() if isinstance(value, dict)}


def merged(base, over):
    """``over`` laid on ``base``, recursively for objects."""
    out = dict(base)
    for key, value in over.items():
        both = isinstance(value, dict) and isinstance(out.get(key), dict)
        out[key] = merged(out[key], value) if both else value
    return out


def lsp_method(body):
    try:
        message = json.loads(body)
    except ValueError:
        return None, None
    return (message.get("method"), message) if isinstance(message, dict) else (None, None)


def lsp_snapshot():
    """{path under /workspace: (mtime, size, inode)} of its files, links not followed, LSP_WATCH_SKIP
    folders skipped; and whether it stopped at LSP_WATCH_MAX_ENTRIES (files and folders)."""
    files = {}
    seen = 0
    folders = [""]
    while folders:
        rel = folders.pop()
        try:
            with os.scandir(f"{ROOT}/{rel}" if rel else ROOT) as listing:
                entries = sorted(listing, key=lambda e: e.name, reverse=True)
        except OSError:
            continue
        for item in entries:
            seen += 1
            if seen > LSP_WATCH_MAX_ENTRIES:
                return files, True
            path = f"{rel}/{item.name}" if rel else item.name
            try:
                if item.is_dir(follow_symlinks=False):
                    if item.name not in LSP_WATCH_SKIP:
                        folders.append(path)
                    continue
                info = item.stat(follow_symlinks=False)
            except OSError:
                continue
            files[path] = (info.st_mtime_ns, info.st_size, info.st_ino)
    return files, False


def lsp_changes(before, after, partial):
    """FileEvents from one snapshot to the next. When either stopped at the bound, only files
    seen in both can be told apart: then only changes are reported."""
    from urllib.parse import quote

    events = []
    for path, key in after.items():
        old = before.get(path)
        if old is None and not partial:
            events.append((path, LSP_CREATED))
        elif old is not None and old != key:
            events.append((path, LSP_CHANGED))
    if not partial:
        events += [(path, LSP_DELETED) for path in before if path not in after]
    # Names that are not UTF-8 go as their bytes, percent-encoded.
    return [
        {"uri": "file://" + quote(os.fsencode(f"{ROOT}/{p}"), safe="/"), "type": kind} for p, kind in events
    ]


def lsp(language, argv):
    valid = language.isascii() and language[:1].isalpha() and len(language) <= 32
    if not valid or not all(c.isalnum() or c in "_-" for c in language) or language != language.lower():
        sys.stderr.write(f"lsp: bad language {language!r}\n")
        return
    if not argv:
        sys.stderr.write("lsp: no server to run\n")
        return
    try:
        os.setsid()  # a group of its own, for the SIGUSR1 of the supervisor that replaces it
    except OSError:
        pass  # a group leader already
    lock_fd = lsp_lock(language)
    if lock_fd is None:
        sys.stderr.write(f"lsp: another {language} server would not let go\n")
        return
    done = queue.SimpleQueue()  # why the supervisor ends: the first reason put here
    signal.signal(signal.SIGUSR1, lambda *_: done.put("replaced"))
    # The user's `pkill -f <server>` also hits this process (its argv names the server): the editor
    # must see a crash and restart the server, so the server is reported as killed by it.
    signal.signal(signal.SIGTERM, lambda *_: done.put("terminated"))
    defaults = lsp_defaults(language)
    out_lock, server_lock = threading.Lock(), threading.Lock()
    closing = [False]
    initialized = threading.Event()

    def to_backend(message, *, last=False):
        # The final notice waits a little for a message being written, then goes, or not at all.
        if not out_lock.acquire(timeout=2 if last else -1):
            return
        try:
            if not closing[0]:
                closing[0] = last
                write_all(1, lsp_frame(message))
        except OSError:
            done.put("closed")
        finally:
            out_lock.release()

    def pids(server_pid=0):
        os.ftruncate(lock_fd, 0)
        os.pwrite(lock_fd, f"{os.getpid()} {server_pid}\n".encode(), 0)

    pids()
    env = {key: value for key, value in USER_ENV.items() if key != RUN_MARKER}
    try:
        proc = subprocess.Popen(
            argv,
            cwd=ROOT,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
            preexec_fn=_die_with_helper,
        )
    except OSError as exc:
        code = 127 if isinstance(exc, FileNotFoundError) else 126
        to_backend({"jsonrpc": "2.0", "method": "$/vibecode/exited", "params": {"code": code}}, last=True)
        return
    pids(proc.pid)
    server_in = proc.stdin.fileno()

    def to_server(message):
        with server_lock:
            try:
                write_all(server_in, lsp_frame(message))
            except OSError:
                pass  # the server is gone; its waiter says so

    def from_editor():
        reader = LspReader(0)
        while True:
            try:
                body = reader.read()
            except (OSError, ValueError):
                body = None
            if body is None:
                done.put("closed")
                return
            # Only the few messages that can concern the supervisor are decoded ("initialize"
            # also finds "initialized").
            method = None
            if b"initialize" in body or b"didChangeConfiguration" in body:
                method, message = lsp_method(body)
                field = LSP_DEFAULTED.get(method)
                params = message.get("params") if message else None
                if field in defaults and isinstance(params, dict):
                    given = params.get(field)
                    params[field] = merged(defaults[field], given if isinstance(given, dict) else {})
                    body = json.dumps(message, separators=(",", ":")).encode()
            to_server(body)
            if method == "initialized" and not initialized.is_set():
                if "settings" in defaults:
                    params = {"settings": defaults["settings"]}
                    to_server(
                        {"jsonrpc": "2.0", "method": "workspace/didChangeConfiguration", "params": params}
                    )
                initialized.set()

    def from_server():
        reader = LspReader(proc.stdout.fileno())
        while True:
            try:
                body = reader.read()
            except (OSError, ValueError):
                done.put("broken")
                return
            if body is None:
                done.put("ended")
                return
            to_backend(body)

    def watch():
        initialized.wait()
        before, partial = lsp_snapshot()
        while True:
            time.sleep(LSP_WATCH_SECONDS)
            after, truncated = lsp_snapshot()
            changes = lsp_changes(before, after, partial or truncated)
            before, partial = after, truncated
            if changes:
                params = {"changes": changes}
                to_server({"jsonrpc": "2.0", "method": "workspace/didChangeWatchedFiles", "params": params})

    def wait_server():
        proc.wait()
        done.put("ended")

    reader = threading.Thread(target=from_server, daemon=True)
    for thread in (reader, threading.Thread(target=from_editor, daemon=True)):
        thread.start()
    threading.Thread(target=watch, daemon=True).start()
    threading.Thread(target=wait_server, daemon=True).start()
    reason = None
    while reason is None:
        try:
            reason = done.get(timeout=0.5)  # a timeout, so that SIGTERM's handler gets to run
        except queue.Empty:
            pass
    if reason == "ended":  # the server exited (or closed its stdout): its last messages go first
        reader.join(1.0)
        try:
            proc.wait(1.0)
        except subprocess.TimeoutExpired:
            pass
    code = proc.returncode
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except OSError:
        pass
    proc.wait()
    # Anything of the server's that left its process group came back to this subreaper.
    for _ in range(100):
        if not _children():
            break
        reap_orphans(kill=True)
    if reason == "replaced":
        to_backend({"jsonrpc": "2.0", "method": "$/vibecode/replaced"}, last=True)
    elif reason == "terminated":
        code = 128 + signal.SIGTERM
        to_backend({"jsonrpc": "2.0", "method": "$/vibecode/exited", "params": {"code": code}}, last=True)
    elif reason == "ended":
        code = proc.returncode if code is None else code
        code = code if code >= 0 else 128 - code
        to_backend({"jsonrpc": "2.0", "method": "$/vibecode/exited", "params": {"code": code}}, last=True)


# --- terminals: one PTY host per sandbox ----------------------------------------------------------
#
# ``pty-host`` owns one PTY per terminal id, each running the user's login shell in /workspace,
# and keeps the last PTY_RING bytes of each terminal's output so that every attach (a reload, a
# second tab) rebuilds the screen and the scrollback from it. It listens on an abstract unix
# socket: there is no file to delete or replace, and binding the name is the
# one-host-per-sandbox lock. The helper starts it (``pty_start``, which the backend calls before
# every attach); ``sandbox/pty_attach.py`` is the small program the backend runs per connection
# (an exec without a TTY) to relay between its stdio and the host. Wire
# (docs/terminal-protocol.md): frames of 1 kind byte, a 4-byte big-endian length and the payload.

PTY_ADDRESS = b"\0vibecode-pty"
PTY_TITLE = "vibecode-pty"
PTY_MAX_TERMINALS = 128
PTY_RING = 1024 * 1024
PTY_HIGH_WATER = 256 * 1024  # an attach with more queued stops the PTY's reads
PTY_STUCK_SECONDS = 5.0  # an attach that takes nothing for this long leaves the flow
PTY_FRAME_MAX = 1024 * 1024 + 64
PTY_READ = 64 * 1024
PTY_INPUT_MAX = 1024 * 1024  # keystrokes queued for a program that does not read its input
PTY_ID_CHARS = set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
# A full-screen program switches to the alternate screen with one of these (and back with "l").
PTY_ALT_ON = (b"\x1b[?1049h", b"\x1b[?1047h", b"\x1b[?47h")
PTY_ALT_OFF = (b"\x1b[?1049l", b"\x1b[?1047l", b"\x1b[?47l")
TIOCSWINSZ = 0x5414


def pty_frame(kind, payload=b""):
    return kind + struct.pack(">I", len(payload)) + payload


def pty_frames(buffer):
    """Complete frames at the start of ``buffer`` (a bytearray, consumed), as (kind, payload).
    Raises ValueError on a frame longer than PTY_FRAME_MAX."""
    frames = []
    while len(buffer) >= 5:
        (size,) = struct.unpack_from(">I", buffer, 1)
        if size > PTY_FRAME_MAX:
            raise ValueError("frame too long")
        if len(buffer) < 5 + size:
            break
        frames.append((bytes(buffer[:1]), bytes(buffer[5 : 5 + size])))
        del buffer[: 5 + size]
    return frames


def pty_valid_id(value):
    return isinstance(value, str) and 1 <= len(value) <= 32 and set(value) <= PTY_ID_CHARS


def pty_size(args):
    try:
        cols, rows = int(args.get("cols", 80)), int(args.get("rows", 24))
    except (TypeError, ValueError, AttributeError):
        return 80, 24
    return max(2, min(1000, cols)), max(2, min(500, rows))


def _session_members(sid):
    """Pids of the processes in session ``sid`` (a terminal's shell and all it started)."""
    wanted = str(sid).encode()
    return [pid for pid, fields in _proc_stats() if len(fields) > 3 and fields[3] == wanted]


class _PtyTerminal:
    def __init__(self, terminal_id, pid, fd, cols, rows):
        self.id = terminal_id
        self.pid = pid
        self.fd = fd
        self.cols, self.rows = cols, rows
        self.created = int(time.time())
        self.ring = bytearray()
        self.total = 0  # bytes of output ever; the ring holds the last len(ring) of them
        self.alt = False  # a full-screen program has the alternate screen
        self.alt_at = -1  # where (in ``total`` terms) it switched to it
        self.tail = b""  # the last bytes of output, for sequences split between two reads
        self.clients = set()
        self.pending = bytearray()  # input the PTY has not taken yet
        self.reading = True
        self.eof = False
        self.ended = False

    def record(self, data):
        joined = self.tail + data
        base = self.total - len(self.tail)
        on = max(joined.rfind(seq) for seq in PTY_ALT_ON)
        off = max(joined.rfind(seq) for seq in PTY_ALT_OFF)
        if on > off:
            self.alt, self.alt_at = True, base + on
        elif off > on:
            self.alt = False
        self.tail = joined[-7:]
        self.total += len(data)
        self.ring += data
        if len(self.ring) > PTY_RING:
            del self.ring[: len(self.ring) - PTY_RING]

    def replay(self):
        """The output to send a new attach first, and whether the screen needs a redraw."""
        data = bytes(self.ring)
        cut = self.total > len(self.ring)
        if cut:  # begin at a line, never inside an escape sequence or a character
            start = data.find(b"\n")
            data = data[start + 1 :] if 0 <= start < 64 * 1024 else data
        if self.alt and self.alt_at < self.total - len(data):
            # The program's switch to the alternate screen fell out of the ring: switch, and
            # have it draw its screen again.
            return b"\x1b[?1049h\x1b[H\x1b[2J", True
        return data, False


class _PtyClient:
    def __init__(self, sock):
        self.sock = sock
        self.inbox = bytearray()
        self.outbox = []
        self.offset = 0  # sent of outbox[0]
        self.queued = 0
        self.since = time.monotonic()  # the last time it took something, or had nothing queued
        self.born = self.since
        self.terminal = None
        self.closing = False  # close once the outbox is sent
        self.in_flow = True  # false while it is stuck: then it gets no output and holds nothing

    def push(self, data):
        if not self.queued:
            self.since = time.monotonic()
        self.outbox.append(data)
        self.queued += len(data)


class PtyHost:
    def __init__(self, listener):
        self.selector = selectors.DefaultSelector()
        self.events = selectors
        self.listener = listener
        self.terminals = {}
        self.by_pid = {}
        self.timers = []  # (when, function)
        self.clients = set()
        self.listener.setblocking(False)
        self.selector.register(listener, selectors.EVENT_READ, ("listen", None))
        self.wake_r, self.wake_w = os.pipe()
        os.set_blocking(self.wake_r, False)
        os.set_blocking(self.wake_w, False)
        signal.set_wakeup_fd(self.wake_w)
        signal.signal(signal.SIGCHLD, lambda *_: None)
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
        self.selector.register(self.wake_r, selectors.EVENT_READ, ("wake", None))

    # --- the loop ---

    def run(self):
        while True:
            timeout = 1.0
            if self.timers:
                timeout = max(0.0, min(timeout, min(when for when, _ in self.timers) - time.monotonic()))
            for key, mask in self.selector.select(timeout):
                kind, thing = key.data
                try:
                    if kind == "listen":
                        self.accept()
                    elif kind == "wake":
                        while True:
                            try:
                                if not os.read(self.wake_r, 512):
                                    break
                            except BlockingIOError:
                                break
                        self.reap()
                    elif kind == "pty":
                        if mask & self.events.EVENT_WRITE:
                            self.write_input(thing)
                        if mask & self.events.EVENT_READ:
                            self.read_output(thing)
                    elif kind == "client":
                        if mask & self.events.EVENT_WRITE:
                            self.flush(thing)
                        if mask & self.events.EVENT_READ and thing.sock.fileno() >= 0:
                            self.receive(thing)
                except Exception as exc:  # one bad terminal or client never takes the host down
                    sys.stderr.write(f"pty host: {type(exc).__name__}: {exc}\n")
                    if kind == "client":
                        self.drop(thing)
            self.reap()
            now = time.monotonic()
            due = [item for item in self.timers if item[0] <= now]
            self.timers = [item for item in self.timers if item[0] > now]
            for _, function in due:
                try:
                    function()
                except Exception as exc:
                    sys.stderr.write(f"pty host timer: {type(exc).__name__}: {exc}\n")
            for client in list(self.clients):
                if client.in_flow and client.queued and now - client.since > PTY_STUCK_SECONDS:
                    # A viewer that stopped reading: it no longer holds the PTY back (the others
                    # go on) and gets no more output until it has taken what it has.
                    client.in_flow = False
                    if client.terminal is not None:
                        self.flow(client.terminal)
                elif client.terminal is None and not client.closing and now - client.born > 10:
                    self.drop(client)  # connected and never said what for

    def watch(self, fileobj, events, data):
        try:
            key = self.selector.get_key(fileobj)
        except KeyError:
            key = None
        if key is None:
            if events:
                self.selector.register(fileobj, events, data)
        elif not events:
            self.selector.unregister(fileobj)
        elif key.events != events:
            self.selector.modify(fileobj, events, data)

    # --- clients ---

    def accept(self):
        while True:
            try:
                sock, _ = self.listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return  # out of fds: the next round tries again
            sock.setblocking(False)
            client = _PtyClient(sock)
            self.clients.add(client)
            self.watch(sock, self.events.EVENT_READ, ("client", client))

    def drop(self, client):
        self.clients.discard(client)
        terminal, client.terminal = client.terminal, None
        if terminal is not None:
            terminal.clients.discard(client)
            self.flow(terminal)
        try:
            self.selector.unregister(client.sock)
        except (KeyError, ValueError):
            pass
        client.sock.close()

    def send(self, client, data):
        client.push(data)
        self.flush(client)

    def flush(self, client):
        while client.outbox:
            head = client.outbox[0]
            try:
                sent = client.sock.send(memoryview(head)[client.offset :])
            except (BlockingIOError, InterruptedError):
                break
            except OSError:
                self.drop(client)
                return
            client.since = time.monotonic()
            client.offset += sent
            client.queued -= sent
            if client.offset == len(head):
                client.outbox.pop(0)
                client.offset = 0
        if not client.outbox and not client.in_flow and not client.closing and client.terminal is not None:
            # It reads again: a reset, then the replay, rebuild its screen; then the output.
            client.in_flow = True
            replay, _ = client.terminal.replay()
            client.push(pty_frame(b"O", b"\x1bc" + replay))
            self.flush(client)
            return
        if not client.outbox and client.closing:
            self.drop(client)
            return
        events = (0 if client.closing else self.events.EVENT_READ) | (
            self.events.EVENT_WRITE if client.outbox else 0
        )
        self.watch(client.sock, events, ("client", client))
        if client.terminal is not None:
            self.flow(client.terminal)

    def receive(self, client):
        try:
            data = client.sock.recv(PTY_READ)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:
            self.drop(client)
            return
        client.inbox += data
        try:
            frames = pty_frames(client.inbox)
        except ValueError:
            self.drop(client)
            return
        for kind, payload in frames:
            if client.sock.fileno() < 0 or client.closing:
                return
            self.handle(client, kind, payload)

    def error(self, client, code, detail):
        client.closing = True
        self.send(client, pty_frame(b"E", json.dumps({"code": code, "detail": detail}).encode()))

    def handle(self, client, kind, payload):
        terminal = client.terminal
        if terminal is None:
            try:
                args = json.loads(payload) if kind in (b"A", b"K") else {}
                if not isinstance(args, dict):
                    raise ValueError
            except ValueError:
                self.error(client, "bad_frame", "Expected a JSON object.")
                return
            if kind == b"A":
                self.attach(client, args)
            elif kind == b"L":
                client.closing = True
                listing = [
                    {"terminal_id": t.id, "created": t.created, "attached": len(t.clients)}
                    for t in self.terminals.values()
                    if not t.ended
                ]
                self.send(client, pty_frame(b"J", json.dumps(listing).encode()))
            elif kind == b"K":
                found = self.terminals.get(args.get("id"))
                if found is not None and not found.ended:
                    self.hang_up(found)
                client.closing = True
                self.send(client, pty_frame(b"J", json.dumps({"closed": found is not None}).encode()))
            else:
                self.error(client, "bad_frame", "Attach first.")
            return
        if kind == b"I":
            if len(terminal.pending) + len(payload) <= PTY_INPUT_MAX:
                terminal.pending += payload
            self.write_input(terminal)
        elif kind == b"R" and len(payload) == 4:
            cols, rows = struct.unpack(">HH", payload)
            self.resize(terminal, max(2, min(1000, cols)), max(2, min(500, rows)))
        elif kind == b"C":
            self.hang_up(terminal)
        else:
            self.error(client, "bad_frame", f"Unknown frame {kind!r}.")

    def attach(self, client, args):
        terminal_id = args.get("id")
        if not pty_valid_id(terminal_id):
            self.error(client, "invalid_terminal_id", "A terminal id is 1 to 32 letters, digits, '-' or '_'.")
            return
        cols, rows = pty_size(args)
        terminal = self.terminals.get(terminal_id)
        if terminal is None or terminal.ended:
            if sum(1 for t in self.terminals.values() if not t.ended) >= PTY_MAX_TERMINALS:
                self.error(
                    client, "too_many_terminals", f"A workspace has at most {PTY_MAX_TERMINALS} terminals."
                )
                return
            try:
                terminal = self.spawn(terminal_id, cols, rows)
            except OSError as exc:
                self.error(client, "terminal_failed", f"Could not start a shell: {exc.strerror or exc}")
                return
        client.terminal = terminal
        terminal.clients.add(client)
        replay, redraw = terminal.replay()
        if replay:
            self.send(client, pty_frame(b"O", replay))
        if (cols, rows) != (terminal.cols, terminal.rows):
            self.resize(terminal, cols, rows)  # the last attach's size wins
        elif redraw:
            self.nudge(terminal)

    # --- terminals ---

    def spawn(self, terminal_id, cols, rows):
        env = {key: value for key, value in USER_ENV.items() if key != RUN_MARKER}
        env.update({"TERM": "xterm-256color", "COLORTERM": "truecolor"})
        env.setdefault("LANG", "C.UTF-8")
        pid, fd = os.forkpty()
        if pid == 0:  # the child: a new session whose controlling terminal is the PTY
            try:
                signal.set_wakeup_fd(-1)
                for number in (signal.SIGPIPE, signal.SIGCHLD, signal.SIGHUP, signal.SIGINT, signal.SIGTERM):
                    signal.signal(number, signal.SIG_DFL)
                fcntl_ioctl(0, TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
                try:
                    os.chdir(ROOT)
                except OSError:
                    os.chdir(env.get("HOME") or "/")
                shell = login_shell(env)
                # A leading "-" in argv[0] makes it a login shell.
                os.execve(shell, ["-" + os.path.basename(shell)], env)  # noqa: S606 (the shell itself)
            finally:
                os._exit(127)
        os.set_blocking(fd, False)
        terminal = _PtyTerminal(terminal_id, pid, fd, cols, rows)
        self.terminals[terminal_id] = terminal
        self.by_pid[pid] = terminal
        self.watch(fd, self.events.EVENT_READ, ("pty", terminal))
        return terminal

    def flow(self, terminal):
        """Read the PTY only while no attach has more than PTY_HIGH_WATER queued."""
        if terminal.eof or terminal.ended:
            return
        reading = not any(c.in_flow and c.queued > PTY_HIGH_WATER for c in terminal.clients)
        terminal.reading = reading
        events = (self.events.EVENT_READ if reading else 0) | (
            self.events.EVENT_WRITE if terminal.pending else 0
        )
        self.watch(terminal.fd, events, ("pty", terminal))

    def read_output(self, terminal):
        chunks = []
        size = 0
        while size < 4 * PTY_READ:
            try:
                data = os.read(terminal.fd, PTY_READ)
            except (BlockingIOError, InterruptedError):
                break
            except OSError:  # EIO: every process holding the PTY's other side has gone
                data = b""
            if not data:
                terminal.eof = True
                self.watch(terminal.fd, 0, None)
                break
            chunks.append(data)
            size += len(data)
        if not chunks:
            return
        data = b"".join(chunks)
        terminal.record(data)
        frame = pty_frame(b"O", data)
        for client in list(terminal.clients):
            if client.in_flow:
                self.send(client, frame)
        self.flow(terminal)

    def write_input(self, terminal):
        if terminal.pending and not terminal.ended:
            try:
                written = os.write(terminal.fd, terminal.pending)
                del terminal.pending[:written]
            except (BlockingIOError, InterruptedError):
                pass
            except OSError:
                terminal.pending.clear()
        self.flow(terminal)

    def resize(self, terminal, cols, rows):
        terminal.cols, terminal.rows = cols, rows
        if not terminal.ended:
            fcntl_ioctl(terminal.fd, TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))

    def nudge(self, terminal):
        """Make a full-screen program draw its screen again: a size one row short, then its own."""
        fcntl_ioctl(
            terminal.fd, TIOCSWINSZ, struct.pack("HHHH", max(1, terminal.rows - 1), terminal.cols, 0, 0)
        )

        def back():
            if not terminal.ended:
                self.resize(terminal, terminal.cols, terminal.rows)

        self.timers.append((time.monotonic() + 0.05, back))

    def hang_up(self, terminal):
        """End a terminal's shell and everything in its session: a hangup, then SIGKILL."""
        for pid in [terminal.pid, *_session_members(terminal.pid)]:
            try:
                os.kill(pid, signal.SIGHUP)
                os.kill(pid, signal.SIGCONT)
            except OSError:
                pass

        def kill():
            for pid in _session_members(terminal.pid) + ([] if terminal.ended else [terminal.pid]):
                try:
                    os.kill(pid, signal.SIGKILL)
                except OSError:
                    pass

        self.timers.append((time.monotonic() + 0.5, kill))

    def reap(self):
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            terminal = self.by_pid.pop(pid, None)
            if terminal is not None:
                self.ended(terminal, os.waitstatus_to_exitcode(status))

    def ended(self, terminal, code):
        if not terminal.eof:
            self.read_output(terminal)  # what it printed last
        code = code if code >= 0 else 128 - code
        terminal.ended = True
        if self.terminals.get(terminal.id) is terminal:
            del self.terminals[terminal.id]
        try:
            self.selector.unregister(terminal.fd)
        except (KeyError, ValueError):
            pass
        os.close(terminal.fd)
        frame = pty_frame(b"X", json.dumps({"code": code}).encode())
        for client in list(terminal.clients):
            client.closing = True
            self.send(client, frame)


def login_shell(env):
    """The sandbox user's login shell (from the password file), else ``$SHELL``, else sh."""
    try:
        shell = pwd.getpwuid(os.getuid()).pw_shell
    except KeyError:
        shell = ""
    for candidate in (shell, env.get("SHELL", ""), "/bin/sh"):
        if candidate.startswith("/") and os.access(candidate, os.X_OK):
            return candidate
    return "/bin/sh"


def fcntl_ioctl(fd, request, data):
    try:
        fcntl.ioctl(fd, request, data)
    except OSError:
        pass


def pty_host(listen_fd):
    with open("/proc/self/comm", "w") as handle:
        handle.write(PTY_TITLE)
    listener = socket.socket(fileno=listen_fd)
    listener.set_inheritable(False)
    PtyHost(listener).run()


def _own_program():
    """The program this process runs (the text after ``-c`` in its command line)."""
    with open("/proc/self/cmdline", "rb") as handle:
        argv = handle.read().split(b"\0")
    return argv[argv.index(b"-c") + 1]


# PTY hosts this helper started: children of this subreaper that are no run's, never reaped
# as a run's orphans.
_pty_hosts = set()


def _start_pty_host(listener):
    """Start the host (a new session, no stdio of ours) with the bound, listening socket.

    It runs this same program from a memory file under a neutral name, ``vibecode-pty``, so its
    command line carries neither ``python3`` nor the shell's name (a user's ``pkill -f python3``
    or ``pkill -f`` of their shell ends their own programs, not the terminals' host). Nor does
    this program's text name the shell. It stays this helper's child (listed in ``_pty_hosts``)
    and outlives it."""
    program = os.memfd_create(PTY_TITLE, 0)
    try:
        os.write(program, _own_program())
        listener.set_inheritable(True)
        python = sys.executable or "/usr/bin/python3"
        argv = [PTY_TITLE, "-I", "-u", f"/proc/self/fd/{program}", "pty-host", str(listener.fileno())]
        env = dict(USER_ENV)
        with _leaders_lock:  # a sweep of orphans sees it listed as soon as it exists
            pid = os.fork()
            if pid == 0:
                try:
                    os.setsid()
                    null = os.open("/dev/null", os.O_RDWR)
                    for fd in (0, 1, 2):
                        os.dup2(null, fd)
                    # With an argv[0] that is no path, Python looks for its library from the
                    # current directory: from "/" it would find /lib (a link to /usr/lib).
                    os.chdir(os.path.dirname(python))
                    os.execve(python, argv, env)  # noqa: S606 (this program, renamed)
                finally:
                    os._exit(127)
            _pty_hosts.add(pid)
    finally:
        os.close(program)


def pty_connect(*, start=True, timeout=5.0):
    """A connection to the sandbox's PTY host, starting it when there is none (if ``start``).
    Race-safe: whoever binds the name starts the host; the others connect to it. None when
    there is no host and ``start`` is false."""
    deadline = time.monotonic() + timeout
    started = 0
    while True:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.connect(PTY_ADDRESS)
            return sock
        except (ConnectionRefusedError, FileNotFoundError):
            sock.close()
        if not start:
            return None
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            listener.bind(PTY_ADDRESS)
        except OSError:  # another call is starting it
            listener.close()
            if time.monotonic() > deadline:
                raise
            time.sleep(0.01)
            continue
        if started == 3:  # it died as it started, three times: say so rather than loop
            listener.close()
            raise OSError(errno.ECONNREFUSED, "the PTY host does not start")
        started += 1
        listener.listen(128)
        _start_pty_host(listener)
        listener.close()


def _pty_request(kind, payload):
    """One question to a running host (list, close); None when there is no host, or no answer
    from it within 5 s (a stopped host: the user's doing)."""
    try:
        sock = pty_connect(start=False)
        if sock is None:
            return None
        with sock:
            sock.settimeout(5)
            sock.sendall(pty_frame(kind, payload))
            buffer = bytearray()
            while True:
                data = sock.recv(PTY_READ)
                if not data:
                    return None
                buffer += data
                for reply_kind, reply in pty_frames(buffer):
                    return json.loads(reply) if reply_kind == b"J" else None
    except (OSError, ValueError):
        return None


def op_pty_list(args, payload):
    listing = _pty_request(b"L", b"")
    return {"terminals": listing if isinstance(listing, list) else []}, b""


def op_pty_close(args, payload):
    if not pty_valid_id(args.get("id")):
        raise AgentError("invalid_terminal_id", "A terminal id is 1 to 32 letters, digits, '-' or '_'.")
    reply = _pty_request(b"K", json.dumps({"id": args["id"]}).encode())
    return {"closed": isinstance(reply, dict) and reply.get("closed") is True}, b""


def op_pty_start(args, payload):
    """Make sure the sandbox has a PTY host (the backend asks before every attach)."""
    try:
        sock = pty_connect()
    except OSError as exc:
        raise AgentError("terminal_failed", f"The terminals' host does not start: {exc}", 503) from None
    sock.close()
    return {}, b""


OPERATIONS["pty_list"] = op_pty_list
OPERATIONS["pty_close"] = op_pty_close
OPERATIONS["pty_start"] = op_pty_start


def main():
    os.umask(0o022)
    os.chdir("/")
    # The helper's own environment is fixed and minimal; runs get the container's (USER_ENV).
    os.environ.clear()
    os.environ.update({"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8"})
    # Terminals: the PTY host is no subreaper (orphans of the shells go to the container's
    # init, which reaps them).
    if len(sys.argv) == 3 and sys.argv[1] == "pty-host":
        pty_host(int(sys.argv[2]))
        return
    # Orphans of runs (setsid, double forks) come back to this helper, which kills them when
    # their run ends.
    _prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    if len(sys.argv) >= 2 and sys.argv[1] == "tunnel":
        tunnel(int(sys.argv[2]) if len(sys.argv) > 2 else 0)
        return
    if len(sys.argv) >= 4 and sys.argv[1] == "lsp" and sys.argv[3] == "--":
        lsp(sys.argv[2], sys.argv[4:])
        return
    kill_runs_of_dead_helpers()
    serve()


main()
