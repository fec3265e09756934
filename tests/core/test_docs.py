"""The README and .env.example list every environment variable settings.py reads."""

from __future__ import annotations

import re

from tests.conftest import REPO_ROOT


def _variables_read_by_settings() -> set[str]:
    source = (REPO_ROOT / "vibecode_project/settings.py").read_text()
    return set(re.findall(r'env_\w+\(\s*"([A-Z][A-Z0-9_]+)"', source))


def test_every_variable_is_documented():
    variables = _variables_read_by_settings()
    assert "DATABASE_URL" in variables and len(variables) > 20
    readme = (REPO_ROOT / "README.md").read_text()
    example = (REPO_ROOT / ".env.example").read_text()
    assert sorted(v for v in variables if f"`{v}`" not in readme) == []
    assert sorted(v for v in variables if not re.search(rf"^{v}=", example, re.M)) == []
