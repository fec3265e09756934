"""Workspace files and code execution, through the session's persistent helper.

Every function takes a session the caller has already resolved for its user (selectors enforce
ownership), checks paths with :mod:`workspace_app.paths` (the first check; the helper walks the
path again at the point of use), records activity, and calls the helper.
"""

from __future__ import annotations

import base64
import secrets
import shlex
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from django.conf import settings

from core_app.errors import DomainError
from core_app.metrics import EXEC_SECONDS, EXECS
from sessions_app.audit import session_event_record
from sessions_app.models import Session, SessionEvent
from sessions_app.runtime import get_runtime
from sessions_app.runtime.base import ExecResult, SandboxRef
from sessions_app.runtime.errors import SandboxNotRunning
from sessions_app.runtime.helper import HelperClient, HelperError, HelperGone
from sessions_app.services import session_touch, session_tunnel_ensure
from sessions_app.specs import session_ref
from workspace_app.paths import PathInvalid, PathOutsideWorkspace, clean_path

SHELL_OPERATORS = (";", "&&", "||", "|", "`", "$(", ">", "<", "&", "\n", "\r")


class ShellOperatorsRefused(DomainError):
    code = "shell_operators_refused"
    default_detail = (
        "Commands run without a shell, so ; && || | ` $( > < & and newlines are not allowed. "
        "Use the terminal for pipelines and redirections."
    )


class UnsupportedFileType(DomainError):
    code = "unsupported_file_type"


class InvalidCommand(DomainError):
    code = "invalid_command"


RUNNERS = {".py": "python3", ".js": "node", ".sh": "bash", ".c": "gcc"}


def _path(session: Session, raw: object, *, allow_root: bool = True) -> str:
    """``clean_path``, with every refusal recorded as a security event."""
    try:
        return clean_path(raw, allow_root=allow_root)
    except (PathOutsideWorkspace, PathInvalid) as exc:
        session_event_record(
            session=session, action=SessionEvent.Action.PATH_REFUSED, path=str(raw)[:200], reason=exc.code
        )
        raise


def _agent(session: Session) -> HelperClient:
    if session.status != Session.Status.RUNNING:
        raise SandboxNotRunning(f"The session is {session.status}. Resume it to use its files.")
    session_touch(session=session)
    return get_runtime().helper(session_ref(session))


def helper_by_ref(ref: SandboxRef) -> HelperClient:
    """The helper of a sandbox resolved earlier, for a stream that must not touch the database
    (a run's events, read on worker threads); no status check, no activity recorded."""
    return get_runtime().helper(ref)


def _look(session: Session, op: str, args: dict[str, Any]) -> Any:
    """A call that changes nothing (list, read, stat, search), tried once more on a fresh
    helper when the first one was found dead: the user sees no error from a helper the
    tenant killed or stopped, only a few seconds' delay."""
    try:
        return _agent(session).call(op, args)
    except HelperGone:
        return _agent(session).call(op, args)


# --- files ------------------------------------------------------------------------------------


def workspace_list(*, session: Session, path: str) -> dict[str, Any]:
    return _look(session, "list", {"path": _path(session, path)}).result


def workspace_read(*, session: Session, path: str) -> dict[str, Any]:
    """``{path, content, encoding, size, mtime, etag}``; text as UTF-8, anything else base64."""
    clean = _path(session, path, allow_root=False)
    try:
        reply = _look(session, "read", {"path": clean, "max_bytes": settings.VIBECODE_MAX_EDIT_BYTES})
    except DomainError as exc:
        if exc.code == "file_too_large":
            exc.detail = (
                f"{clean} is too large to edit here (limit {settings.VIBECODE_MAX_EDIT_BYTES} bytes). "
                "Download it instead."
            )
            exc.extra["download_url"] = (
                f"/api/vibecode/sessions/{session.public_id}/files/download?path={clean}"
            )
        raise
    try:
        content, encoding = reply.data.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        content, encoding = base64.b64encode(reply.data).decode(), "base64"
    return {**reply.result, "content": content, "encoding": encoding}


def workspace_write(
    *,
    session: Session,
    path: str,
    content: bytes,
    etag: str | None = None,
    create_parents: bool = True,
    exclusive: bool = False,
) -> dict[str, Any]:
    """Atomic save. With ``etag``, refuses (409 ``conflict`` with ``current_etag``) when the file
    changed since that version was read, so nobody silently overwrites newer work. With
    ``exclusive``, refuses (409 ``already_exists``) when the file exists."""
    clean = _path(session, path, allow_root=False)
    args = {"path": clean, "etag": etag or None, "create_parents": create_parents, "exclusive": exclusive}
    return _agent(session).call("write", args, payload=content).result


