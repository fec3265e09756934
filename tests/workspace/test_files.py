"""Workspace files through the API, on the real engine: round trips with checksums equal, and
every trick to read or write outside /workspace refused with nothing touched outside."""

from __future__ import annotations

import base64
import hashlib
import io
import threading
import zipfile

import docker
import pytest
from django.test import override_settings

from sessions_app import services
from tests.accounts.test_auth_api import assert_error

pytestmark = [pytest.mark.django_db, pytest.mark.docker]

ENGINE = docker.from_env()


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def host_exec(session, *argv: str) -> tuple[int, bytes]:
    """Run in the container from the host as the sandbox user, bypassing VibeCode entirely."""
    result = ENGINE.containers.get(session.container_name).exec_run(list(argv), user="1000:1000")
    return result.exit_code, result.output


def save(api, base, path, content: bytes, **extra):
    body = {"path": path, "content": base64.b64encode(content).decode(), "encoding": "base64", **extra}
    return api.put(f"{base}/files/content", body, format="json")


def test_round_trips_keep_checksums_equal(alice_api, session, base):
    text = "print('héllo')\n".encode()
    binary = bytes(range(256)) * 64
    assert save(alice_api, base, "src/main.py", text).status_code == 200
    assert save(alice_api, base, "src/blob.bin", binary).status_code == 200

    read = alice_api.get(f"{base}/files/content", {"path": "src/main.py"}).json()
    assert read["encoding"] == "utf-8" and read["content"].encode() == text and read["size"] == len(text)
    blob = alice_api.get(f"{base}/files/content", {"path": "src/blob.bin"}).json()
    assert blob["encoding"] == "base64" and sha(base64.b64decode(blob["content"])) == sha(binary)
    # The host agrees, byte for byte.
    assert sha(host_exec(session, "cat", "/workspace/src/blob.bin")[1]) == sha(binary)

    listing = alice_api.get(f"{base}/files", {"path": "src"}).json()
    assert listing["path"] == "src"
    assert [(e["name"], e["type"], e["size"]) for e in listing["entries"]] == [
        ("blob.bin", "file", len(binary)),
        ("main.py", "file", len(text)),
    ]

    assert (
        alice_api.post(f"{base}/files", {"path": "docs", "type": "directory"}, format="json").status_code
        == 201
    )
    assert (
        alice_api.post(f"{base}/files", {"path": "docs/a.md", "type": "file"}, format="json").status_code
        == 201
    )
    assert_error(
        alice_api.post(f"{base}/files", {"path": "docs/a.md", "type": "file"}, format="json"),
        409,
        "already_exists",
    )

    moved = alice_api.post(f"{base}/files/move", {"from": "src/main.py", "to": "app/main.py"}, format="json")
    assert moved.status_code == 200 and moved.json()["path"] == "app/main.py"
    assert_error(
        alice_api.post(f"{base}/files/move", {"from": "src/blob.bin", "to": "app/main.py"}, format="json"),
        409,
        "already_exists",
    )
    assert alice_api.get(f"{base}/files/content", {"path": "app/main.py"}).json()["content"].encode() == text

    assert alice_api.delete(f"{base}/files?path=docs").status_code == 204
    assert_error(alice_api.get(f"{base}/files/content", {"path": "docs/a.md"}), 404, "not_found")
    assert host_exec(session, "test", "-e", "/workspace/docs")[0] == 1


def test_a_folder_uploads_and_the_workspace_downloads_as_a_zip(alice_api, session, base):
    files = {
        "project/README.md": b"# hi\n",
        "project/src/app.py": b"print(1)\n",
        "project/data/x.bin": bytes(5000),
    }
    upload = alice_api.post(
        f"{base}/files/upload",
        {"path": "incoming", "files": [io.BytesIO(c) for c in files.values()], "relative_paths": list(files)},
        format="multipart",
    )
    assert upload.status_code == 201, upload.content
    assert sorted(item["path"] for item in upload.json()) == sorted(f"incoming/{p}" for p in files)

    whole = alice_api.get(f"{base}/files/download", {"path": "."})
    assert whole.status_code == 200
    assert whole["Content-Type"] == "application/zip"
    assert "attachment" in whole["Content-Disposition"]
    archive = zipfile.ZipFile(io.BytesIO(b"".join(whole.streaming_content)))
    for path, content in files.items():
        assert sha(archive.read(f"incoming/{path}")) == sha(content)

    one = alice_api.get(f"{base}/files/download", {"path": "incoming/project/data/x.bin"})
    assert one["Content-Disposition"] == "attachment; filename*=UTF-8''x.bin"
    assert one["X-Content-Type-Options"] == "nosniff"
    assert b"".join(one.streaming_content) == files["project/data/x.bin"]


def test_user_html_is_never_served_as_a_page(alice_api, session, base):
    save(alice_api, base, "evil.html", b"<script>alert(1)</script>")
    read = alice_api.get(f"{base}/files/content", {"path": "evil.html"})
    assert read["Content-Type"] == "application/json" and read["X-Content-Type-Options"] == "nosniff"
    download = alice_api.get(f"{base}/files/download", {"path": "evil.html"})
    assert download["Content-Type"] == "application/octet-stream"
    assert download["Content-Disposition"].startswith("attachment")
    assert download["Content-Security-Policy"] == "sandbox"


