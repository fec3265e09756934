"""`.env.example` is copied to `.env` for compose: every line must be a comment or NAME=value."""

from __future__ import annotations

import re

from tests.conftest import REPO_ROOT


def test_every_line_is_a_comment_or_a_clean_assignment():
    for number, line in enumerate((REPO_ROOT / ".env.example").read_text().splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        assert re.fullmatch(r"[A-Z][A-Z0-9_]*=[^#\s]*", line), f"line {number}: {line!r}"
