"""Run every benchmark: ``.venv/bin/python -m bench.run [NAME ...]`` from the repo root.

A benchmark is a module ``bench/<name>.py`` that defines ``main(argv) -> int``. They run in
this process, ``docker_floor`` first and then by name, so the floor measured first is cached
(``bench.docker_floor.floor_for``) and every later module prints its ratios against it.
Exits non-zero if any benchmark fails; the others still run.
"""

from __future__ import annotations

import importlib
import sys
import time
import traceback
from collections.abc import Sequence
from pathlib import Path

from bench.common import docker_client, sweep_bench_containers

BENCH_DIR = Path(__file__).resolve().parent
NOT_BENCHMARKS = {"__init__", "common", "run", "django_setup"}
FIRST = "docker_floor"


def discover() -> list[str]:
    """Benchmark module names, ``docker_floor`` first, then alphabetical."""
    names = sorted(p.stem for p in BENCH_DIR.glob("*.py") if p.stem not in NOT_BENCHMARKS)
    return sorted(names, key=lambda name: name != FIRST)


def run_one(name: str) -> int:
    """Import ``bench.<name>`` and call its ``main([])``; returns its exit status."""
    module = importlib.import_module(f"bench.{name}")
    main = getattr(module, "main", None)
    if not callable(main):
        return -1
    try:
        status = main([])
    except SystemExit as exc:
        status = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except Exception:
        traceback.print_exc()
        status = 1
    return int(status or 0)


def main(argv: Sequence[str] | None = None) -> int:
    wanted = list(sys.argv[1:] if argv is None else argv)
    names = discover()
    unknown = [name for name in wanted if name not in names]
    if unknown:
        print(f"bench.run: unknown benchmark(s) {unknown}; known: {names}", file=sys.stderr)
        return 2
    if wanted:
        names = [name for name in names if name in wanted]

    # Leftovers of a run killed with SIGKILL would skew the figures.
    swept = sweep_bench_containers(docker_client())
    if swept:
        print(f"bench.run: removed {swept} leftover bench container(s)")

    results: list[tuple[str, int, float]] = []
    for name in names:
        print(f"\n=== bench.{name} ===", flush=True)
        started = time.perf_counter()
        status = run_one(name)
        if status == -1:
            print(f"bench.{name} defines no main(); skipped")
            continue
        results.append((name, status, time.perf_counter() - started))

    print("\n=== summary ===")
    for name, status, seconds in results:
        print(f"{name:<24} {'ok' if status == 0 else f'FAILED ({status})':<12} {seconds:6.1f} s")
    return 1 if any(status != 0 for _name, status, _s in results) else 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        # Each benchmark's finally blocks have removed its containers by now.
        print("\nbench.run: interrupted", file=sys.stderr)
        sys.exit(130)