def test_search_finds_lines_and_they_name_the_file(alice_api, session, base):
    save(alice_api, base, "a.py", b"x = 1\nneedle here\n")
    save(alice_api, base, "sub/b.txt", b"no\nNEEDLE again\n")
    found = alice_api.get(f"{base}/files/search", {"q": "needle"}).json()
    assert found == {
        "truncated": False,
        "matches": [
            {"path": "a.py", "line": 2, "text": "needle here"},
            {"path": "sub/b.txt", "line": 2, "text": "NEEDLE again"},
        ],
    }
    assert alice_api.get(f"{base}/files/search", {"q": "needle", "path": "sub"}).json()["matches"][0][
        "path"
    ] == ("sub/b.txt")


def test_a_conflicting_save_answers_409_and_both_versions_are_recoverable(alice_api, session, base):
    first = save(alice_api, base, "notes.txt", b"version 1\n").json()
    # Someone else (another tab, the terminal) saves a newer version.
    assert host_exec(session, "sh", "-c", "echo 'newer, from the terminal' > /workspace/notes.txt")[0] == 0
    stale = save(alice_api, base, "notes.txt", b"my edit\n", etag=first["etag"])
    body = assert_error(stale, 409, "conflict")
    newer = alice_api.get(f"{base}/files/content", {"path": "notes.txt"}).json()
    assert newer["content"] == "newer, from the terminal\n", "the newer version is kept"
    assert body["current_etag"] == newer["etag"]
    # The user chooses theirs, knowingly: it saves against the current etag.
    assert save(alice_api, base, "notes.txt", b"my edit\n", etag=newer["etag"]).status_code == 200
    assert host_exec(session, "cat", "/workspace/notes.txt")[1] == b"my edit\n"


@override_settings(VIBECODE_MAX_EDIT_BYTES=1024)
def test_a_file_over_the_edit_limit_points_to_the_download(alice_api, session, base):
    assert host_exec(session, "sh", "-c", "head -c 5000 /dev/zero > /workspace/big.bin")[0] == 0
    body = assert_error(alice_api.get(f"{base}/files/content", {"path": "big.bin"}), 413, "file_too_large")
    assert body["download_url"].endswith("/files/download?path=big.bin")


ESCAPES = [
    "..",
    "../etc/passwd",
    "%2e%2e/etc/passwd",
    "%252e%252e/etc/passwd",
    "．．/etc/passwd",
    "a%00.py",
    "/etc/passwd",
    "..\\etc\\passwd",
    "x" * 5000,
]


@pytest.mark.parametrize("path", ESCAPES)
def test_escapes_are_refused_for_reads_and_writes(alice_api, session, base, path):
    assert alice_api.get(f"{base}/files/content", {"path": path}).status_code == 400
    assert save(alice_api, base, path, b"pwned").status_code == 400
    assert alice_api.post(f"{base}/files", {"path": path, "type": "file"}, format="json").status_code == 400
    # Nothing appeared outside /workspace.
    assert host_exec(session, "sh", "-c", "grep -rl pwned /etc /tmp /home 2>/dev/null")[1] == b""


def test_percent_encoded_escapes_in_the_raw_query_string_are_refused(alice_api, base, session):
    for query in ["path=%2e%2e%2fetc%2fpasswd", "path=%252e%252e%252fetc%252fpasswd", "path=a%2500.py"]:
        response = alice_api.get(f"{base}/files/content?{query}")
        assert response.status_code == 400, (query, response.content)
        assert response.json()["code"] in {"path_outside_workspace", "path_invalid"}


def test_symlinks_are_never_followed(alice_api, session, base):
    services.session_exec(
        session=session,
        argv=[
            "sh",
            "-c",
            (
                "cd /workspace && ln -s /etc/passwd passwd && ln -s .. up && mkdir real "
                "&& ln -s /tmp real/mid && echo inside > /tmp/secret"
            ),
        ],
        timeout=10,
        output_limit=4096,
    )
    for path in ["passwd", "up/etc/passwd", "real/mid/secret"]:
        body = assert_error(alice_api.get(f"{base}/files/content", {"path": path}), 400)
        assert body["code"] in {"symlink_refused", "not_a_directory"}, body
    for path in ["passwd", "up/escaped", "real/mid/escaped"]:
        assert save(alice_api, base, path, b"pwned").status_code == 400
    assert host_exec(session, "cat", "/tmp/secret")[1] == b"inside\n"
    assert host_exec(session, "sh", "-c", "ls /tmp /workspace/.. | grep escaped")[1] == b""
    assert b"pwned" not in host_exec(session, "cat", "/etc/passwd")[1]
    # Listing shows links as links, without following them.
    entries = {e["name"]: e["type"] for e in alice_api.get(f"{base}/files").json()["entries"]}
    assert entries["passwd"] == "symlink" and entries["up"] == "symlink"


