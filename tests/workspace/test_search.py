"""Search, replace-all and quick open on the real engine: ripgrep in the sandbox, through the
helper. Options, caps, conflicts, bad input, and a hostile tenant's workspace."""

from __future__ import annotations

import base64
import json
import threading

import docker
import pytest
from django.test import override_settings

from sandbox import AGENT_SOURCE
from tests.accounts.test_auth_api import assert_error

pytestmark = [pytest.mark.django_db, pytest.mark.docker]

ENGINE = docker.from_env()


def host_exec(session, *argv: str) -> tuple[int, bytes]:
    result = ENGINE.containers.get(session.container_name).exec_run(list(argv), user="1000:1000")
    return result.exit_code, result.output


def save(api, base, path, content: bytes):
    body = {"path": path, "content": base64.b64encode(content).decode(), "encoding": "base64"}
    response = api.put(f"{base}/files/content", body, format="json")
    assert response.status_code == 200, response.content
    return response.json()


def read(api, base, path) -> str:
    return api.get(f"{base}/files/content", {"path": path}).json()["content"]


def search(api, base, query, **options):
    return api.post(f"{base}/search", {"query": query, **options}, format="json")


def found(api, base, query, **options) -> list[tuple[str, int]]:
    response = search(api, base, query, **options)
    assert response.status_code == 200, response.content
    return [(m["path"], m["line"]) for m in response.json()["matches"]]


def test_it_finds_with_regex_case_word_and_globs_and_respects_gitignore(alice_api, session, base):
    save(alice_api, base, "src/app.py", b"def Foo():\n    return foo_bar + foo\n")
    save(alice_api, base, "src/util.js", b"const foo = 1;\n")
    save(alice_api, base, "src/food.txt", b"seafood\n")
    save(alice_api, base, "docs/notes.md", b"FOO is here\n")
    save(alice_api, base, ".gitignore", b"build/\n*.log\n")
    save(alice_api, base, "build/out.py", b"foo\n")
    save(alice_api, base, "debug.log", b"foo\n")
    save(alice_api, base, "node_modules/lib/index.js", b"foo\n")

    assert found(alice_api, base, "foo") == [
        ("docs/notes.md", 1),
        ("src/app.py", 1),
        ("src/app.py", 2),
        ("src/food.txt", 1),
        ("src/util.js", 1),
    ]
    assert found(alice_api, base, "Foo", match_case=True) == [("src/app.py", 1)]
    assert found(alice_api, base, "foo", whole_word=True) == [
        ("docs/notes.md", 1),
        ("src/app.py", 1),
        ("src/app.py", 2),
        ("src/util.js", 1),
    ]
    assert found(alice_api, base, r"foo_\w+", regex=True) == [("src/app.py", 2)]
    assert found(alice_api, base, r"foo_\w+") == []  # literal unless regex
    assert found(alice_api, base, "foo", include=["*.py"]) == [("src/app.py", 1), ("src/app.py", 2)]
    assert found(alice_api, base, "foo", include=["src/**"], exclude=["*.js"]) == [
        ("src/app.py", 1),
        ("src/app.py", 2),
        ("src/food.txt", 1),
    ]

    match = search(alice_api, base, "foo_bar", match_case=True).json()["matches"][0]
    assert match["text"] == "    return foo_bar + foo"
    assert match["ranges"] == [[11, 18]]
    assert search(alice_api, base, "foo").json()["truncated"] is False


def test_results_are_capped_in_all_and_per_file_and_say_so(alice_api, session, base):
    save(alice_api, base, "a.txt", b"hit\n" * 10)
    save(alice_api, base, "b.txt", b"hit\n" * 10)
    with override_settings(VIBECODE_SEARCH_MAX_PER_FILE=3):
        body = search(alice_api, base, "hit").json()
        assert [(m["path"], m["line"]) for m in body["matches"]] == [
            ("a.txt", 1),
            ("a.txt", 2),
            ("a.txt", 3),
            ("b.txt", 1),
            ("b.txt", 2),
            ("b.txt", 3),
        ]
        assert body["truncated"] is True and body["reason"] == "per_file"
    with override_settings(VIBECODE_SEARCH_MAX_MATCHES=4):
        body = search(alice_api, base, "hit").json()
        assert len(body["matches"]) == 4
        assert body["truncated"] is True and body["reason"] == "matches"


