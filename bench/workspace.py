"""Workspace API: file read, save and listing, exec, and concurrent reads, beside the raw Docker
floor measured in the same run.

    .venv/bin/python -m bench.workspace [--repeats N] [--clients 8]

Targets: read and save of a 4 KB file p50 at most 5 ms; exec of ``python3 -c "print(1)"`` p50
at most 25 ms.
"""

from __future__ import annotations

import argparse
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from bench.common import Stats, docker_client, ensure_image, print_header, print_row, sandbox_image
from bench.django_setup import bench_django
from bench.docker_floor import floor_for

DEFAULT_REPEATS = 200
DEFAULT_CLIENTS = 8
SMALL_BYTES = 4096
LARGE_BYTES = 1024 * 1024
MANY_FILES = 1000
SMALL_PATH = "bench4k.txt"
LARGE_PATH = "bench1m.txt"
MANY_DIR = "many"
PRINT_ARGV = ["python3", "-c", "print(1)"]
MAKE_MANY_ARGV = [
    "python3",
    "-c",
    f"import os; os.makedirs('{MANY_DIR}', exist_ok=True); "
    f"[open(f'{MANY_DIR}/f{{i}}.txt','w').close() for i in range({MANY_FILES})]",
]

TARGET_FILE_MS = 5.0
TARGET_EXEC_MS = 25.0


def _check(what: str, response: Any) -> Any:
    if response.status_code >= 400:
        raise SystemExit(f"{what} failed: {response.status_code} {response.content[:300]!r}")
    return response


def _timed(what: str, call: Callable[[], Any], repeats: int) -> Stats:
    """One untimed warm-up call, then ``repeats`` timed calls, each checked for success."""
    _check(what, call())
    samples = []
    for _ in range(repeats):
        started = time.perf_counter()
        response = call()
        samples.append(time.perf_counter() - started)
        _check(what, response)
    return Stats.from_seconds(samples)


def _concurrent_reads(user: Any, url: str, clients: int, per_client: int) -> tuple[Stats, float]:
    """``clients`` threads, each with its own APIClient, each doing ``per_client`` reads.

    Returns the per-request latencies and the aggregate requests per second (all requests over
    the wall time from the common start to the last finish).
    """
    from django.db import connections
    from rest_framework.test import APIClient

    barrier = threading.Barrier(clients + 1)
    latencies: list[list[float]] = [[] for _ in range(clients)]
    errors: list[BaseException] = []

    def worker(index: int) -> None:
        try:
            api = APIClient(SERVER_NAME="localhost")
            api.force_authenticate(user)
            _check("concurrent read warm-up", api.get(url))
            barrier.wait()
            for _ in range(per_client):
                started = time.perf_counter()
                response = api.get(url)
                latencies[index].append(time.perf_counter() - started)
                _check("concurrent read", response)
        except BaseException as exc:  # re-raised in the main thread
            errors.append(exc)
            barrier.abort()
        finally:
            connections.close_all()

    threads = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(clients)]
    for thread in threads:
        thread.start()
    try:
        barrier.wait()
    except threading.BrokenBarrierError:
        pass
    started = time.perf_counter()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    if errors:
        raise errors[0]
    samples = [s for per_thread in latencies for s in per_thread]
    return Stats.from_seconds(samples), len(samples) / elapsed


