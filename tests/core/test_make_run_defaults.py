"""`make run`'s embedded defaults: SQLite, in-memory channel layer, local Docker.

Starts the server with scripts/serve.sh, exactly as `make run` does after setup, in a fresh var/
directory and without DATABASE_URL or REDIS_URL, then reads /api/health over real HTTP.
"""

from __future__ import annotations

import os
import signal
import subprocess

import httpx

from tests.conftest import REPO_ROOT, free_port, wait_for_http


def test_make_run_serves_on_the_embedded_defaults(tmp_path):
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "REDIS_URL"}}
    # The health check's details are for staff and the metrics scraper: be the scraper.
    env.update(
        VIBECODE_VAR_DIR=str(tmp_path), VIBECODE_PORT=str(port), VIBECODE_METRICS_TOKEN="scrape-0123456789"
    )
    log = (tmp_path / "serve.log").open("wb")
    server = subprocess.Popen(
        [str(REPO_ROOT / "scripts/serve.sh")],
        cwd=REPO_ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        wait_for_http(f"http://127.0.0.1:{port}/health", timeout=90, process=server)
        health = f"http://127.0.0.1:{port}/api/health"
        body = httpx.get(health, headers={"Authorization": "Bearer scrape-0123456789"}).json()
        assert body["status"] == "ok", body
        assert body["checks"]["database"]["detail"] == "sqlite"
        assert body["checks"]["channel_layer"]["detail"] == "InMemoryChannelLayer"
        assert (tmp_path / "db.sqlite3").exists()

        output = (tmp_path / "serve.log").read_text()
        assert f"http://127.0.0.1:{port}/" in output
        password = output.split("with password '")[1].split("'")[0]
        page = httpx.get(f"http://127.0.0.1:{port}/login")
        csrf = page.cookies["csrftoken"]
        signed_in = httpx.post(
            f"http://127.0.0.1:{port}/login",
            data={"username": "admin", "password": password, "csrfmiddlewaretoken": csrf},
            cookies={"csrftoken": csrf},
        )
        assert signed_in.status_code == 302 and signed_in.headers["location"] == "/"
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=15)
        log.close()