def replace(api, base, query, replacement, files, **options):
    body = {"query": query, "replace": replacement, "files": files, **options}
    return api.post(f"{base}/replace", body, format="json")


def test_replace_all_previews_then_edits_three_files(alice_api, session, base):
    save(alice_api, base, "one.py", b"color = 1\nprint(color)\n")
    save(alice_api, base, "two/two.py", b"x = color_of(a)\n")
    save(alice_api, base, "three.txt", b"no newline at the end: color")
    save(alice_api, base, "other.txt", b"colour\n")
    matches = search(alice_api, base, r"colou?r(_of)?", regex=True).json()["matches"]
    paths = sorted({m["path"] for m in matches} - {"other.txt"})
    assert paths == ["one.py", "three.txt", "two/two.py"]

    files = [{"path": p} for p in paths]
    preview = replace(alice_api, base, r"colo(u?)r(_of)?", "hue${1}", files, regex=True)
    assert preview.status_code == 200, preview.content
    body = preview.json()
    assert body["applied"] is False and body["failed"] == 0 and body["lines"] == 4
    by_path = {f["path"]: f for f in body["files"]}
    assert by_path["one.py"]["changes"] == [
        {"line": 1, "before": "color = 1", "after": "hue = 1"},
        {"line": 2, "before": "print(color)", "after": "print(hue)"},
    ]
    assert read(alice_api, base, "one.py") == "color = 1\nprint(color)\n"  # a preview changes nothing

    files = [{"path": f["path"], "etag": f["etag"]} for f in body["files"]]
    applied = replace(alice_api, base, r"colo(u?)r(_of)?", "hue${1}", files, regex=True, apply=True)
    assert applied.status_code == 200, applied.content
    assert applied.json()["failed"] == 0 and applied.json()["applied"] is True
    assert read(alice_api, base, "one.py") == "hue = 1\nprint(hue)\n"
    assert read(alice_api, base, "two/two.py") == "x = hue(a)\n"
    assert read(alice_api, base, "three.txt") == "no newline at the end: hue"
    assert read(alice_api, base, "other.txt") == "colour\n"
    # The new etags are the files' etags: the editor can save on top of them.
    new = {f["path"]: f["etag"] for f in applied.json()["files"]}
    meta = alice_api.get(f"{base}/files/content", {"path": "one.py"}).json()
    assert new["one.py"] == meta["etag"]


def test_a_file_changed_since_the_search_is_a_conflict_and_is_not_overwritten(alice_api, session, base):
    first = save(alice_api, base, "a.txt", b"old\n")
    second = save(alice_api, base, "b.txt", b"old\n")
    etags = search(alice_api, base, "old").json()["etags"]
    assert etags == {"a.txt": first["etag"], "b.txt": second["etag"]}
    save(alice_api, base, "b.txt", b"old, and edited meanwhile\n")  # after the search saw it
    files = [{"path": p, "etag": etag} for p, etag in etags.items()]

    preview = replace(alice_api, base, "old", "new", files).json()
    assert [(f["path"], f["status"]) for f in preview["files"]] == [("a.txt", 200), ("b.txt", 409)]

    body = replace(alice_api, base, "old", "new", files, apply=True).json()
    results = {f["path"]: f for f in body["files"]}
    assert results["a.txt"]["status"] == 200
    assert results["b.txt"]["status"] == 409 and results["b.txt"]["code"] == "conflict"
    assert body["conflicts"] == 1
    assert read(alice_api, base, "a.txt") == "new\n"
    assert read(alice_api, base, "b.txt") == "old, and edited meanwhile\n"


