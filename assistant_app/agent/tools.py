"""The agent's tools: one schema for every provider, and their execution through the workspace's
services, with the same path checks and limits as the user's own requests.

Reading tools (``list_files``, ``read_file``, ``search``) run at once. Changing tools
(``write_file``, ``edit_file``) are turned into a :class:`Change` (a diff against the file's
current etag) that waits for review; ``run`` waits for Run / Skip. Results the model sees are
trimmed to ``VIBECODE_AGENT_OUTPUT_CHARS`` and never carry a configured secret.
"""

from __future__ import annotations

import difflib
import hashlib
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.conf import settings

from assistant_app.providers.base import ToolSpec
from core_app.errors import DomainError
from sessions_app.models import Session
from workspace_app import runs, search, services

PATH_ARG = {"type": "string", "description": "Relative to the workspace root, e.g. src/app.py"}

TOOLS: list[ToolSpec] = [
    ToolSpec(
        "list_files",
        "List the files and folders in a folder of the workspace.",
        {"type": "object", "properties": {"path": {**PATH_ARG, "description": "A folder; empty: the root"}}},
    ),
    ToolSpec(
        "read_file",
        "Read a text file. The answer starts with the file's etag, which edit_file can take.",
        {"type": "object", "properties": {"path": PATH_ARG}, "required": ["path"]},
    ),
    ToolSpec(
        "search",
        "Search the workspace's files for text (or a regular expression); answers path:line: text.",
        {
            "type": "object",
            "properties": {
                "query": {"type": "string"},
                "regex": {"type": "boolean", "description": "The query is a regular expression"},
                "path": {**PATH_ARG, "description": "Search under this folder only"},
            },
            "required": ["query"],
        },
    ),
    ToolSpec(
        "write_file",
        "Create a file, or replace a file's whole content. The user reviews the change first.",
        {
            "type": "object",
            "properties": {"path": PATH_ARG, "content": {"type": "string"}},
            "required": ["path", "content"],
        },
    ),
    ToolSpec(
        "edit_file",
        "Change part of an existing file: replace the exact text `search` (which must occur once) "
        "with `replace`, or apply a unified `diff`. Give the `etag` read_file showed to be sure "
        "the file did not change since. The user reviews the change first.",
        {
            "type": "object",
            "properties": {
                "path": PATH_ARG,
                "search": {"type": "string"},
                "replace": {"type": "string"},
                "diff": {"type": "string", "description": "A unified diff of this one file"},
                "etag": {"type": "string"},
            },
            "required": ["path"],
        },
    ),
    ToolSpec(
        "run",
        "Run a command (no shell: no pipes or redirections) or a file (.py, .js, .sh, .c) in the "
        "workspace, and get its exit code and output. The user may have to allow it first.",
        {
            "type": "object",
            "properties": {
                "command": {"type": "string", "description": "e.g. python3 -m pytest -q"},
                "path": {**PATH_ARG, "description": "A file to run by its extension, instead of a command"},
                "timeout": {"type": "number", "description": "Seconds; the default is the server's"},
            },
        },
    ),
    ToolSpec(
        "ask_user",
        "Ask the user a question and wait for the answer. Use it when the goal is unclear.",
        {"type": "object", "properties": {"question": {"type": "string"}}, "required": ["question"]},
    ),
]
TOOL_NAMES = {tool.name for tool in TOOLS}
CHANGES = {"write_file", "edit_file"}


class ToolFailed(DomainError):
    """A tool call that cannot be carried out; the model is told why and may try otherwise."""

    code = "tool_failed"


# --- text ------------------------------------------------------------------------------------------


def secrets_to_hide() -> list[str]:
    return [s for s in (settings.OPENAI_API_KEY, settings.ANTHROPIC_API_KEY, settings.SECRET_KEY) if s]


def clean_text(text: str, limit: int | None = None) -> str:
    """What a tool result may show the model: no configured secret, at most ``limit`` characters
    (the start and the end, where errors are)."""
    for secret in secrets_to_hide():
        text = text.replace(secret, "[redacted]")
    limit = limit or settings.VIBECODE_AGENT_OUTPUT_CHARS
    if len(text) <= limit:
        return text
    head = limit // 3
    tail = limit - head - 40
    return f"{text[:head]}\n[... {len(text) - head - tail} characters cut ...]\n{text[-tail:]}"


def etag_of(data: bytes) -> str:
    """The helper's etag of a file's bytes (``sandbox/agent.py``: the first 32 hex of SHA-256)."""
    return hashlib.sha256(data).hexdigest()[:32]


def unified_diff(path: str, old: str, new: str, *, existed: bool = True) -> str:
    lines = difflib.unified_diff(
        old.splitlines(keepends=True),
        new.splitlines(keepends=True),
        fromfile=f"a/{path}" if existed else "/dev/null",
        tofile=f"b/{path}",
    )
    return "".join(
        line if line.endswith("\n") else line + "\n\\ No newline at end of file\n" for line in lines
    )


