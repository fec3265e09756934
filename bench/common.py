"""Shared helpers for the benchmarks: timing, statistics, printing, Docker access, cleanup.

A benchmark module defines ``main(argv: Sequence[str] | None = None) -> int`` and prints
rows with :func:`print_row`, passing the matching floor figure (from
``bench.docker_floor.floor_for``) so every row says how far it is from raw Docker.
"""

from __future__ import annotations

import contextlib
import math
import os
import signal
import socket
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

import docker
import docker.errors
import httpx
from docker.models.containers import Container

BENCH_LABEL_KEY = "app"
BENCH_LABEL_VALUE = "vibecode-bench"
BENCH_LABELS = {BENCH_LABEL_KEY: BENCH_LABEL_VALUE}
DEFAULT_IMAGE = "vibecode-sandbox:latest"

NAME_WIDTH = 44
REPO_ROOT = Path(__file__).resolve().parent.parent


def sandbox_image() -> str:
    """The image benchmarks run: ``VIBECODE_SANDBOX_IMAGE`` or the default sandbox image."""
    return os.environ.get("VIBECODE_SANDBOX_IMAGE") or DEFAULT_IMAGE


# --- statistics ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Stats:
    """Samples of one measurement. Times are kept in milliseconds; ``unit`` says otherwise.

    For times, lower is better; for throughputs (unit ``MB/s``), higher is better.
    """

    samples: tuple[float, ...]
    unit: str = "ms"

    @classmethod
    def from_seconds(cls, seconds: Sequence[float]) -> Stats:
        return cls(tuple(s * 1000.0 for s in seconds), "ms")

    @property
    def n(self) -> int:
        return len(self.samples)

    @property
    def median(self) -> float:
        return statistics.median(self.samples)

    @property
    def min(self) -> float:
        return min(self.samples)

    @property
    def max(self) -> float:
        return max(self.samples)

    @property
    def p99(self) -> float:
        """Nearest-rank 99th percentile (the max when there are fewer than 100 samples)."""
        ordered = sorted(self.samples)
        return ordered[max(0, math.ceil(0.99 * len(ordered)) - 1)]

    def ratio(self, floor: Stats) -> float:
        """``self.median / floor.median``: 1.12 means 12 % above the floor."""
        return self.median / floor.median if floor.median else math.inf

    def to_dict(self) -> dict[str, Any]:
        return {
            "unit": self.unit,
            "n": self.n,
            "median": round(self.median, 3),
            "p99": round(self.p99, 3),
            "min": round(self.min, 3),
            "max": round(self.max, 3),
        }


def time_calls(
    fn: Callable[[], object],
    repeats: int,
    *,
    warmup: int = 1,
    setup: Callable[[], object] | None = None,
) -> Stats:
    """Call ``fn`` ``repeats`` times and time each call with ``time.perf_counter``.

    ``warmup`` calls run first and are not counted; ``setup`` runs before each call, untimed.
    """
    for _ in range(warmup):
        if setup is not None:
            setup()
        fn()
    samples = []
    for _ in range(repeats):
        if setup is not None:
            setup()
        started = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - started)
    return Stats.from_seconds(samples)


# --- printing ------------------------------------------------------------------------------


def _fmt(value: float, unit: str) -> str:
    if unit == "ms" and value < 10:
        return f"{value:.2f} ms"
    return f"{value:.1f} {unit}"


def print_header(title: str, *, with_ratio: bool = False) -> None:
    print()
    print(title)
    columns = f"{'':<{NAME_WIDTH}} {'median':>11} {'min':>11} {'max':>11} {'n':>5}"
    if with_ratio:
        columns += f"  {'ratio':>12}"
    print(columns)


def print_row(name: str, stats: Stats, *, floor: Stats | None = None) -> None:
    """One table row: ``name  median  min  max  n`` and, given a floor, ``1.12x floor``."""
    row = (
        f"{name:<{NAME_WIDTH}} {_fmt(stats.median, stats.unit):>11} "
        f"{_fmt(stats.min, stats.unit):>11} {_fmt(stats.max, stats.unit):>11} {stats.n:>5}"
    )
    if floor is not None:
        row += f"  {stats.ratio(floor):>6.2f}x floor"
    print(row, flush=True)