def test_bad_input_answers_400_with_a_stable_code(alice_api, bob_api, session, base):
    save(alice_api, base, "a.txt", b"text\n")
    assert_error(search(alice_api, base, "a(", regex=True), 400, "invalid_regex")
    assert_error(search(alice_api, base, "a", include=["["]), 400, "invalid_glob")
    assert_error(search(alice_api, base, ""), 400)
    assert_error(search(alice_api, base, "a\0b"), 400)
    assert_error(search(alice_api, base, "a", include=["x\ny"]), 400, "invalid_glob")
    assert_error(alice_api.post(f"{base}/search", "{", content_type="application/json"), 400)
    assert_error(replace(alice_api, base, "a(", "b", [{"path": "a.txt"}], regex=True), 400, "invalid_regex")
    outside = replace(alice_api, base, "t", "b", [{"path": "../etc/passwd"}]).json()["files"][0]
    assert (outside["status"], outside["code"]) == (400, "path_outside_workspace")
    with override_settings(VIBECODE_REPLACE_MAX_FILES=1):
        files = [{"path": "a.txt"}, {"path": "b.txt"}]
        assert_error(replace(alice_api, base, "t", "b", files), 400, "too_many_files")
    # Someone else's session is not found.
    assert_error(search(bob_api, base, "text"), 404)
    assert_error(bob_api.get(f"{base}/search/files"), 404)
    assert_error(replace(bob_api, base, "t", "b", [{"path": "a.txt"}]), 404)
    assert read(alice_api, base, "a.txt") == "text\n"


def test_quick_open_lists_files_but_not_git_node_modules_or_ignored(alice_api, session, base):
    for path in ["src/main.py", "README.md", ".gitignore", ".git/config", "node_modules/x/i.js", "dist/a.js"]:
        save(alice_api, base, path, b"dist/\n" if path == ".gitignore" else b"x\n")
    body = alice_api.get(f"{base}/search/files").json()
    assert body == {"files": [".gitignore", "README.md", "src/main.py"], "truncated": False, "reason": None}
    with override_settings(VIBECODE_QUICK_OPEN_MAX_FILES=2):
        body = alice_api.get(f"{base}/search/files").json()
        assert len(body["files"]) == 2 and body["truncated"] is True and body["reason"] == "files"


def test_quick_open_lists_ten_thousand_files_in_one_answer(alice_api, session, base):
    plant = (
        "import os\n"
        "for i in range(100):\n"
        "    os.makedirs(f'/workspace/pkg{i}', exist_ok=True)\n"
        "    for j in range(100):\n"
        "        open(f'/workspace/pkg{i}/module_{j}.py', 'w').close()\n"
    )
    assert host_exec(session, "python3", "-c", plant)[0] == 0
    body = alice_api.get(f"{base}/search/files").json()
    assert body["truncated"] is False and len(body["files"]) == 10000
    assert body["files"][:2] == ["pkg0/module_0.py", "pkg0/module_1.py"]
    assert "pkg99/module_99.py" in body["files"]


def test_a_hostile_workspace_only_slows_its_own_search(alice_api, session, base):
    save(alice_api, base, "ok.txt", b"needle\n")
    plant = (
        "import os\n"
        "os.chdir('/workspace')\n"
        "os.makedirs('loop', exist_ok=True)\n"
        "os.symlink('..', 'loop/up')\n"
        "os.symlink('/etc', 'etc-link')\n"
        "open('-e', 'w').write('needle in an option-like name\\n')\n"
        "open('new\\nline.txt', 'w').write('needle\\n')\n"
        "open('blob.bin', 'wb').write(b'needle\\0' * 1000)\n"
        "open('minified.js', 'w').write('needle' + 'x' * (2 * 1024 * 1024) + '\\n')\n"
        "d = 'deep'\n"
        "for i in range(60):\n"
        "    d += '/d'\n"
        "os.makedirs(d)\n"
        "open(d + '/bottom.txt', 'w').write('needle\\n')\n"
    )
    code, output = host_exec(session, "python3", "-c", plant)
    assert code == 0, output
    response = search(alice_api, base, "needle")
    assert response.status_code == 200, response.content
    body = response.json()
    paths = [m["path"] for m in body["matches"]]
    assert "-e" in paths and "ok.txt" in paths and "new\nline.txt" in paths
    assert "deep" + "/d" * 60 + "/bottom.txt" in paths
    assert "blob.bin" not in paths  # binary files are skipped
    assert not any(p.startswith(("loop/up", "etc-link")) for p in paths)  # links are not followed
    assert "minified.js" not in paths and body["reason"] == "long_lines"  # the 2 MB line is dropped

    names = alice_api.get(f"{base}/search/files").json()["files"]
    assert "-e" in names and "new\nline.txt" in names and not any(n.startswith("loop/up") for n in names)
    # A name with a newline cannot be edited through the API: replace reports it, per file.
    body = replace(alice_api, base, "needle", "pin", [{"path": "new\nline.txt"}, {"path": "-e"}], apply=True)
    assert [f["status"] for f in body.json()["files"]] == [400, 200]
    assert read(alice_api, base, "-e") == "pin in an option-like name\n"
    assert [
        f["status"] for f in replace(alice_api, base, "n", "m", [{"path": "blob.bin"}]).json()["files"]
    ] == [415]