def workspace_create(*, session: Session, path: str, kind: str) -> dict[str, Any]:
    return (
        _agent(session).call("create", {"path": _path(session, path, allow_root=False), "type": kind}).result
    )


def workspace_move(*, session: Session, source: str, target: str) -> dict[str, Any]:
    args = {"from": _path(session, source, allow_root=False), "to": _path(session, target, allow_root=False)}
    return _agent(session).call("move", args).result


def workspace_delete(*, session: Session, path: str) -> None:
    _agent(session).call("delete", {"path": _path(session, path, allow_root=False)})


class UploadTooLarge(DomainError):
    status_code = 413
    code = "upload_too_large"


class UploadWouldOverwrite(DomainError):
    status_code = 409
    code = "already_exists"


def check_upload_size(length: int) -> None:
    if length > settings.VIBECODE_MAX_UPLOAD_BYTES:
        raise UploadTooLarge(
            f"The upload is {length} bytes; the limit is {settings.VIBECODE_MAX_UPLOAD_BYTES}."
        )


@dataclass(frozen=True)
class Upload:
    relative_path: str
    size: int
    chunks: Iterator[bytes]


def workspace_upload(
    *, session: Session, directory: str, uploads: list[Upload], overwrite: bool = False
) -> list[dict[str, Any]]:
    """Write each upload under ``directory``, keeping its relative path (a dropped folder).
    Every path is checked before anything is written. Files that exist already are replaced
    only with ``overwrite``; otherwise nothing is written and the answer (409) names them."""
    base = _path(session, directory)
    targets = [
        _path(session, f"{base}/{upload.relative_path}" if base else upload.relative_path, allow_root=False)
        for upload in uploads
    ]
    for upload in uploads:
        _path(session, upload.relative_path, allow_root=False)  # refuse ../ in the name itself
    agent = _agent(session)
    if not overwrite:
        existing = []
        for target in targets:
            try:
                agent.call("stat", {"path": target})
                existing.append(target)
            except HelperError as exc:
                if exc.code != "not_found":
                    raise
        if existing:
            raise UploadWouldOverwrite(
                f"{len(existing)} file(s) exist already, e.g. {existing[0]}. Nothing was uploaded; "
                "send overwrite=true to replace them.",
                existing=existing[:50],
            )
    written = []
    for upload, target in zip(uploads, targets, strict=True):
        # exclusive: a file that appeared since the check above is not silently replaced.
        args = {"path": target, "create_parents": True, "exclusive": not overwrite}
        written.append(agent.call("write", args, payload=upload.chunks, size=upload.size).result)
    return written


@dataclass(frozen=True)
class Download:
    filename: str
    content_type: str
    chunks: Iterator[bytes]


class DownloadTooLarge(DomainError):
    status_code = 413
    code = "download_too_large"


def max_download_bytes() -> int:
    return int(settings.VIBECODE_MAX_DOWNLOAD_MB) * 1024 * 1024


def workspace_download(*, session: Session, path: str) -> Download:
    """A file as it is, or a folder (``""``: the whole workspace) as a zip, streamed from a
    helper of its own with backpressure: a slow client pauses the helper, and the backend holds a
    few chunks whatever the size. Over ``VIBECODE_MAX_DOWNLOAD_MB`` (a folder: its files before
    zipping): 413 ``download_too_large``, checked before any byte is sent."""
    clean = _path(session, path)
    limit = max_download_bytes()
    info = _look(session, "stat", {"path": clean}).result
    is_dir = info["type"] == "directory"
    if not is_dir and int(info.get("size") or 0) > limit:
        raise DownloadTooLarge(
            f"{clean} is {info['size']} bytes; the download limit is {settings.VIBECODE_MAX_DOWNLOAD_MB} MB.",
            size=info["size"],
        )
    private = get_runtime().helper_private(session_ref(session))
    # A zip's own overhead beside its files' bytes (stored, they are not compressed much).
    stream_cap = limit + limit // 8 + 16 * 1024 * 1024
    op = "zip" if is_dir else "cat"
    chunks = private.stream(op, {"path": clean, "max_bytes": limit}, max_bytes=stream_cap)
    try:
        # The first chunk (or the helper's refusal, e.g. a folder over the cap) before any header.
        first = next(chunks, b"")
    except HelperError as exc:
        private.close()
        if exc.code == "download_too_large":
            raise DownloadTooLarge(exc.detail, **exc.extra) from None
        raise
    except BaseException:
        private.close()
        raise

    def body() -> Iterator[bytes]:
        try:
            if first:
                yield first
            yield from chunks
        finally:
            chunks.close()
            private.close()

    if is_dir:
        name = (clean.rsplit("/", 1)[-1] if clean else session.name) or "workspace"
        return Download(f"{name}.zip", "application/zip", body())
    return Download(info["name"], "application/octet-stream", body())


