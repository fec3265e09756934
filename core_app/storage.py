"""Static files storage: whitenoise's compressed, hashed storage, taught to live with Monaco."""

from __future__ import annotations

from whitenoise.storage import CompressedManifestStaticFilesStorage


class StaticStorage(CompressedManifestStaticFilesStorage):
    """Monaco's minified files name ``.map`` files the package does not ship, and Django's
    post-processing would fail on each. Only CSS ``url()``/``@import`` references are rewritten;
    source-map comments are left alone (browsers just don't find the maps). Unhashed originals
    stay next to the hashed copies, so Monaco's AMD loader and relative ES module imports work."""

    patterns = (
        (
            "*.css",
            (
                r"""(?P<matched>url\((?P<quote>['"]{0,1})\s*(?P<url>.*?)(?P=quote)\))""",
                (r"""(?P<matched>@import\s*["']\s*(?P<url>.*?)["'])""", """@import url("%(url)s")"""),
            ),
        ),
    )
    manifest_strict = False
