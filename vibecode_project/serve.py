"""``python -m vibecode_project.serve``: daphne, in as many worker processes as the machine
needs, all accepting on one listening socket.

daphne runs one process with one event loop, and every Django view runs in that process's
threads under one GIL. One process therefore serves at most one CPU's worth of requests. Here the
port is opened once, and ``VIBECODE_WORKERS`` daphne processes accept on it (daphne's ``--fd``);
the kernel hands each new connection to one of them.

``VIBECODE_WORKERS``:

* ``auto`` (the default): one per CPU, at most 8, when ``DATABASE_URL`` and ``REDIS_URL`` are
  set (compose); otherwise 1.
* a number: that many. More than one is refused without ``DATABASE_URL`` and ``REDIS_URL``: on
  the embedded defaults the cache (rate limits, terminal tickets), the channel layer and the
  terminal counts live in one process's memory, and SQLite is one file. Two processes would each
  see half of them.

Prometheus values are summed over the workers through ``PROMETHEUS_MULTIPROC_DIR``
(``core_app.metrics.exposition``). If a worker dies, the others are stopped and the server exits
with its status, so that whatever supervises the server (compose, systemd) restarts all of it.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path

APPLICATION = "vibecode_project.asgi:application"
MAX_AUTO_WORKERS = 8
MAX_WORKERS = 64


class ServeError(Exception):
    """A setting that can't be served; the message says what to change."""


def cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def worker_count(environ: Mapping[str, str], *, cpus: int) -> int:
    """How many daphne processes to run, from ``VIBECODE_WORKERS`` (see the module's docstring)."""
    shared = bool(environ.get("DATABASE_URL")) and bool(environ.get("REDIS_URL"))
    raw = environ.get("VIBECODE_WORKERS", "auto").strip().lower() or "auto"
    if raw == "auto":
        return max(1, min(cpus, MAX_AUTO_WORKERS)) if shared else 1
    try:
        count = int(raw)
    except ValueError:
        raise ServeError(f"VIBECODE_WORKERS={raw!r} is neither auto nor a number.") from None
    if not 1 <= count <= MAX_WORKERS:
        raise ServeError(f"VIBECODE_WORKERS={count} is out of range: use 1 to {MAX_WORKERS}, or auto.")
    if count > 1 and not shared:
        raise ServeError(
            f"VIBECODE_WORKERS={count} needs DATABASE_URL and REDIS_URL: without them the cache, rate "
            "limits, terminal tickets and channel layer live in one process's memory, and SQLite is "
            "one file. Set both (as compose does), or use VIBECODE_WORKERS=1."
        )
    return count


def listen(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.create_server((host, port), family=family, backlog=1024)
    sock.set_inheritable(True)
    return sock


def daphne_argv(fd: int) -> list[str]:
    daphne = Path(sys.executable).with_name("daphne")
    # -v 0: daphne's access log would record query strings, where tokens and tickets travel;
    # VibeCode logs its own access lines without them (core_app.middleware.AccessLogMiddleware).
    return [str(daphne), "-v", "0", "--fd", str(fd), APPLICATION]


def run_workers(sock: socket.socket, count: int) -> int:
    """Run ``count`` daphne processes on ``sock`` until a signal or the first one to exit."""
    environ = dict(os.environ)
    metrics_dir = None
    if count > 1:
        metrics_dir = tempfile.mkdtemp(prefix="vibecode-metrics-")
        environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
    argv = daphne_argv(sock.fileno())
    workers = [subprocess.Popen(argv, pass_fds=(sock.fileno(),), env=environ) for _ in range(count)]
    stopping = {"signal": 0}

    def stop(signum: int, _frame: object) -> None:
        stopping["signal"] = signum
        for worker in workers:
            if worker.poll() is None:
                worker.send_signal(signal.SIGTERM)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        pid, status = os.wait()
        code = os.waitstatus_to_exitcode(status)
        if not stopping["signal"]:
            print(f"serve: worker {pid} exited ({code}); stopping the others", file=sys.stderr, flush=True)
            stop(signal.SIGTERM, None)
            stopping["signal"] = 0
        for worker in workers:
            try:
                worker.wait(timeout=15)
            except subprocess.TimeoutExpired:
                worker.kill()
                worker.wait()
        if stopping["signal"]:
            return 0
        return code if code > 0 else 1
    finally:
        if metrics_dir:
            shutil.rmtree(metrics_dir, ignore_errors=True)


def main(environ: Mapping[str, str] = os.environ) -> int:
    host = environ.get("VIBECODE_HOST", "127.0.0.1")
    port = int(environ.get("VIBECODE_PORT", "8000"))
    try:
        count = worker_count(environ, cpus=cpu_count())
    except ServeError as error:
        print(f"serve: {error}", file=sys.stderr)
        return 2
    sock = listen(host, port)
    print(f"serve: {count} daphne worker(s) on {host}:{port}", file=sys.stderr, flush=True)
    if count == 1:
        # One process: daphne itself, with nothing of ours in between.
        argv = daphne_argv(sock.fileno())
        os.execv(argv[0], argv)  # noqa: S606 - daphne takes this process over; no shell involved
    return run_workers(sock, count)


if __name__ == "__main__":
    sys.exit(main())
