"""The sandbox image's recipe digest (sandbox/builder.py): what triggers a rebuild at setup."""

from __future__ import annotations

from pathlib import Path

import pytest

from sandbox import builder


@pytest.fixture
def sandbox_dir(tmp_path, monkeypatch) -> Path:
    (tmp_path / "lsp" / "settings").mkdir(parents=True)
    (tmp_path / "Dockerfile").write_text("FROM scratch\n")
    (tmp_path / "lsp" / "package.json").write_text("{}")
    (tmp_path / "lsp" / "package-lock.json").write_text('{"lockfileVersion": 3}')
    (tmp_path / "lsp" / "settings" / "python.json").write_text("{}")
    monkeypatch.setattr(builder, "SANDBOX_DIR", tmp_path)
    monkeypatch.setattr(builder, "LSP_DIR", tmp_path / "lsp")
    return tmp_path


@pytest.mark.parametrize("changed", ["Dockerfile", "lsp/package-lock.json", "lsp/settings/python.json"])
def test_the_recipe_changes_with_the_dockerfile_the_lockfile_and_the_settings(sandbox_dir, changed):
    before = builder.recipe()
    path = sandbox_dir / changed
    path.write_text(path.read_text() + "\n")
    assert builder.recipe() != before


def test_the_recipe_ignores_node_modules(sandbox_dir):
    before = builder.recipe()
    (sandbox_dir / "lsp" / "node_modules" / "typescript").mkdir(parents=True)
    (sandbox_dir / "lsp" / "node_modules" / "typescript" / "package.json").write_text("{}")
    assert builder.recipe() == before


def test_the_recipe_of_this_checkout_is_stable():
    assert builder.recipe() == builder.recipe()
    assert len(builder.recipe()) == 16