def search_replace(text: str, search_text: str, replacement: str) -> str:
    if not search_text:
        raise ToolFailed("`search` is empty: give the exact text to replace.")
    count = text.count(search_text)
    if count == 0:
        raise ToolFailed("The `search` text is not in the file (it must match exactly, spaces included).")
    if count > 1:
        raise ToolFailed(f"The `search` text occurs {count} times; give more lines so it is unique.")
    return text.replace(search_text, replacement, 1)


HUNK = re.compile(r"^@@ -(\d+)(?:,(\d+))? \+(\d+)(?:,(\d+))? @@")


def apply_unified_diff(text: str, diff: str) -> str:
    """Apply a unified diff of one file. Each hunk's old lines must be found where it says, or
    (models miscount) at the nearest place they match exactly; otherwise :class:`ToolFailed`."""
    lines = text.splitlines(keepends=True)
    out: list[str] = []
    position = 0
    hunks: list[tuple[int, list[str]]] = []
    current: list[str] | None = None
    for raw in diff.splitlines(keepends=True):
        match = HUNK.match(raw)
        if match:
            current = []
            hunks.append((int(match.group(1)), current))
        elif current is not None and raw[:1] in (" ", "-", "+"):
            current.append(raw)
        elif current is not None and raw.strip() == "":
            current.append(" \n")  # an empty context line whose space was lost
    if not hunks:
        raise ToolFailed("The diff has no hunk (@@ -a,b +c,d @@).")
    for start, body in hunks:
        old = [line[1:] for line in body if line[0] in (" ", "-")]
        new = [line[1:] for line in body if line[0] in (" ", "+")]

        def matches(at: int, old: list[str] = old) -> bool:
            return [s.rstrip("\r\n") for s in lines[at : at + len(old)]] == [s.rstrip("\r\n") for s in old]

        guess = max(start - 1, position)
        candidates = sorted(range(position, len(lines) - len(old) + 1), key=lambda at: abs(at - guess))
        at = next((at for at in candidates if matches(at)), None)
        if at is None and not old:
            at = min(guess, len(lines))
        if at is None:
            raise ToolFailed(f"A hunk (starting at line {start}) does not match the file; read it again.")
        out.extend(lines[position:at])
        out.extend(line if line.endswith("\n") else line + "\n" for line in new)
        position = at + len(old)
    out.extend(lines[position:])
    return "".join(out)


# --- reading tools ---------------------------------------------------------------------------------


def _text(value: Any, name: str, *, required: bool = True, limit: int = 4096) -> str:
    if value is None or value == "":
        if required:
            raise ToolFailed(f"`{name}` is required.")
        return ""
    if not isinstance(value, str) or len(value) > limit:
        raise ToolFailed(f"`{name}` must be a string of at most {limit} characters.")
    return value


def list_files(*, session: Session, args: dict[str, Any]) -> str:
    listing = services.workspace_list(session=session, path=_text(args.get("path"), "path", required=False))
    lines = [e["name"] + ("/" if e["type"] == "directory" else "") for e in listing["entries"]]
    where = listing["path"] or "the workspace root"
    return f"{where}:\n" + ("\n".join(lines) if lines else "(empty)")


@dataclass(frozen=True)
class FileState:
    exists: bool
    content: str
    etag: str


def file_state(*, session: Session, path: str) -> FileState:
    try:
        read = services.workspace_read(session=session, path=path)
    except DomainError as exc:
        if exc.code == "not_found":
            return FileState(False, "", "")
        raise
    if read["encoding"] != "utf-8":
        raise ToolFailed(f"{path} is not a text file.")
    return FileState(True, read["content"], read["etag"])


def read_file(*, session: Session, args: dict[str, Any]) -> str:
    path = _text(args.get("path"), "path")
    state = file_state(session=session, path=path)
    if not state.exists:
        raise ToolFailed(f"{path} does not exist.", code="not_found")
    return clean_text(f"{path} (etag {state.etag}):\n{state.content}")


def search_files(*, session: Session, args: dict[str, Any]) -> str:
    found = search.search_text(
        session=session,
        query=_text(args.get("query"), "query", limit=search.MAX_QUERY_CHARS),
        regex=bool(args.get("regex")),
        path=_text(args.get("path"), "path", required=False),
    )
    lines = [f"{m['path']}:{m['line']}: {m['text'].strip()}" for m in found["matches"]]
    if not lines:
        return "No matches."
    more = f"\n(cut: {found.get('reason')})" if found.get("truncated") else ""
    return clean_text("\n".join(lines) + more)


READERS: dict[str, Callable[..., str]] = {
    "list_files": list_files,
    "read_file": read_file,
    "search": search_files,
}


# --- changes ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Change:
    path: str
    base: FileState
    new_content: str
    diff: str


