"""The raw Docker floor: what the engine itself costs on this machine.

Every VibeCode figure (session start, file read, terminal keystroke...) is compared with the
matching figure here, measured with the bare docker SDK against the sandbox image, with
containers run as ``network_mode="none"``, ``init=True``, ``sleep infinity``.

    .venv/bin/python -m bench.docker_floor [--repeats N] [--runtime runsc] [--json]

Other benchmarks call :func:`floor_for`, which measures once per process and caches, so
``python -m bench.run`` measures the floor once and every later module reuses it.
"""

from __future__ import annotations

import argparse
import io
import json
import socket
import sys
import tarfile
import time
from collections.abc import Callable, Sequence
from typing import Any

import docker
from docker.models.containers import Container

from bench.common import (
    Stats,
    docker_client,
    ensure_image,
    print_header,
    print_row,
    sandbox_image,
    sigterm_as_interrupt,
    throwaway_container,
    time_calls,
)

DEFAULT_REPEATS = 10
KEYSTROKES = 200
THROUGHPUT_BYTES = 20_000_000
ARCHIVE_BYTES = 4096

# Key -> label, in print order. Later benchmarks use the keys.
LABELS = {
    "create_start": "container create+start",
    "create_start_exec": "container create+start+first exec",
    "stop": "container stop (init=True)",
    "exec_true": "exec_run true",
    "exec_python": "exec_run python3 -c print(1)",
    "get_archive_4k": "get_archive 4 KB file",
    "put_archive_4k": "put_archive 4 KB file",
    "tty_echo": f"TTY echo round trip ({KEYSTROKES} keys)",
    "tty_throughput": f"exec TTY output ({THROUGHPUT_BYTES // 1_000_000} MB)",
}

_cache: dict[tuple[str, str | None], dict[str, Stats]] = {}


def container_kwargs(runtime: str | None = None) -> dict[str, Any]:
    """How floor containers run; session benchmarks should match these to compare fairly."""
    kwargs: dict[str, Any] = {
        "command": ["sleep", "infinity"],
        "network_mode": "none",
        "init": True,
    }
    if runtime:
        kwargs["runtime"] = runtime
    return kwargs