# --- Docker --------------------------------------------------------------------------------


def docker_client() -> docker.DockerClient:
    """A client for the local engine, or exit 2 with what to do when none answers."""
    try:
        client = docker.from_env(timeout=120)
        client.ping()
    except docker.errors.DockerException as exc:
        print(
            f"bench: no Docker engine answers ({exc}).\nStart one with: scripts/dockerd.sh",
            file=sys.stderr,
        )
        sys.exit(2)
    return client


def ensure_image(client: docker.DockerClient, image: str) -> None:
    """Exit 2, saying how to build it, when ``image`` is missing."""
    try:
        client.images.get(image)
    except docker.errors.ImageNotFound:
        print(
            f"bench: the sandbox image {image} does not exist on this engine.\n"
            "Build it with: make sandbox-image\n"
            "           or: python manage.py build_sandbox_image",
            file=sys.stderr,
        )
        sys.exit(2)


def _remove(container: Container) -> None:
    # force=True kills first; 404 means it is already gone, which is what we want.
    with contextlib.suppress(docker.errors.NotFound):
        container.remove(force=True, v=True)


@contextlib.contextmanager
def throwaway_container(
    client: docker.DockerClient,
    image: str,
    *,
    start: bool = True,
    **kwargs: Any,
) -> Iterator[Container]:
    """Create (and by default start) a container labelled ``app=vibecode-bench``.

    The container is removed with force when the block exits, however it exits (error,
    Ctrl-C, or SIGTERM once :func:`sigterm_as_interrupt` is installed). The block is
    entered right after start, so timing the ``with`` statement's entry times create+start.
    """
    labels = {**kwargs.pop("labels", {}), **BENCH_LABELS}
    name = kwargs.pop("name", None) or f"vibecode-bench-{uuid.uuid4().hex[:10]}"
    try:
        container = client.containers.create(image, name=name, labels=labels, **kwargs)
    except BaseException:
        # Interrupted mid-request, the engine may still have made it: remove it by name.
        with contextlib.suppress(docker.errors.DockerException):
            _remove(client.containers.get(name))
        raise
    try:
        if start:
            container.start()
        yield container
    finally:
        _remove(container)


def sweep_bench_containers(client: docker.DockerClient) -> int:
    """Remove every container labelled ``app=vibecode-bench``; returns how many.

    For leftovers of a run that was killed with SIGKILL. Do not call it while another
    benchmark run is in progress on the same engine.
    """
    found = client.containers.list(all=True, filters={"label": f"{BENCH_LABEL_KEY}={BENCH_LABEL_VALUE}"})
    for container in found:
        _remove(container)
    return len(found)


def sigterm_as_interrupt() -> None:
    """Make SIGTERM raise KeyboardInterrupt so ``finally`` blocks clean up as for Ctrl-C."""

    def handler(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, handler)


# --- the server ----------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def serve_checkout(
    env: Mapping[str, str], log_path: Path, *, timeout: float = 90.0
) -> Iterator[tuple[subprocess.Popen[bytes], int]]:
    """This checkout served as ``make run`` and compose serve it (``python -m
    vibecode_project.serve``, ``VIBECODE_WORKERS`` from ``env``) on a free loopback port, its
    output in ``log_path``. Yields the server process and its port once ``/health`` answers;
    stopped at the end. With one worker the process is daphne itself."""
    port = free_port()
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "vibecode_project.serve"],
            cwd=REPO_ROOT,
            env={**env, "VIBECODE_HOST": "127.0.0.1", "VIBECODE_PORT": str(port)},
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            deadline = time.monotonic() + timeout
            while True:
                if process.poll() is not None:
                    raise SystemExit(f"the server exited with {process.returncode}; see {log_path}")
                try:
                    httpx.get(f"http://127.0.0.1:{port}/health", timeout=2.0)
                    break
                except httpx.HTTPError:
                    if time.monotonic() > deadline:
                        raise SystemExit(
                            f"the server did not answer within {timeout:.0f} s; see {log_path}"
                        ) from None
                    time.sleep(0.1)
            yield process, port
        finally:
            process.terminate()
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