def test_a_symlink_swap_race_never_writes_outside(alice_api, session, base):
    # Inside the container, x flips between a real directory and a link to /tmp, as fast as it can.
    swapper = (
        "cd /workspace && mkdir -p xdir && end=$(($(date +%s)+60)); "
        "while [ $(date +%s) -lt $end ] && [ ! -e /workspace/stop ]; do "
        "ln -sfn /tmp x; rm -rf x; mkdir x; rm -rf x; done"
    )
    container = ENGINE.containers.get(session.container_name)
    exec_id = ENGINE.api.exec_create(container.id, ["bash", "-c", swapper], user="1000")["Id"]
    ENGINE.api.exec_start(exec_id, detach=True)
    statuses: dict[int, int] = {}
    lock = threading.Lock()
    with override_settings(VIBECODE_RATE_SAVE="100000/m", VIBECODE_RATE_API="100000/m"):
        for i in range(1000):
            code = save(alice_api, base, "x/f", f"write {i}\n".encode()).status_code
            with lock:
                statuses[code] = statuses.get(code, 0) + 1
    host_exec(session, "touch", "/workspace/stop")
    assert set(statuses) <= {200, 400, 404, 409}, statuses
    assert statuses.get(400, 0) > 0, f"the race never caught a link: {statuses}"
    assert host_exec(session, "sh", "-c", "ls /tmp | grep -c '^f$'")[1].strip() == b"0"
    assert host_exec(session, "test", "-e", "/tmp/f")[0] == 1


def test_upload_names_are_checked_and_sizes_limited(alice_api, session, base):
    evil = alice_api.post(
        f"{base}/files/upload",
        {"path": "", "files": [io.BytesIO(b"pwned")], "relative_paths": ["../../x"]},
        format="multipart",
    )
    assert_error(evil, 400, "path_outside_workspace")
    assert host_exec(session, "sh", "-c", "ls / /workspace/.. | grep -x x")[1] == b""
    with override_settings(VIBECODE_MAX_UPLOAD_BYTES=64 * 1024):
        too_big = alice_api.post(
            f"{base}/files/upload", {"path": "", "files": [io.BytesIO(bytes(128 * 1024))]}, format="multipart"
        )
    assert_error(too_big, 413, "upload_too_large")
    assert host_exec(session, "ls", "/workspace")[1].split() == []


def test_saving_to_a_directory_and_deleting_the_root_are_refused(alice_api, session, base):
    alice_api.post(f"{base}/files", {"path": "folder", "type": "directory"}, format="json")
    assert_error(save(alice_api, base, "folder", b"x"), 400, "is_a_directory")
    for path in ["", ".", "./", "/"]:
        assert alice_api.delete(f"{base}/files?path={path}").status_code == 400
    assert host_exec(session, "test", "-d", "/workspace/folder")[0] == 0


def test_bob_gets_404_for_every_file_route_of_alices_session(bob_api, session, base):
    for method, url in [
        ("get", f"{base}/files"),
        ("get", f"{base}/files/content?path=a"),
        ("delete", f"{base}/files?path=a"),
        ("get", f"{base}/files/download?path=."),
        ("get", f"{base}/files/search?q=a"),
    ]:
        assert_error(getattr(bob_api, method)(url), 404, "session_not_found")
    assert_error(bob_api.put(f"{base}/files/content", {"path": "a", "content": "x"}, format="json"), 404)


def test_files_of_a_suspended_session_answer_409(alice_api, session, base):
    alice_api.post(f"{base}/suspend")
    assert_error(alice_api.get(f"{base}/files"), 409, "session_not_running")


def test_the_helper_restarts_when_it_dies(alice_api, session, base):
    save(alice_api, base, "a.txt", b"one")
    host_exec(session, "pkill", "-f", "serve")  # kill the helper behind VibeCode's back
    import time

    for _ in range(20):
        response = alice_api.get(f"{base}/files/content", {"path": "a.txt"})
        if response.status_code == 200:
            break
        time.sleep(0.1)
    assert response.status_code == 200 and response.json()["content"] == "one"


def test_an_upload_never_replaces_files_unless_asked(alice_api, session, base):
    save(alice_api, base, "notes/todo.txt", b"mine\n")
    first = alice_api.post(
        f"{base}/files/upload",
        {
            "path": "notes",
            "files": [io.BytesIO(b"uploaded\n"), io.BytesIO(b"new\n")],
            "relative_paths": ["todo.txt", "other.txt"],
        },
        format="multipart",
    )
    body = assert_error(first, 409, "already_exists")
    assert body["existing"] == ["notes/todo.txt"]
    assert host_exec(session, "cat", "/workspace/notes/todo.txt")[1] == b"mine\n"
    assert host_exec(session, "test", "-e", "/workspace/notes/other.txt")[0] == 1, "nothing was written"
    second = alice_api.post(
        f"{base}/files/upload",
        {
            "path": "notes",
            "files": [io.BytesIO(b"uploaded\n"), io.BytesIO(b"new\n")],
            "relative_paths": ["todo.txt", "other.txt"],
            "overwrite": "true",
        },
        format="multipart",
    )
    assert second.status_code == 201
    assert host_exec(session, "cat", "/workspace/notes/todo.txt")[1] == b"uploaded\n"
