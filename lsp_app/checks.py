"""System checks of the language server table (``VIBECODE_LSP_SERVERS``)."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.checks import CheckMessage, Error, register

from lsp_app.servers import LANGUAGE_ID


def _problem(language: str, entry: Any) -> str | None:
    if not LANGUAGE_ID.match(language):
        return f"{language!r} is not a language id (lowercase letters, digits, '-' and '_')"
    if not isinstance(entry, dict):
        return f"{language}: an entry is a JSON object with label, extensions and argv"
    argv = entry.get("argv")
    if not isinstance(argv, list) or not argv or not all(isinstance(arg, str) for arg in argv):
        return f"{language}: argv must be a non-empty list of strings"
    if not argv[0].startswith("/"):
        return f"{language}: argv[0] must be an absolute path (the sandbox's PATH is the user's)"
    extensions = entry.get("extensions", [])
    if not isinstance(extensions, list) or not all(isinstance(ext, str) and ext for ext in extensions):
        return f"{language}: extensions must be a list of file name endings"
    return None


@register("vibecode")
def check_language_servers(app_configs: Any, **kwargs: Any) -> list[CheckMessage]:
    errors: list[CheckMessage] = []
    for language, entry in settings.VIBECODE_LSP_SERVERS.items():
        problem = _problem(language, entry)
        if problem:
            errors.append(
                Error(
                    f"VIBECODE_LSP_SERVERS: {problem}.",
                    hint=(
                        'Example: {"python": {"label": "Python", "extensions": ["py"], '
                        '"argv": ["/usr/bin/pylsp"]}}'
                    ),
                    id="vibecode.E016",
                )
            )
    return errors
