"""Search, replace and quick open over a workspace: ripgrep inside the sandbox, through the
session's helper (its ``search`` op), never a shell.

- :func:`search_text` finds matches (regex or literal, match case, whole word, include and
  exclude globs, ``.gitignore`` respected), bounded in count, per file and in time; the answer says
  when and why it was cut (``reason``: ``matches``, ``per_file``, ``time``, ``long_lines`` or
  ``interrupted`` when rg was killed, e.g. by the tenant).
- :func:`search_files` lists every file name for quick open (the browser matches them).
- :func:`search_replace` previews or applies a replacement file by file. Each file is checked
  against the etag the search saw, and saved through :func:`workspace_write` (the editor's save
  path): a file changed since is reported as a 409 in its own result and never overwritten.

A bad pattern or glob answers 400 ``invalid_regex`` / ``invalid_glob``; an image without rg 503
``search_unavailable``.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings

from core_app.errors import DomainError
from sessions_app.models import Session
from workspace_app.services import _agent, _look, _path, workspace_write

# Seconds a search may take beyond rg's own deadline (the helper answers after killing rg).
MARGIN_SECONDS = 10.0
MAX_QUERY_CHARS = 1000
MAX_REPLACE_CHARS = 10000
MAX_GLOBS = 50
MAX_GLOB_CHARS = 300


class InvalidQuery(DomainError):
    code = "invalid_query"


class InvalidGlob(DomainError):
    code = "invalid_glob"


class TooManyFiles(DomainError):
    code = "too_many_files"


def _clean_text(value: str, *, name: str, limit: int, allow_empty: bool = False) -> str:
    if not isinstance(value, str) or (not value and not allow_empty) or len(value) > limit:
        raise InvalidQuery(f"The {name} must be {0 if allow_empty else 1} to {limit} characters.")
    if "\0" in value:
        raise InvalidQuery(f"The {name} may not contain NUL characters.")
    return value


def _clean_globs(globs: list[str] | None) -> list[str]:
    cleaned = []
    for glob in globs or []:
        glob = str(glob).strip()
        if not glob:
            continue
        if len(glob) > MAX_GLOB_CHARS or any(ord(char) < 32 for char in glob):
            raise InvalidGlob(f"A glob must be 1 to {MAX_GLOB_CHARS} printable characters.")
        cleaned.append(glob)
    if len(cleaned) > MAX_GLOBS:
        raise InvalidGlob(f"At most {MAX_GLOBS} globs.")
    return cleaned


def _matcher(*, query: str, regex: bool, match_case: bool, whole_word: bool) -> dict[str, Any]:
    return {
        "q": _clean_text(query, name="query", limit=MAX_QUERY_CHARS),
        "regex": bool(regex),
        "match_case": bool(match_case),
        "whole_word": bool(whole_word),
    }


def _timeout() -> float:
    return float(settings.VIBECODE_SEARCH_TIMEOUT_SECONDS)


def search_text(
    *,
    session: Session,
    query: str,
    regex: bool = False,
    match_case: bool = False,
    whole_word: bool = False,
    include: list[str] | None = None,
    exclude: list[str] | None = None,
    path: str = "",
) -> dict[str, Any]:
    """``{matches: [{path, line, text, ranges, offset}], truncated, reason, etags}``, sorted by
    path; ``etags`` maps each file with matches to its etag as the search saw it, for
    :func:`search_replace` (files over the editor's limit have none)."""
    args = {
        "kind": "text",
        **_matcher(query=query, regex=regex, match_case=match_case, whole_word=whole_word),
        "include": _clean_globs(include),
        "exclude": _clean_globs(exclude),
        "path": _path(session, path),
        "max_matches": settings.VIBECODE_SEARCH_MAX_MATCHES,
        "max_per_file": settings.VIBECODE_SEARCH_MAX_PER_FILE,
        "etag_max_bytes": settings.VIBECODE_MAX_EDIT_BYTES,
        "timeout": _timeout(),
    }
    agent = _agent(session)
    return agent.call("search", args, timeout=_timeout() + MARGIN_SECONDS).result  # type: ignore[no-any-return]


def search_files(*, session: Session) -> dict[str, Any]:
    """``{files: [path, ...], truncated, reason}``: every file for quick open, sorted, skipping
    .git, node_modules, virtualenvs, caches and what .gitignore ignores."""
    args = {"kind": "files", "max_files": settings.VIBECODE_QUICK_OPEN_MAX_FILES, "timeout": _timeout()}
    return _look(session, "search", args).result  # type: ignore[no-any-return]


def search_replace(
    *,
    session: Session,
    query: str,
    replace: str,
    files: list[dict[str, str]],
    regex: bool = False,
    match_case: bool = False,
    whole_word: bool = False,
    apply: bool = False,
) -> dict[str, Any]:
    """Per file ``{path, status, code, detail, etag, lines, changes}``. ``files`` are the search's
    results: ``[{path, etag}]`` (an empty etag skips the check). A preview changes nothing;
    ``apply`` saves each changed file with its etag. One file's failure (409 ``conflict``, 415
    ``not_text``, 404, ...) is reported in its result and never stops the others."""
    matcher = _matcher(query=query, regex=regex, match_case=match_case, whole_word=whole_word)
    replacement = _clean_text(replace, name="replacement", limit=MAX_REPLACE_CHARS, allow_empty=True)
    if len(files) > settings.VIBECODE_REPLACE_MAX_FILES:
        raise TooManyFiles(f"Replace in at most {settings.VIBECODE_REPLACE_MAX_FILES} files at once.")
    results = []
    for item in files:
        raw = item.get("path", "")
        outcome: dict[str, Any] = {"path": raw, "status": 200, "code": "", "detail": "", "lines": 0}
        try:
            path = _path(session, raw, allow_root=False)
            args = {
                "kind": "replace",
                **matcher,
                "replace": replacement,
                "path": path,
                "etag": item.get("etag") or None,
                "max_bytes": settings.VIBECODE_MAX_EDIT_BYTES,
                "content": apply,
                "timeout": _timeout(),
            }
            reply = _agent(session).call("search", args, timeout=_timeout() + MARGIN_SECONDS)
            outcome.update(
                etag=reply.result["etag"], lines=reply.result["lines"], changes=reply.result["changes"]
            )
            if apply and reply.result["lines"]:
                saved = workspace_write(
                    session=session, path=path, content=reply.data, etag=reply.result["etag"]
                )
                outcome["etag"] = saved["etag"]
        except DomainError as exc:
            per_file = exc.code in {"search_timeout", "search_failed"} or exc.status_code < 500
            if not per_file or exc.code == "invalid_regex":
                raise  # the workspace is unavailable, or the pattern is bad: say so once
            outcome.update(status=exc.status_code, code=exc.code, detail=exc.detail, lines=0)
            if "current_etag" in exc.extra:
                outcome["etag"] = exc.extra["current_etag"] or ""
        results.append(outcome)
    return {
        "files": results,
        "applied": apply,
        "lines": sum(r["lines"] for r in results if r["status"] == 200),
        "conflicts": sum(1 for r in results if r["status"] == 409),
        "failed": sum(1 for r in results if r["status"] != 200),
    }
