"""The IDE page's static files, by name, and their URLs from the static files manifest (hashed
names once collected): what the IDE page preloads for its terminal, and what the dashboard
fetches ahead of a click on New workspace or Open, so that the IDE opens from the cache."""

from __future__ import annotations

from django.conf import settings
from django.templatetags.static import static

# What the IDE's terminal needs before anything else (static/vibecode/ide/main.js's own imports).
TERMINAL_MODULES = (
    "vibecode/ide/main.js",
    "vibecode/ide/api.js",
    "vibecode/ide/ui.js",
    "vibecode/ide/terminals.js",
    "vibecode/ide/workbench.js",
    "vendor/xterm/lib/xterm.mjs",
    "vendor/xterm-addon-fit/addon-fit.mjs",
    "vendor/xterm-addon-web-links/addon-web-links.mjs",
    "vendor/xterm-addon-search/addon-search.mjs",
)
STYLES = ("vendor/xterm/css/xterm.css", "vibecode/ide.css")
# What main.js imports right after the terminal, and Monaco's loader and editor core.
LATER_MODULES = (
    "vibecode/ide/editor.js",
    "vibecode/ide/explorer.js",
    "vibecode/ide/icons.js",
    "vibecode/ide/lsp.js",
    "vibecode/ide/problems.js",
    "vibecode/ide/assistant.js",
    "vibecode/ide/agent.js",
    "vibecode/ide/ports.js",
    "vibecode/ide/run.js",
    "vibecode/ide/search.js",
    "vibecode/ide/quickopen.js",
    "vibecode/ide/settings.js",
    "vibecode/ide/tab-keys.js",
    "vendor/marked/marked.esm.js",
    "vendor/dompurify/purify.es.mjs",
)
MONACO_FILES = ("vs/loader.js", "vs/editor/editor.main.js", "vs/editor/editor.main.css")


def monaco_base() -> str:
    """The URL of Monaco's ``vs`` folder: plain names in a versioned folder (the AMD loader asks
    for its modules by name), cached for good all the same."""
    return f"{settings.STATIC_URL}{settings.VIBECODE_MONACO_STATIC}/vs"


def ide_module_urls() -> list[str]:
    """The terminal's modules, for the IDE page's ``<link rel="modulepreload">``."""
    return [static(name) for name in TERMINAL_MODULES]


def ide_prefetch_urls() -> list[str]:
    """Everything the IDE page loads, for the dashboard's ``<link rel="prefetch">``: fetched
    while the dashboard is idle, into the HTTP cache the IDE page then reads."""
    urls = [static(name) for name in (*STYLES, *TERMINAL_MODULES, *LATER_MODULES)]
    return urls + [f"{monaco_base()}/{name.removeprefix('vs/')}" for name in MONACO_FILES]