def test_killing_rg_mid_search_is_never_a_500(alice_api, session, base):
    plant = (
        "import os\n"
        "for i in range(300):\n"
        "    os.makedirs(f'/workspace/t/{i}', exist_ok=True)\n"
        "    for j in range(40):\n"
        "        open(f'/workspace/t/{i}/{j}.txt', 'w').write('abc ' * 200 + '\\n')\n"
    )
    assert host_exec(session, "python3", "-c", plant)[0] == 0
    done = threading.Event()

    def tenant_kills_every_rg_it_sees() -> None:
        while not done.is_set():
            host_exec(session, "pkill", "-KILL", "-x", "rg")

    killer = threading.Thread(target=tenant_kills_every_rg_it_sees)
    killer.start()
    try:
        answer = search(alice_api, base, r"(a|b)+c\w{30}zz", regex=True)
    finally:
        done.set()
        killer.join()
    assert answer.status_code == 200, answer.content
    assert answer.json()["reason"] in {None, "interrupted"}
    assert found(alice_api, base, "abc", include=["0.txt"])[:1] == [("t/0/0.txt", 1)]  # searching still works


HARNESS = """
import json, sys
g = {"__name__": "agent"}
exec(compile(sys.argv[1].rsplit("\\nmain()", 1)[0], "agent", "exec"), g)
g["RG"] = sys.argv[2]
try:
    print(json.dumps(g["op_search"](json.loads(sys.argv[3]), b"")[0]))
except g["AgentError"] as exc:
    print(json.dumps(exc.payload))
"""


def agent_search(session, rg: str, args: dict) -> dict:
    code, output = host_exec(session, "python3", "-I", "-c", HARNESS, AGENT_SOURCE, rg, json.dumps(args))
    assert code == 0, output
    return json.loads(output.decode().strip().splitlines()[-1])


def test_rg_killed_mid_output_gives_the_partial_results_and_says_interrupted(session):
    # A stand-in for rg that prints one match and is then killed (as a tenant's pkill would).
    fake = (
        "#!/bin/sh\n"
        'printf "%s\\n" \'{"type":"match","data":{"path":{"text":"./a.txt"},"lines":{"text":"hit\\n"},'
        '"line_number":1,"submatches":[{"match":{"text":"hit"},"start":0,"end":3}]}}\'\n'
        "kill -KILL $$\n"
    )
    target = "/workspace/fake-rg"
    write = f"import os; open({target!r}, 'w').write({fake!r}); os.chmod({target!r}, 0o755)"
    code, output = host_exec(session, "python3", "-c", write)
    assert code == 0, output
    result = agent_search(session, target, {"kind": "text", "q": "hit"})
    assert result["matches"] == [{"path": "a.txt", "line": 1, "text": "hit", "ranges": [[0, 3]], "offset": 0}]
    assert result["truncated"] is True and result["reason"] == "interrupted"


def test_an_image_without_rg_answers_search_unavailable(session):
    result = agent_search(session, "/usr/bin/no-such-rg", {"kind": "text", "q": "hit"})
    assert result["code"] == "search_unavailable" and result["status"] == 503
