"""Front-end packages from npm as static files: their versions and where they are served.
Plain functions (settings.py calls them before Django is set up)."""

from __future__ import annotations

import json
import re
from pathlib import Path


def package_version(*, lockfile: Path, package_json: Path, name: str) -> str:
    """An npm package's installed version: from the lockfile (shipped with the app), else from
    the package's own package.json; "0" when neither says."""
    sources = ((lockfile, ("packages", f"node_modules/{name}", "version")), (package_json, ("version",)))
    for path, keys in sources:
        try:
            value = json.loads(path.read_text())
            for key in keys:
                value = value[key]
        except (OSError, ValueError, KeyError, TypeError):
            continue
        if isinstance(value, str) and re.fullmatch(r"[0-9A-Za-z.+-]{1,40}", value):
            return value
    return "0"


def monaco_static_dir(version: str) -> str:
    """Where Monaco is served among the static files: a folder per version, so that its files
    (which the AMD loader asks for by their plain names) can be cached for good as well."""
    return f"vendor/monaco-{version}"


def immutable_url_regex(static_url: str) -> str:
    """What may be cached forever (``WHITENOISE_IMMUTABLE_FILE_TEST``; nginx's map says the same):
    a hashed name (``name.0123456789ab.ext``) or anything in a versioned Monaco folder."""
    return rf"^{re.escape(static_url)}(?:vendor/monaco-[^/]+/.*|.+\.[0-9a-f]{{12}}\.[A-Za-z0-9]+)$"
