"""The language servers the image carries, from ``settings.VIBECODE_LSP_SERVERS``.

An operator adds a language by installing its server in ``sandbox/Dockerfile`` and adding an
entry here through the setting (README, "Language intelligence").
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from django.conf import settings

LANGUAGE_ID = re.compile(r"^[a-z][a-z0-9_-]{0,31}$")


@dataclass(frozen=True)
class LanguageServer:
    language: str  # the id in the WebSocket's ``language=`` and the supervisor's lock name
    label: str  # what the status bar says: "Python"
    argv: tuple[str, ...]  # absolute program path first: the sandbox's PATH is the user's
    extensions: tuple[str, ...]  # file name endings it serves, without the dot


def language_servers() -> dict[str, LanguageServer]:
    servers = {}
    for language, entry in settings.VIBECODE_LSP_SERVERS.items():
        servers[language] = LanguageServer(
            language=language,
            label=str(entry.get("label") or language),
            argv=tuple(str(arg) for arg in entry["argv"]),
            extensions=tuple(str(ext).lstrip(".") for ext in entry.get("extensions", ())),
        )
    return servers


def language_server_get(language: str) -> LanguageServer | None:
    if not LANGUAGE_ID.match(language or ""):
        return None
    return language_servers().get(language)


def language_servers_for_page() -> dict[str, dict[str, object]]:
    """What the IDE page needs to know: which file endings have a server, and its label."""
    return {
        server.language: {"label": server.label, "extensions": list(server.extensions)}
        for server in language_servers().values()
    }
