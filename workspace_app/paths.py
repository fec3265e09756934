"""The API's check of workspace paths: the first of two (the helper inside the sandbox walks the
path again at the point of use, never following links).

A path is relative to ``/workspace``. It is refused when it, or anything it decodes to, leaves
the workspace: absolute paths, ``..``, backslashes, NUL and control characters, overlong paths.
Percent-encoding (once or several times) and Unicode compatibility forms (fullwidth dots, U+FF0E)
are decoded first, so a disguised ``..`` is seen for what it is. A name that is merely unusual
(``100%.txt``, ``a%20b``) is kept exactly as given.
"""

from __future__ import annotations

import unicodedata
from urllib.parse import unquote

from core_app.errors import DomainError

MAX_PATH_CHARS = 1024
MAX_COMPONENT_BYTES = 255


class PathOutsideWorkspace(DomainError):
    code = "path_outside_workspace"
    default_detail = "The path leaves the workspace. Use a path relative to /workspace."


class PathInvalid(DomainError):
    code = "path_invalid"
    default_detail = "The path is not valid."


class WorkspaceRoot(DomainError):
    code = "workspace_root"
    default_detail = "That is not allowed on the workspace root."


def _decodings(raw: str) -> list[str]:
    """The path, and every form an attacker might expect some layer to decode it to."""
    forms = [raw]
    current = raw
    for _ in range(3):
        decoded = unquote(current)
        if decoded == current:
            break
        forms.append(decoded)
        current = decoded
    forms += [unicodedata.normalize("NFKC", form) for form in list(forms)]
    return forms


def _check(form: str) -> None:
    if any(ord(char) < 32 or ord(char) == 127 for char in form):
        raise PathInvalid("The path contains NUL or control characters.")
    if any(unicodedata.category(char) in {"Cf", "Zl", "Zp"} for char in form):
        raise PathInvalid("The path contains invisible formatting characters.")
    if "\\" in form:
        raise PathOutsideWorkspace("Backslashes are not allowed in paths; use / between folders.")
    if form.startswith("/") or form.startswith("~"):
        raise PathOutsideWorkspace("Use a path relative to /workspace, not an absolute one.")
    if any(part == ".." for part in form.split("/")):
        raise PathOutsideWorkspace("The path leaves the workspace (it contains '..').")


def clean_path(raw: object, *, allow_root: bool = True) -> str:
    """A safe workspace-relative path: ``"a/b.py"``, or ``""`` for the workspace root."""
    if not isinstance(raw, str):
        raise PathInvalid("The path must be a string.")
    if len(raw) > MAX_PATH_CHARS:
        raise PathInvalid(f"The path is {len(raw)} characters long; the limit is {MAX_PATH_CHARS}.")
    for form in _decodings(raw):
        _check(form)
    path = unicodedata.normalize("NFC", raw)
    parts = [part for part in path.split("/") if part not in ("", ".")]
    for part in parts:
        if len(part.encode()) > MAX_COMPONENT_BYTES:
            raise PathInvalid(f"The name {part[:40]}... is longer than {MAX_COMPONENT_BYTES} bytes.")
    cleaned = "/".join(parts)
    if not cleaned and not allow_root:
        raise WorkspaceRoot()
    return cleaned
