"""Reads of a 4 KB file over real HTTP, from 1, 8 and 32 clients, as VibeCode is served.

    .venv/bin/python -m bench.http_reads [--seconds 8] [--shape make-run|compose|both]

The server is ``python -m vibecode_project.serve`` (``scripts/serve.sh`` and the compose image
run it) in a subprocess, and the load comes from ``wrk`` (C, one connection per client, keep-alive)
so the client costs the two CPUs of a small machine as little as possible. Eight workspaces are
read in turn, with a JWT, as an API client reads them.

Two shapes:

* ``make-run``: the embedded defaults, SQLite and the in-memory layer, so one worker process.
* ``compose``: a throwaway PostgreSQL and Redis (``scripts/test-services.sh``), so
  ``VIBECODE_WORKERS=auto`` runs one worker per CPU.

Each row prints requests per second beside the raw floor (``get_archive`` of 4 KB, one at a time,
from ``bench.docker_floor``), the backend's CPU per request (the server's processes' CPU time over
the requests) and p50/p99 latency. Target (issue 17): 32 clients read at least twice what one
client reads.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

import httpx

from bench.common import (
    REPO_ROOT,
    Stats,
    docker_client,
    ensure_image,
    print_header,
    print_row,
    sandbox_image,
    serve_checkout,
)
from bench.docker_floor import floor_for

WORKSPACES = 8
CLIENTS = (1, 8, 32)
FILE_BYTES = 4096
FILE_PATH = "read4k.txt"
TARGET_RATIO = 2.0
PASSWORD = "testpass123"  # noqa: S105 - create_test_user's, on a throwaway database

WRK_SCRIPT = """
local paths = {%(paths)s}
local i = 0
request = function()
  i = i + 1
  return wrk.format("GET", paths[(i %% #paths) + 1], {["Authorization"] = "Bearer %(token)s"})
end
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("JSON {\\"requests\\": %%d, \\"errors\\": %%d, ", summary.requests,
    e.status + e.connect + e.read + e.write + e.timeout))
  io.write(string.format("\\"non2xx\\": %%d, \\"p50\\": %%f, \\"p99\\": %%f}\\n", e.status,
    latency:percentile(50) / 1000.0, latency:percentile(99) / 1000.0))
end
"""


def run(argv: Sequence[str], env: dict[str, str]) -> str:
    done = subprocess.run(list(argv), cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=600)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(argv[:4])} failed ({done.returncode}): {done.stderr[-2000:]}")
    return done.stdout


@contextlib.contextmanager
def services(shape: str, env: dict[str, str]) -> Iterator[dict[str, str]]:
    """The environment of one shape, with its stores started and, at the end, stopped."""
    var_dir = tempfile.mkdtemp(prefix="vibecode-bench-http-")
    os.chmod(var_dir, 0o755)  # noqa: S103 - PostgreSQL runs as its own user and must reach its data
    env = {**env, "VIBECODE_VAR_DIR": var_dir}
    if shape == "make-run":
        try:
            yield env
        finally:
            shutil.rmtree(var_dir, ignore_errors=True)
        return
    script = str(REPO_ROOT / "scripts" / "test-services.sh")
    exports = run([script, "start"], env)
    for name, value in re.findall(r"export (\w+)=(\S+)", exports):
        env[name] = value
    # test-services.sh names a database the test runner creates; the server's own is "postgres".
    env["DATABASE_URL"] = env["DATABASE_URL"].rsplit("/", 1)[0] + "/postgres"
    try:
        yield env
    finally:
        subprocess.run([script, "stop"], cwd=REPO_ROOT, env=env, capture_output=True, timeout=120)
        shutil.rmtree(var_dir, ignore_errors=True)


def process_tree_cpu_seconds(pid: int) -> float:
    """User plus system CPU time of ``pid`` and its children (the worker processes)."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0.0
    pids = [pid]
    while pids:
        current = pids.pop()
        try:
            fields = Path(f"/proc/{current}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / ticks
            pids += [int(c) for c in Path(f"/proc/{current}/task/{current}/children").read_text().split()]
        except (FileNotFoundError, ProcessLookupError):
            continue
    return total


def workers_of(pid: int) -> int:
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    return max(1, len(children))


def prepare(env: dict[str, str], url: str) -> tuple[str, list[str]]:
    """A user, a token and ``WORKSPACES`` running workspaces, each with the 4 KB file."""
    run([sys.executable, "manage.py", "create_test_user", "--force"], env)
    with httpx.Client(base_url=url, timeout=120) as client:
        login = client.post("/api/auth/login", json={"username": "testuser", "password": PASSWORD})
        login.raise_for_status()
        token = login.json()["access"]
        client.headers["Authorization"] = f"Bearer {token}"
        paths = []
        for _ in range(WORKSPACES):
            created = client.post("/api/vibecode/sessions/create", json={})
            if created.status_code >= 400:
                raise SystemExit(f"create failed: {created.status_code} {created.text[:300]}")
            base = f"/api/vibecode/sessions/{created.json()['session_id']}"
            saved = client.put(f"{base}/files/content", json={"path": FILE_PATH, "content": "r" * FILE_BYTES})
            saved.raise_for_status()
            paths.append(f"{base}/files/content?path={FILE_PATH}")
            got = client.get(paths[-1])
            if got.status_code != 200 or got.json().get("content") != "r" * FILE_BYTES:
                raise SystemExit(f"read back failed: {got.status_code} {got.text[:300]}")
    return token, paths


def wrk(url: str, script: Path, clients: int, seconds: int) -> dict[str, float]:
    threads = min(clients, 2)
    done = subprocess.run(
        ["wrk", f"-t{threads}", f"-c{clients}", f"-d{seconds}s", "--timeout", "30s", "-s", str(script), url],
        capture_output=True,
        text=True,
        timeout=seconds + 120,
    )
    found = re.search(r"^JSON (\{.*\})$", done.stdout, re.MULTILINE)
    if done.returncode != 0 or not found:
        raise SystemExit(f"wrk failed ({done.returncode}): {done.stdout[-1000:]} {done.stderr[-1000:]}")
    return json.loads(found.group(1))


def measure(shape: str, seconds: int, floor: Stats) -> list[tuple[int, float]]:
    instance = f"bench-http-{os.getpid()}"
    env = {
        **{k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "REDIS_URL", "VIBECODE_VAR_DIR"}},
        "VIBECODE_INSTANCE": instance,
        "VIBECODE_WARM_POOL": "0",
        "VIBECODE_CLEANUP_INTERVAL": "0",
        "DJANGO_SETTINGS_MODULE": "vibecode_project.settings",
        "LOG_LEVEL": "WARNING",
        # The load is far faster than a person: the limits are not what is measured.
        "VIBECODE_RATE_API": "10000000/m",
        "VIBECODE_RATE_LOGIN": "1000/m",
        "VIBECODE_MAX_SESSIONS": "100",
        "VIBECODE_MAX_RUNNING": "100",
    }
    rates: list[tuple[int, float]] = []
    engine = docker_client()
    try:
        with services(shape, env) as shaped:
            run([sys.executable, "manage.py", "migrate", "--noinput", "-v0"], shaped)
            log = Path(shaped["VIBECODE_VAR_DIR"]) / "serve.log"
            with serve_checkout(shaped, log) as (process, port):
                url = f"http://127.0.0.1:{port}"
                token, paths = prepare(shaped, url)
                script = Path(shaped["VIBECODE_VAR_DIR"]) / "reads.lua"
                script.write_text(
                    WRK_SCRIPT % {"paths": ", ".join(json.dumps(p) for p in paths), "token": token}
                )
                wrk(url, script, 8, 2)  # warm-up: every worker has opened its helpers' streams
                workers = workers_of(process.pid)
                print_header(
                    f"Reads of 4 KB over HTTP, as {shape} serves ({workers} worker process(es), "
                    f"{WORKSPACES} workspaces, wrk {seconds} s per row)",
                    with_ratio=True,
                )
                for clients in CLIENTS:
                    cpu_before = process_tree_cpu_seconds(process.pid)
                    result = wrk(url, script, clients, seconds)
                    cpu = process_tree_cpu_seconds(process.pid) - cpu_before
                    if result["errors"] or result["non2xx"]:
                        raise SystemExit(
                            f"{clients} clients: {result['errors']} errors ({result['non2xx']} non-2xx)"
                        )
                    rate = result["requests"] / seconds
                    rates.append((clients, rate))
                    # The floor as a rate: one raw get_archive of 4 KB after another.
                    print_row(
                        f"{clients} client(s), req/s",
                        Stats((rate,), "req/s"),
                        floor=Stats((1000.0 / floor.median,), "req/s"),
                    )
                    print(
                        f"    p50 {result['p50']:.1f} ms, p99 {result['p99']:.1f} ms, "
                        f"backend CPU {cpu * 1000 / max(1, result['requests']):.2f} ms per request"
                    )
    finally:
        for container in engine.api.containers(all=True, filters={"label": f"vibecode.instance={instance}"}):
            engine.api.remove_container(container["Id"], force=True)
        for volume in (
            engine.api.volumes(filters={"label": f"vibecode.instance={instance}"}).get("Volumes") or []
        ):
            engine.api.remove_volume(volume["Name"], force=True)
    one = rates[0][1]
    for clients, rate in rates[1:]:
        verdict = "PASS" if rate >= TARGET_RATIO * one else "MISS"
        print(
            f"  {clients} clients: {rate / one:.2f}x one client's rate (target >= {TARGET_RATIO}x): {verdict}"
        )
    return rates


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.http_reads", description=__doc__)
    parser.add_argument("--seconds", type=int, default=8, help="wrk duration of each row")
    parser.add_argument("--shape", choices=("make-run", "compose", "both"), default="both")
    args = parser.parse_args(argv)
    if not shutil.which("wrk"):
        print(
            "bench.http_reads: wrk is missing; `make bench` installs it (apt-get install wrk)",
            file=sys.stderr,
        )
        return 2
    client = docker_client()
    image = sandbox_image()
    ensure_image(client, image)
    floor = floor_for(client, image)["get_archive_4k"]
    shapes = ("make-run", "compose") if args.shape == "both" else (args.shape,)
    for shape in shapes:
        measure(shape, args.seconds, floor)
    return 0


if __name__ == "__main__":
    sys.exit(main())