# --- execution --------------------------------------------------------------------------------


def parse_command(command: str) -> list[str]:
    """Split a command line with shlex. Shell operators are refused: nothing runs through a
    shell, and a pipeline that silently did something else would be worse than a clear no."""
    if any(operator in command for operator in SHELL_OPERATORS):
        raise ShellOperatorsRefused()
    try:
        argv = shlex.split(command)
    except ValueError as exc:
        raise InvalidCommand(f"The command could not be parsed: {exc}.") from None
    if not argv:
        raise InvalidCommand("The command is empty.")
    return argv


def _timeout(requested: float | None) -> float:
    if requested is None:
        return float(settings.VIBECODE_EXEC_TIMEOUT_SECONDS)
    if not 0 < requested <= settings.VIBECODE_EXEC_MAX_TIMEOUT_SECONDS:
        raise DomainError(
            f"The timeout must be between 0 and {settings.VIBECODE_EXEC_MAX_TIMEOUT_SECONDS} seconds.",
            code="invalid_timeout",
        )
    return float(requested)


def workspace_exec(
    *,
    session: Session,
    argv: list[str],
    timeout: float | None = None,
    stdin: str | None = None,
    cwd: str = "",
) -> ExecResult:
    """Run ``argv`` as the sandbox user in ``/workspace/<cwd>``. No shell; on timeout the whole
    process tree is killed; each output stream keeps ``VIBECODE_EXEC_OUTPUT_LIMIT_BYTES``."""
    if not argv or not all(isinstance(arg, str) and "\0" not in arg for arg in argv):
        raise InvalidCommand("argv must be a non-empty list of strings without NUL characters.")
    seconds = _timeout(timeout)
    directory = _path(session, cwd)
    agent = _agent(session)
    if settings.VIBECODE_EGRESS != "off":
        # A `pip install` run this way needs the egress port listening (a no-op once it does).
        session_tunnel_ensure(session=session, wait=True)
    if directory:
        kind = agent.call("stat", {"path": directory}).result["type"]
        if kind != "directory":
            raise DomainError(f"{directory} is not a directory.", code="not_a_directory")
    with EXEC_SECONDS.time():
        result = ExecResult.from_helper(
            agent.exec(
                argv,
                timeout=seconds,
                output_limit=settings.VIBECODE_EXEC_OUTPUT_LIMIT_BYTES,
                cwd=f"/workspace/{directory}" if directory else "/workspace",
                stdin=(stdin or "").encode(),
            )
        )
    outcome = "timeout" if result.timed_out else "oom_killed" if result.oom_killed else "completed"
    EXECS.labels(outcome=outcome).inc()
    return result


def workspace_run(
    *,
    session: Session,
    path: str,
    args: list[str] | None = None,
    stdin: str | None = None,
    timeout: float | None = None,
) -> ExecResult:
    """Run a file by its extension: .py, .js, .sh, or .c (compiled, then run)."""
    clean = _path(session, path, allow_root=False)
    suffix = "." + clean.rsplit(".", 1)[-1].lower() if "." in clean.rsplit("/", 1)[-1] else ""
    runner = RUNNERS.get(suffix)
    if runner is None:
        supported = ", ".join(sorted(RUNNERS))
        raise UnsupportedFileType(f"VibeCode can run {supported} files; {clean} is not one of them.")
    extra = [str(arg) for arg in (args or [])]
    if runner != "gcc":
        return workspace_exec(session=session, argv=[runner, clean, *extra], timeout=timeout, stdin=stdin)
    binary = f"/tmp/vibecode-run-{secrets.token_hex(6)}"
    compiled = workspace_exec(
        session=session, argv=["gcc", "-O2", "-Wall", "-o", binary, clean, "-lm"], timeout=timeout
    )
    if compiled.exit_code != 0:
        return compiled
    try:
        ran = workspace_exec(session=session, argv=[binary, *extra], timeout=timeout, stdin=stdin)
    finally:
        workspace_exec(session=session, argv=["rm", "-f", binary], timeout=10)
    return ExecResult(
        exit_code=ran.exit_code,
        stdout=ran.stdout,
        stderr=compiled.stderr + ran.stderr,
        duration_ms=compiled.duration_ms + ran.duration_ms,
        timed_out=ran.timed_out,
        truncated=ran.truncated,
        oom_killed=ran.oom_killed,
        max_rss_kb=ran.max_rss_kb,
    )