def propose_change(*, session: Session, name: str, args: dict[str, Any]) -> Change:
    """The change a ``write_file`` / ``edit_file`` call asks for, against the file as it is now.
    Nothing is written."""
    path = services._path(session, _text(args.get("path"), "path"), allow_root=False)
    base = file_state(session=session, path=path)
    if name == "write_file":
        content = args.get("content")
        if not isinstance(content, str):
            raise ToolFailed("`content` is required: the whole new content of the file.")
        new = content
    else:
        if not base.exists:
            raise ToolFailed(f"{path} does not exist; create it with write_file.", code="not_found")
        etag = args.get("etag")
        if etag and etag != base.etag:
            raise ToolFailed(
                f"{path} changed since you read it (etag {base.etag} now); read it again.", code="conflict"
            )
        if isinstance(args.get("diff"), str) and args["diff"].strip():
            new = apply_unified_diff(base.content, args["diff"])
        else:
            new = search_replace(
                base.content, _text(args.get("search"), "search", limit=10**6), str(args.get("replace") or "")
            )
    if len(new.encode()) > settings.VIBECODE_MAX_EDIT_BYTES:
        raise ToolFailed(f"The new content is over {settings.VIBECODE_MAX_EDIT_BYTES} bytes.")
    if base.exists and new == base.content:
        raise ToolFailed(f"That leaves {path} as it is: nothing to change.", code="no_change")
    return Change(path, base, new, unified_diff(path, base.content, new, existed=base.exists))


def apply_change(*, session: Session, path: str, content: str, base_etag: str, base_exists: bool) -> str:
    """Write the reviewed change, only over the version it was made against (409 ``conflict``
    otherwise; ``already_exists`` for a new file someone created meanwhile). The new etag."""
    data = content.encode()
    if base_exists:
        services.workspace_write(session=session, path=path, content=data, etag=base_etag)
    else:
        services.workspace_write(session=session, path=path, content=data, exclusive=True)
    return etag_of(data)


# --- commands --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Command:
    argv: list[str] | None
    path: str | None
    timeout: float
    label: str


def parse_run(args: dict[str, Any]) -> Command:
    command = args.get("command")
    path = args.get("path")
    timeout = args.get("timeout")
    limit = float(settings.VIBECODE_EXEC_MAX_TIMEOUT_SECONDS)
    try:
        seconds = (
            float(timeout) if timeout not in (None, "") else float(settings.VIBECODE_EXEC_TIMEOUT_SECONDS)
        )
    except (TypeError, ValueError):
        raise ToolFailed("`timeout` must be a number of seconds.") from None
    seconds = min(max(seconds, 1.0), limit)
    if isinstance(command, str) and command.strip():
        argv = services.parse_command(command)
        return Command(argv, None, seconds, command.strip()[:300])
    if isinstance(path, str) and path.strip():
        return Command(None, path.strip(), seconds, path.strip()[:300])
    raise ToolFailed("Give `command` (e.g. python3 test_app.py) or `path` (a file to run).")


@dataclass(frozen=True)
class RunOutcome:
    text: str  # for the model
    exit_code: int | None
    timed_out: bool
    stopped: bool


def run_command(
    *,
    session: Session,
    command: Command,
    started: Callable[[str], object],
    cancelled: Callable[[], bool],
) -> RunOutcome:
    """Run ``command`` as a streaming run (so Stop can kill its process group at once), with no
    input, until it ends, its timeout, or ``cancelled()``; its output trimmed for the model."""
    info = runs.run_start(session=session, argv=command.argv, path=command.path)
    run_id = info["run_id"]
    started(run_id)
    try:
        runs.run_input(session=session, run_id=run_id, text="", eof=True)
    except DomainError:
        pass  # it ended already, or closed its input
    output = bytearray()
    cap = settings.VIBECODE_AGENT_OUTPUT_CHARS * 4
    offset = 0
    deadline = time.monotonic() + command.timeout
    timed_out = stopped = False
    result: dict[str, Any] = {}
    while True:
        reply = runs.run_read(session=session, run_id=run_id, offset=offset, wait=0.25)
        result = reply.result
        offset = int(result.get("next_offset", offset))
        output += reply.data
        if len(output) > cap:  # keep the start and the end
            del output[cap // 3 : len(output) - (cap - cap // 3)]
        if result.get("finished"):
            break
        if cancelled() or time.monotonic() > deadline:
            timed_out = not cancelled()
            stopped = not timed_out
            result = runs.run_stop(session=session, run_id=run_id)
            break
    exit_code = result.get("exit_code")
    stopped = stopped or bool(result.get("stopped"))
    text = output.decode("utf-8", "replace")
    if timed_out:
        outcome = f"timed out after {command.timeout:g} s and was killed"
    elif stopped:
        outcome = "was stopped by the user"
    else:
        outcome = f"exited with code {exit_code}"
    return RunOutcome(clean_text(f"$ {command.label}\n{text}\n[{outcome}]"), exit_code, timed_out, stopped)
