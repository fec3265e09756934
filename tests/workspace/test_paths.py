"""The API's path check, as a pure function: every disguise of a way out is refused."""

from __future__ import annotations

import pytest

from workspace_app.paths import PathInvalid, PathOutsideWorkspace, WorkspaceRoot, clean_path


@pytest.mark.parametrize(
    "raw",
    [
        "..",
        "../x",
        "a/../../x",
        "%2e%2e/",
        "%2e%2e%2fetc",
        "%252e%252e/",
        "%25252e%25252e/",
        "．．/",
        "a/．．/b",
        "/etc/passwd",
        "..\\",
        "a\\b",
        "~/x",
        "%2fetc/passwd",
    ],
)
def test_ways_out_are_refused(raw):
    with pytest.raises(PathOutsideWorkspace):
        clean_path(raw)


@pytest.mark.parametrize(
    "raw", ["a\x00.py", "a%00.py", "a\nb", "a%0ab", "x\u202ey", "a" * 5000, "d/" + "n" * 300]
)
def test_invalid_paths_are_refused(raw):
    with pytest.raises(PathInvalid):
        clean_path(raw)


@pytest.mark.parametrize(
    ("raw", "clean"),
    [
        ("main.py", "main.py"),
        ("./src//app.py", "src/app.py"),
        ("", ""),
        (".", ""),
        ("100%.txt", "100%.txt"),
        ("a%20b.txt", "a%20b.txt"),
        ("naïve/日本.md", "naïve/日本.md"),
        ("..hidden", "..hidden"),
        ("a..b", "a..b"),
    ],
)
def test_ordinary_names_are_kept_as_given(raw, clean):
    assert clean_path(raw) == clean


def test_the_root_is_refused_where_it_makes_no_sense():
    with pytest.raises(WorkspaceRoot):
        clean_path(".", allow_root=False)


def test_a_path_must_be_a_string():
    with pytest.raises(PathInvalid):
        clean_path(["a"])