def measure_floor(
    client: docker.DockerClient,
    image: str,
    repeats: int = DEFAULT_REPEATS,
    *,
    runtime: str | None = None,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Stats]:
    """Measure every floor figure; returns ``{key: Stats}`` with the keys of :data:`LABELS`.

    Lifecycle figures take ``repeats`` samples; per-exec and archive figures take
    ``5 * repeats``; the TTY echo takes 200 keystrokes; throughput takes
    ``max(3, repeats // 3)`` runs. Every container made is removed, even on error or Ctrl-C.
    """
    say = progress or (lambda _msg: None)
    kwargs = container_kwargs(runtime)
    fast = 5 * repeats
    out: dict[str, Stats] = {}

    say("create+start")
    out["create_start"] = _lifecycle(client, image, kwargs, repeats, first_exec=False)
    say("create+start+first exec")
    out["create_start_exec"] = _lifecycle(client, image, kwargs, repeats, first_exec=True)
    say("stop")
    out["stop"] = _stop(client, image, kwargs, repeats)

    with throwaway_container(client, image, **kwargs) as ct:
        say("exec_run")
        out["exec_true"] = time_calls(lambda: _exec_ok(ct, ["true"]), fast)
        out["exec_python"] = time_calls(lambda: _exec_ok(ct, ["python3", "-c", "print(1)"]), fast)

        say("archives")
        payload = _tar_of_one_file("bench.bin", b"x" * ARCHIVE_BYTES)
        _put(ct, payload)
        out["put_archive_4k"] = time_calls(lambda: _put(ct, payload), fast)
        out["get_archive_4k"] = time_calls(lambda: _get(ct, "/workspace/bench.bin"), fast)

        say("TTY echo")
        out["tty_echo"] = tty_echo(client, ct.id, KEYSTROKES)
        say("TTY throughput")
        runs = max(3, repeats // 3)
        out["tty_throughput"] = Stats(
            tuple(tty_throughput(client, ct.id, THROUGHPUT_BYTES) for _ in range(runs)),
            "MB/s",
        )
    return {key: out[key] for key in LABELS}


def floor_for(
    client: docker.DockerClient,
    image: str,
    *,
    repeats: int = DEFAULT_REPEATS,
    runtime: str | None = None,
) -> dict[str, Stats]:
    """The floor for ``image`` (and ``runtime``), measured once per process."""
    key = (image, runtime)
    if key not in _cache:
        _cache[key] = measure_floor(client, image, repeats, runtime=runtime)
    return _cache[key]


# --- measurements --------------------------------------------------------------------------


def _lifecycle(
    client: docker.DockerClient,
    image: str,
    kwargs: dict[str, Any],
    repeats: int,
    *,
    first_exec: bool,
) -> Stats:
    samples = []
    for i in range(repeats + 1):  # the first one warms up and is dropped
        started = time.perf_counter()
        with throwaway_container(client, image, **kwargs) as ct:
            if first_exec:
                _exec_ok(ct, ["true"])
            if i:
                samples.append(time.perf_counter() - started)
    return Stats.from_seconds(samples)


def _stop(client: docker.DockerClient, image: str, kwargs: dict[str, Any], repeats: int) -> Stats:
    samples = []
    for _ in range(repeats):
        with throwaway_container(client, image, **kwargs) as ct:
            started = time.perf_counter()
            ct.stop(timeout=10)
            samples.append(time.perf_counter() - started)
    return Stats.from_seconds(samples)


def _exec_ok(ct: Container, cmd: list[str]) -> None:
    result = ct.exec_run(cmd)
    if result.exit_code != 0:
        raise RuntimeError(f"{cmd} exited with {result.exit_code}: {result.output!r}")


def _tar_of_one_file(name: str, data: bytes) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        info = tarfile.TarInfo(name)
        info.size = len(data)
        info.uid = info.gid = 1000
        info.mode = 0o644
        tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _put(ct: Container, payload: bytes) -> None:
    if not ct.put_archive("/workspace", payload):
        raise RuntimeError("put_archive failed")


def _get(ct: Container, path: str) -> None:
    stream, _stat = ct.get_archive(path)
    for _chunk in stream:
        pass


def _raw_socket(obj: Any) -> socket.socket:
    # exec_start(socket=True) gives a SocketIO over a unix socket; talk to the socket itself.
    sock = getattr(obj, "_sock", obj)
    if not isinstance(sock, socket.socket):
        raise TypeError(f"unexpected exec socket {type(obj)!r}")
    return sock


def _recv_exactly(sock: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise RuntimeError(f"exec socket closed after {data!r}")
        data += chunk
    return data


def tty_echo(client: docker.DockerClient, container_id: str, keystrokes: int) -> Stats:
    """Per-keystroke round trip through a TTY exec: write one byte, read it back.

    The program in the container is ``cat`` on a raw, no-echo TTY, so each byte makes the
    full trip (daemon, pty, process, pty, daemon) the way a shell echoing a key does.
    """
    exec_id = client.api.exec_create(
        container_id,
        ["sh", "-c", "stty raw -echo; printf R; exec cat"],
        stdin=True,
        tty=True,
    )["Id"]
    conn = client.api.exec_start(exec_id, socket=True, tty=True)
    sock = _raw_socket(conn)
    sock.settimeout(10)
    samples = []
    try:
        _recv_exactly(sock, 1)  # "R": the TTY is raw now
        for i in range(keystrokes):
            key = bytes([97 + i % 26])
            started = time.perf_counter()
            sock.sendall(key)
            echoed = _recv_exactly(sock, 1)
            samples.append(time.perf_counter() - started)
            if echoed != key:
                raise RuntimeError(f"sent {key!r}, got {echoed!r}")
    finally:
        # Closing the attach closes cat's stdin; the container goes away with it anyway.
        conn.close()
    return Stats.from_seconds(samples)


def tty_throughput(client: docker.DockerClient, container_id: str, nbytes: int) -> float:
    """MB/s of a TTY exec writing ``nbytes`` as fast as it can, read until EOF."""
    exec_id = client.api.exec_create(
        container_id, ["sh", "-c", f"head -c {nbytes} /dev/zero | tr '\\0' a"], tty=True
    )["Id"]
    started = time.perf_counter()
    conn = client.api.exec_start(exec_id, socket=True, tty=True)
    sock = _raw_socket(conn)
    sock.settimeout(30)
    received = 0
    try:
        while chunk := sock.recv(1 << 16):
            received += len(chunk)
    finally:
        conn.close()
    elapsed = time.perf_counter() - started
    if received < nbytes:
        raise RuntimeError(f"expected {nbytes} bytes from the TTY exec, got {received}")
    return received / elapsed / 1e6


# --- command line --------------------------------------------------------------------------


def print_floor(floor: dict[str, Stats], title: str) -> None:
    print_header(title)
    for key, label in LABELS.items():
        print_row(label, floor[key])


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.docker_floor", description=__doc__)
    parser.add_argument("--repeats", type=int, default=DEFAULT_REPEATS)
    parser.add_argument("--runtime", default=None, help="e.g. runsc (default: the engine's)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error("--repeats must be at least 1")

    sigterm_as_interrupt()
    client = docker_client()
    image = sandbox_image()
    ensure_image(client, image)

    started = time.perf_counter()
    progress = None if args.json else (lambda msg: print(f"  measuring {msg}...", flush=True))
    if not args.json:
        print(f"Docker floor: {image}, runtime {args.runtime or 'default'}, repeats {args.repeats}")
    floor = measure_floor(client, image, args.repeats, runtime=args.runtime, progress=progress)
    _cache[(image, args.runtime)] = floor
    elapsed = time.perf_counter() - started

    if args.json:
        print(
            json.dumps(
                {
                    "image": image,
                    "runtime": args.runtime,
                    "repeats": args.repeats,
                    "seconds": round(elapsed, 1),
                    "floor": {key: stats.to_dict() for key, stats in floor.items()},
                },
                indent=2,
            )
        )
    else:
        print_floor(floor, f"Raw Docker floor ({elapsed:.1f} s)")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        # throwaway_container's finally blocks have removed every container by now.
        print("\nbench.docker_floor: interrupted", file=sys.stderr)
        sys.exit(130)
