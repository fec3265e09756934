"""Downloads stream with backpressure and a size cap, on the real Docker engine (issue 12)."""

from __future__ import annotations

import gc
import hashlib
import io
import time
import zipfile
from pathlib import Path

import docker
import pytest

from workspace_app import services

pytestmark = [pytest.mark.django_db, pytest.mark.docker]

ENGINE = docker.from_env()


def rss_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def in_sandbox(session, script: str) -> str:
    result = ENGINE.containers.get(session.container_name).exec_run(["sh", "-c", script], user="1000:1000")
    assert result.exit_code == 0, result.output
    return result.output.decode()


def helpers_running(session) -> int:
    top = ENGINE.api.top(session.container_name, ps_args="-eo pid,args")
    return sum(
        1
        for (_, args) in top["Processes"]
        if args.startswith("/usr/bin/python3 -I -u -c") and args.endswith(" serve")  # not the tunnel
    )


def test_a_slow_client_downloading_an_8_gb_sparse_file_keeps_memory_flat(session):
    in_sandbox(session, "truncate -s 8G /workspace/huge.bin")
    download = services.workspace_download(session=session, path="huge.bin")
    chunks = iter(download.chunks)
    received = len(next(chunks))
    gc.collect()
    baseline = rss_bytes()
    peak = baseline
    # A slow client: one 256 KB chunk every 20 ms (about 12 MB/s) for 8 s, while the helper
    # could send gigabytes a second; without backpressure they would pile up in the backend.
    until = time.monotonic() + 8
    while time.monotonic() < until:
        received += len(next(chunks))
        peak = max(peak, rss_bytes())
        time.sleep(0.02)
    chunks.close()  # the client goes away
    growth = peak - baseline
    assert received > 10 * 1024 * 1024, received  # it did stream
    assert growth < 50 * 1024 * 1024, f"the backend grew {growth / 2**20:.1f} MB"
    # The private helper of the download is gone once the client is.
    deadline = time.monotonic() + 10
    while helpers_running(session) > 1:
        assert time.monotonic() < deadline, "the download's helper outlived it"
        time.sleep(0.1)


def test_a_download_dropped_before_its_body_is_read_frees_its_helper(session):
    # A client that goes away while the view runs: the response (and its body) is thrown away
    # unread. Its private helper must not stay behind, streaming to nobody.
    in_sandbox(session, "truncate -s 1G /workspace/big.bin")
    services.workspace_list(session=session, path="")  # the shared helper, for the count below
    for _ in range(3):
        download = services.workspace_download(session=session, path="big.bin")
        del download
    gc.collect()
    deadline = time.monotonic() + 15
    while helpers_running(session) > 1:
        assert time.monotonic() < deadline, (
            f"{helpers_running(session) - 1} dropped downloads' helpers linger"
        )
        time.sleep(0.1)


def test_a_download_arrives_whole(alice_api, base, session):
    in_sandbox(session, "head -c 3000000 /dev/urandom > /workspace/r.bin && mkdir -p d && cp r.bin d/")
    expected = hashlib.sha256(in_sandbox_bytes(session, "cat /workspace/r.bin")).hexdigest()
    response = alice_api.get(f"{base}/files/download", {"path": "r.bin"})
    assert response.status_code == 200
    assert hashlib.sha256(b"".join(response.streaming_content)).hexdigest() == expected
    response = alice_api.get(f"{base}/files/download", {"path": "d"})
    assert response.status_code == 200
    archive = zipfile.ZipFile(io.BytesIO(b"".join(response.streaming_content)))
    assert hashlib.sha256(archive.read("r.bin")).hexdigest() == expected


def in_sandbox_bytes(session, script: str) -> bytes:
    result = ENGINE.containers.get(session.container_name).exec_run(
        ["sh", "-c", script], user="1000:1000", workdir="/workspace"
    )
    assert result.exit_code == 0
    return result.output


@pytest.mark.parametrize("path", ["big.bin", "folder", ""])
def test_a_download_over_the_cap_is_a_413_before_any_byte(alice_api, base, session, settings, path):
    settings.VIBECODE_MAX_DOWNLOAD_MB = 1
    in_sandbox(session, "mkdir -p /workspace/folder && head -c 2000000 /dev/zero > /workspace/folder/a")
    in_sandbox(session, "head -c 2000000 /dev/zero > /workspace/big.bin")
    response = alice_api.get(f"{base}/files/download", {"path": path})
    assert response.status_code == 413, response
    body = response.json()
    assert body["code"] == "download_too_large" and "limit" in body["detail"], body
    # And the session goes on normally.
    assert alice_api.get(f"{base}/files", {"path": ""}).status_code == 200