def _verdict(value: float, target: float) -> str:
    return "PASS" if value <= target else "MISS"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.workspace", description=__doc__)
    parser.add_argument(
        "--repeats",
        type=int,
        default=DEFAULT_REPEATS,
        help="samples for the 4 KB read/save and exec; also reads per concurrent client",
    )
    parser.add_argument("--clients", type=int, default=DEFAULT_CLIENTS, help="threads for concurrent reads")
    args = parser.parse_args(argv)
    if args.repeats < 1 or args.clients < 1:
        parser.error("--repeats and --clients must be at least 1")
    few = max(3, args.repeats // 4)

    client = docker_client()
    image = sandbox_image()
    ensure_image(client, image)
    floor = floor_for(client, image)

    started_all = time.perf_counter()
    with bench_django() as user:
        from rest_framework.test import APIClient

        api = APIClient(SERVER_NAME="localhost")
        api.force_authenticate(user)
        created = _check("session create", api.post("/api/vibecode/sessions/create", format="json"))
        base = f"/api/vibecode/sessions/{created.json()['session_id']}"
        content_url = f"{base}/files/content"
        small = "x" * SMALL_BYTES
        large = "y" * LARGE_BYTES
        read_url = f"{content_url}?path={SMALL_PATH}"

        # Each _timed call warms up first (the first call starts the session's helper process).
        save_small = _timed(
            "save 4 KB",
            lambda: api.put(content_url, {"path": SMALL_PATH, "content": small}, format="json"),
            args.repeats,
        )
        read_small = _timed("read 4 KB", lambda: api.get(read_url), args.repeats)
        got = api.get(read_url).json()
        if got.get("content") != small:
            raise SystemExit(f"read 4 KB returned {got.get('size')} bytes, expected {SMALL_BYTES}")
        save_large = _timed(
            "save 1 MB",
            lambda: api.put(content_url, {"path": LARGE_PATH, "content": large}, format="json"),
            few,
        )

        exec_url = f"{base}/exec"
        made = _check("make 1,000 files", api.post(exec_url, {"argv": MAKE_MANY_ARGV}, format="json")).json()
        if made.get("exit_code") != 0:
            raise SystemExit(f"making {MANY_FILES} files failed: {made}")
        listing = _timed("list 1,000 files", lambda: api.get(f"{base}/files?path={MANY_DIR}"), few)
        entries = api.get(f"{base}/files?path={MANY_DIR}").json()["entries"]
        if len(entries) != MANY_FILES:
            raise SystemExit(f"listing {MANY_DIR} gave {len(entries)} entries, expected {MANY_FILES}")

        exec_print = _timed(
            "exec print(1)", lambda: api.post(exec_url, {"argv": PRINT_ARGV}, format="json"), args.repeats
        )
        out = api.post(exec_url, {"argv": PRINT_ARGV}, format="json").json()
        if out.get("stdout") != "1\n":
            raise SystemExit(f"exec print(1) returned {out}")

        single_started = time.perf_counter()
        for _ in range(args.repeats):
            _check("single-client read", api.get(read_url))
        single_rate = args.repeats / (time.perf_counter() - single_started)
        concurrent, concurrent_rate = _concurrent_reads(user, read_url, args.clients, args.repeats)
    elapsed = time.perf_counter() - started_all

    print_header(f"Workspace API (SQLite, in-process WSGI handler, {elapsed:.1f} s)", with_ratio=True)
    print_row("read 4 KB (GET files/content)", read_small, floor=floor["get_archive_4k"])
    print_row("save 4 KB (PUT files/content)", save_small, floor=floor["put_archive_4k"])
    print_row("save 1 MB (PUT files/content)", save_large, floor=floor["put_archive_4k"])
    print_row(f"list dir of {MANY_FILES:,} files (GET files)", listing)
    print_row("exec python3 -c print(1) (POST exec)", exec_print, floor=floor["exec_python"])
    print_row(f"read 4 KB, {args.clients} clients, per request", concurrent)
    print_row(f"read 4 KB, {args.clients} clients, throughput", Stats((concurrent_rate,), "req/s"))
    print_row("read 4 KB, 1 client, throughput", Stats((single_rate,), "req/s"))
    print(
        f"  concurrent reads: {concurrent_rate:.0f} req/s with {args.clients} clients "
        f"({concurrent.n} requests, p50 {concurrent.median:.2f} ms, p99 {concurrent.p99:.2f} ms) "
        f"vs {single_rate:.0f} req/s from 1 client ({concurrent_rate / single_rate:.2f}x)"
    )
    print(
        f"  floor (raw Docker, this process): get_archive 4 KB {floor['get_archive_4k'].median:.2f} ms, "
        f"put_archive 4 KB {floor['put_archive_4k'].median:.2f} ms, "
        f"exec_run python3 print(1) {floor['exec_python'].median:.2f} ms"
    )

    print()
    print("targets")
    for label, stats, target in (
        ("read 4 KB p50", read_small, TARGET_FILE_MS),
        ("save 4 KB p50", save_small, TARGET_FILE_MS),
        ("exec print(1) p50", exec_print, TARGET_EXEC_MS),
    ):
        print(f"  {label:<22} {stats.median:7.2f} ms  <= {target:g} ms  {_verdict(stats.median, target)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
