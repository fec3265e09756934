"""Static files storage: whitenoise's compressed, hashed storage, taught to live with Monaco and
to hash our own ES modules' imports, so that every file can be cached for good."""

from __future__ import annotations

from whitenoise.storage import CompressedManifestStaticFilesStorage

# Our own ES modules (static/vibecode/**.js): their relative imports, static and dynamic, name
# the hashed files once collected, so a module can be cached forever and a new version of one
# changes the name of every module that imports it. Django's own patterns (its
# ``support_js_module_import_aggregation``), with the dynamic ``import()`` limited to relative
# paths; the vendor folders are left alone (Monaco's AMD modules are never rewritten).
OWN_MODULES = "vibecode/*.js"
JS_MODULE_PATTERNS = (
    (
        r"""(?P<matched>import(?s:(?P<import>[\s\{].*?|\*\s*as\s*\w+))\s*from\s*['"](?P<url>\.{1,2}/.*?)["']\s*;)""",
        """import%(import)s from "%(url)s";""",
    ),
    (
        r"""(?P<matched>export(?s:(?P<exports>[\s\{].*?))\s*from\s*["'](?P<url>\.{1,2}/.*?)["']\s*;)""",
        """export%(exports)s from "%(url)s";""",
    ),
    (r"""(?P<matched>import\s*['"](?P<url>\.{1,2}/.*?)["']\s*;)""", """import"%(url)s";"""),
    (r"""(?P<matched>import\(["'](?P<url>\.{1,2}/[^"']*?)["']\))""", """import("%(url)s")"""),
)


class StaticStorage(CompressedManifestStaticFilesStorage):
    """Monaco's minified files name ``.map`` files the package does not ship, and Django's
    post-processing would fail on each. Only CSS ``url()``/``@import`` references and our own
    ES modules' imports are rewritten; source-map comments are left alone (browsers just don't
    find the maps). Unhashed originals stay next to the hashed copies, so Monaco's AMD loader
    (served under a versioned folder, ``monaco_static_dir``) keeps working."""

    patterns = (
        (
            "*.css",
            (
                r"""(?P<matched>url\((?P<quote>['"]{0,1})\s*(?P<url>.*?)(?P=quote)\))""",
                (r"""(?P<matched>@import\s*["']\s*(?P<url>.*?)["'])""", """@import url("%(url)s")"""),
            ),
        ),
        (OWN_MODULES, JS_MODULE_PATTERNS),
    )
    manifest_strict = False
