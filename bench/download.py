"""Downloads: throughput through the API beside raw ``docker exec cat``, and the backend's memory
while a slow client downloads an 8 GB sparse file.

    .venv/bin/python -m bench.download [--size-mb 256] [--repeats 3] [--slow-seconds 10]

Targets: the slow client's download grows the backend's RSS by under 50 MB (backpressure: the
helper waits for the client); API throughput at least a third of raw ``docker exec cat``.
"""

from __future__ import annotations

import argparse
import gc
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.common import Stats, docker_client, ensure_image, print_header, print_row, sandbox_image
from bench.django_setup import bench_django

TARGET_RSS_MB = 50.0
TARGET_RATIO = 1 / 3
SLOW_CHUNK_PAUSE = 0.02  # one 256 KB chunk every 20 ms: about 12 MB/s


def _rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise SystemExit("no VmRSS in /proc/self/status")


def _raw_cat_mb_s(client: Any, container: str, path: str, size: int) -> float:
    """Read ``path`` whole through a plain ``docker exec cat`` (the floor), in MB/s."""
    exec_id = client.api.exec_create(container, ["cat", path], user="1000:1000")["Id"]
    started = time.perf_counter()
    received = 0
    for chunk in client.api.exec_start(exec_id, stream=True):
        received += len(chunk)
    elapsed = time.perf_counter() - started
    if received != size:
        raise SystemExit(f"raw cat read {received} bytes, expected {size}")
    return size / 2**20 / elapsed


def _api_mb_s(api: Any, url: str, size: int) -> float:
    started = time.perf_counter()
    response = api.get(url)
    if response.status_code != 200:
        raise SystemExit(f"download failed: {response.status_code}")
    received = sum(len(chunk) for chunk in response.streaming_content)
    elapsed = time.perf_counter() - started
    if received != size:
        raise SystemExit(f"the API sent {received} bytes, expected {size}")
    return size / 2**20 / elapsed


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.download", description=__doc__)
    parser.add_argument("--size-mb", type=int, default=256, help="file size for the throughput runs")
    parser.add_argument("--repeats", type=int, default=3, help="throughput runs of each kind")
    parser.add_argument("--slow-seconds", type=float, default=10.0, help="how long the slow client reads")
    args = parser.parse_args(argv)
    if args.size_mb < 1 or args.repeats < 1 or args.slow_seconds <= 0:
        parser.error("--size-mb and --repeats must be at least 1, --slow-seconds above 0")

    client = docker_client()
    ensure_image(client, sandbox_image())
    size = args.size_mb * 2**20
    with bench_django() as user:
        from rest_framework.test import APIClient

        from sessions_app.models import Session
        from workspace_app import services

        api = APIClient(SERVER_NAME="localhost")
        api.force_authenticate(user)
        created = api.post("/api/vibecode/sessions/create", format="json")
        if created.status_code != 201:
            raise SystemExit(f"session create failed: {created.status_code} {created.content[:300]!r}")
        session = Session.objects.get(public_id=created.json()["session_id"])
        container = session.container_name
        files = f"truncate -s {size} /workspace/dl.bin && truncate -s 8G /workspace/huge.bin"
        made = client.api.exec_create(container, ["sh", "-c", files])
        client.api.exec_start(made["Id"])

        url = f"/api/vibecode/sessions/{session.public_id}/files/download?path=dl.bin"
        _api_mb_s(api, url, size)  # warm-up: the session's helper starts
        raw_runs = [_raw_cat_mb_s(client, container, "/workspace/dl.bin", size) for _ in range(args.repeats)]
        raw = Stats(tuple(raw_runs), "MB/s")
        through_api = Stats(tuple(_api_mb_s(api, url, size) for _ in range(args.repeats)), "MB/s")

        # The slow client: read the 8 GB file one chunk at a time with a pause between chunks.
        download = services.workspace_download(session=session, path="huge.bin")
        chunks = iter(download.chunks)
        received = len(next(chunks))
        gc.collect()
        baseline = peak = _rss_mb()
        started = time.perf_counter()
        while time.perf_counter() - started < args.slow_seconds:
            received += len(next(chunks))
            peak = max(peak, _rss_mb())
            time.sleep(SLOW_CHUNK_PAUSE)
        slow_elapsed = time.perf_counter() - started
        chunks.close()  # type: ignore[attr-defined]
        growth = peak - baseline

    print_header("Downloads (SQLite, in-process WSGI handler)", with_ratio=True)
    print_row(f"download {args.size_mb} MB, raw docker exec cat", raw)
    print_row(f"download {args.size_mb} MB through the API", through_api, floor=raw)
    print_row("slow client on 8 GB sparse: backend RSS growth", Stats((growth,), "MB"))
    print_row("slow client on 8 GB sparse: rate", Stats((received / 2**20 / slow_elapsed,), "MB/s"))
    ratio = through_api.ratio(raw)
    rss_ok = growth < TARGET_RSS_MB
    ratio_ok = ratio >= TARGET_RATIO
    print(
        f"  RSS growth {growth:.1f} MB over {slow_elapsed:.0f} s of a slow client "
        f"(target < {TARGET_RSS_MB:.0f} MB): {'PASS' if rss_ok else 'MISS'}; "
        f"throughput {through_api.median:.0f} MB/s vs raw cat {raw.median:.0f} MB/s = {ratio:.2f}x "
        f"(target >= {TARGET_RATIO:.2f}x): {'PASS' if ratio_ok else 'MISS'}"
    )
    return 0 if rss_ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
