"""vibecode_project/serve.py: daphne worker processes on one listening socket, how many of them,
and Prometheus values summed over them."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from core_app.metrics import exposition
from tests.conftest import REPO_ROOT, free_port, wait_for_http
from vibecode_project.serve import MAX_AUTO_WORKERS, ServeError, worker_count

SHARED = {"DATABASE_URL": "postgresql://db/vibecode", "REDIS_URL": "redis://redis:6379/0"}


# --- how many ------------------------------------------------------------------------------------


def test_auto_is_one_per_cpu_with_a_shared_database_and_redis():
    assert worker_count(SHARED, cpus=2) == 2
    assert worker_count({**SHARED, "VIBECODE_WORKERS": "auto"}, cpus=1) == 1
    assert worker_count(SHARED, cpus=64) == MAX_AUTO_WORKERS


def test_auto_is_one_on_the_embedded_defaults():
    assert worker_count({}, cpus=16) == 1
    assert worker_count({"DATABASE_URL": SHARED["DATABASE_URL"]}, cpus=16) == 1
    assert worker_count({"REDIS_URL": SHARED["REDIS_URL"]}, cpus=16) == 1


def test_a_number_is_taken_as_it_is():
    assert worker_count({**SHARED, "VIBECODE_WORKERS": "3"}, cpus=1) == 3
    assert worker_count({"VIBECODE_WORKERS": "1"}, cpus=8) == 1


@pytest.mark.parametrize("raw", ["many", "0", "-2", "1000", "2.5"])
def test_bad_values_are_refused_with_the_variable_named(raw):
    with pytest.raises(ServeError, match="VIBECODE_WORKERS"):
        worker_count({**SHARED, "VIBECODE_WORKERS": raw}, cpus=2)


def test_several_workers_without_a_shared_database_and_redis_are_refused_at_start():
    env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "REDIS_URL"}}
    done = subprocess.run(
        [sys.executable, "-m", "vibecode_project.serve"],
        cwd=REPO_ROOT,
        env={**env, "VIBECODE_WORKERS": "2", "VIBECODE_PORT": str(free_port())},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert "VIBECODE_WORKERS=2 needs DATABASE_URL and REDIS_URL" in done.stderr


# --- the real processes --------------------------------------------------------------------------


def children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(child) for child in path.read_text().split()] if path.exists() else []


def start(daphne_env: dict[str, str], workers: int) -> tuple[subprocess.Popen, str]:
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "vibecode_project.serve"],
        cwd=REPO_ROOT,
        env={**daphne_env, "VIBECODE_WORKERS": str(workers), "VIBECODE_PORT": str(port)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    url = f"http://127.0.0.1:{port}"
    wait_for_http(url + "/health", process=server)
    return server, url


def gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z"


@pytest.mark.django_db(transaction=True)
def test_two_workers_share_the_port_and_stop_together_on_sigterm(daphne_env):
    server, url = start(daphne_env, 2)
    try:
        workers = children(server.pid)
        assert len(workers) == 2, workers
        # New connections (no keep-alive) are spread by the kernel; all of them are answered.
        for _ in range(20):
            with httpx.Client(timeout=10) as client:
                assert client.get(url + "/health").status_code == 200
        server.send_signal(signal.SIGTERM)
        assert server.wait(timeout=30) == 0
        assert all(gone(pid) for pid in workers)
    finally:
        if server.poll() is None:
            server.kill()


@pytest.mark.django_db(transaction=True)
def test_a_dead_worker_stops_the_server_so_its_supervisor_restarts_all_of_it(daphne_env):
    server, _url = start(daphne_env, 2)
    try:
        first, second = children(server.pid)
        os.kill(first, signal.SIGKILL)
        assert server.wait(timeout=30) != 0
        deadline = time.monotonic() + 10
        while not gone(second) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert gone(second)
        assert "stopping the others" in server.stderr.read().decode()
    finally:
        if server.poll() is None:
            server.kill()


# --- metrics over several workers ----------------------------------------------------------------

BUMP = """
from core_app.metrics import EXECS, OPEN_TERMINALS
EXECS.labels(outcome="ok").inc(3)
OPEN_TERMINALS.inc()
"""

SCRAPE = """
import sys
from core_app.metrics import exposition
sys.stdout.write(exposition().decode())
"""


def python(code: str, env: dict[str, str]) -> subprocess.Popen:
    argv = [sys.executable, "-c", code]
    return subprocess.Popen(argv, cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, text=True)


def test_a_scrape_sums_the_metrics_of_every_worker(tmp_path):
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    for worker in (python(BUMP, env), python(BUMP, env), python(BUMP, env)):
        assert worker.wait(timeout=60) == 0
    text, _ = python(SCRAPE, env).communicate(timeout=60)
    assert 'vibecode_execs_total{outcome="ok"} 9.0' in text
    assert "vibecode_open_terminals 3.0" in text


@pytest.mark.django_db
def test_without_several_workers_a_scrape_is_this_process_alone(monkeypatch):
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)
    assert b"vibecode_execs_total" in exposition()
