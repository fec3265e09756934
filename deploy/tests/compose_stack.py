"""The compose stack under test: compose commands, container logs, cleanup by label.

Everything reaches the stack through nginx on loopback; containers are only inspected through
the Docker CLI (their logs, /proc), never connected to.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

REPO_ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILES = ["docker-compose.yaml", "docker-compose.offline.yaml"]
TEST_USER = "testuser"
TEST_PASSWORD = "testpass123"  # noqa: S105  (the seed guide's published development user)


def docker(*args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        ["docker", *args], capture_output=True, text=True, timeout=timeout, check=False, errors="replace"
    )
    if check and result.returncode != 0:
        raise AssertionError(f"docker {shlex.join(args)} failed ({result.returncode}):\n{result.stderr}")
    return result


@dataclass
class Stack:
    compose_cmd: list[str]
    project: str
    instance: str
    port: int
    subnet: str
    artifacts: Path
    env: dict[str, str] = field(default_factory=dict)
    # Every access and refresh token and every ticket the tests used: none may reach a log.
    credentials: set[str] = field(default_factory=set)

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    # --- compose ----------------------------------------------------------------------------

    def compose(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        files = [arg for name in COMPOSE_FILES for arg in ("-f", name)]
        empty_env = self.artifacts / "empty.env"
        empty_env.touch()
        cmd = [*self.compose_cmd, "-p", self.project, "--env-file", str(empty_env), *files, *args]
        result = subprocess.run(
            cmd, cwd=REPO_ROOT, env=self.env, capture_output=True, text=True, timeout=timeout, check=False
        )
        with (self.artifacts / "compose.log").open("a") as log:
            log.write(f"$ {shlex.join(cmd)}\n{result.stdout}{result.stderr}\n")
        if result.returncode != 0:
            raise AssertionError(f"{shlex.join(args)} failed ({result.returncode}):\n{result.stderr[-3000:]}")
        return result

    def containers(self, service: str, *, running_only: bool = True) -> list[str]:
        """Container names of a service of this project, sorted."""
        args = ["ps", "--format", "{{.Names}}"]
        if not running_only:
            args.insert(1, "-a")
        args += ["--filter", f"label=com.docker.compose.project={self.project}"]
        args += ["--filter", f"label=com.docker.compose.service={service}"]
        return sorted(docker(*args).stdout.split())

    def wait_healthy(self, *, backends: int, timeout: float = 240) -> None:
        """Until every service's containers report healthy and nginx answers /api/health."""
        deadline = time.monotonic() + timeout
        last = ""
        while time.monotonic() < deadline:
            names = [n for s in ("backend", "pgsql", "redis", "nginx") for n in self.containers(s)]
            states = {
                name: docker(
                    "inspect", "--format", "{{.State.Health.Status}}", name, check=False
                ).stdout.strip()
                for name in names
            }
            last = json.dumps(states)
            if len(self.containers("backend")) == backends and all(s == "healthy" for s in states.values()):
                try:
                    response = self.http().get("/api/health")
                    if response.status_code == 200 and response.json()["status"] == "ok":
                        return
                    last += f" /api/health: {response.status_code} {response.text[:300]}"
                except httpx.HTTPError as exc:
                    last += f" /api/health: {exc!r}"
            time.sleep(1)
        self.save_logs()
        raise AssertionError(f"the stack was not healthy within {timeout:.0f} s: {last}")

    # --- clients ------------------------------------------------------------------------------

    def http(self, token: str | None = None, timeout: float = 60) -> httpx.Client:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        # trust_env=False: a proxy from the environment must never see this loopback traffic.
        return httpx.Client(base_url=self.origin, headers=headers, timeout=timeout, trust_env=False)

    def login(self) -> dict[str, str]:
        with self.http() as client:
            response = client.post("/api/auth/login", json={"username": TEST_USER, "password": TEST_PASSWORD})
        assert response.status_code == 200, response.text
        pair = response.json()
        self.credentials.update([pair["access"], pair["refresh"]])
        return pair

    # --- which replica served what ------------------------------------------------------------

    def logs(self, container: str) -> str:
        result = docker("logs", container, check=False)
        return result.stdout + result.stderr

    def replica_of(self, request_ids: list[str]) -> dict[str, str]:
        """Map each X-Request-ID to the backend container whose access log has it."""
        found: dict[str, str] = {}
        for name in self.containers("backend", running_only=False):
            text = self.logs(name)
            for rid in request_ids:
                if f"request={rid}" in text:
                    found[rid] = name
        return found

    def open_upstream_connections(self, container: str) -> int:
        """Established TCP connections into daphne (port 8000) from outside the container.

        Between requests nginx keeps none open to a backend (no upstream keepalive), so these
        are the WebSockets it holds. Read from /proc: nothing connects to the container.
        """
        table = docker("exec", container, "cat", "/proc/net/tcp").stdout.splitlines()[1:]
        count = 0
        for line in table:
            fields = line.split()
            local, remote, state = fields[1], fields[2], fields[3]
            if local.endswith(":1F40") and state == "01" and not remote.startswith("0100007F"):
                count += 1
        return count

    # --- logs ---------------------------------------------------------------------------------

    def save_logs(self) -> None:
        """Keep every container's log: compose removes them, and their logs, on scale-down and down."""
        for service in ("backend", "nginx", "pgsql", "redis"):
            for name in self.containers(service, running_only=False):
                container_id = docker("inspect", "--format", "{{.Id}}", name).stdout.strip()[:12]
                (self.artifacts / f"{service}-{name}-{container_id}.log").write_text(self.logs(name))

    def saved_logs(self, *services: str) -> dict[str, str]:
        return {
            path.name: path.read_text(errors="replace")
            for service in services
            for path in sorted(self.artifacts.glob(f"{service}-*.log"))
        }

    # --- cleanup ------------------------------------------------------------------------------

    def remove_everything(self) -> None:
        """The project's containers, networks and volumes, and the sandboxes of its instance."""
        self.save_logs_quietly()
        try:
            self.compose("down", "-v", "--remove-orphans", "-t", "5")
        except AssertionError as exc:
            print(f"compose down failed, removing by label instead: {exc}")
        remove_by_labels(self.project, self.instance)

    def save_logs_quietly(self) -> None:
        try:
            self.save_logs()
        except Exception as exc:  # cleanup goes on; the failure is reported, not hidden
            print(f"could not save container logs: {exc}")


def remove_by_labels(project: str, instance: str) -> None:
    """What compose down would remove, and the sandboxes: found by label, so it works even
    when compose itself is what failed."""
    for label in (f"com.docker.compose.project={project}", f"vibecode.instance={instance}"):
        ids = docker("ps", "-aq", "--filter", f"label={label}", check=False).stdout.split()
        if ids:
            docker("rm", "-f", "-v", *ids, check=False)
        volumes = docker("volume", "ls", "-q", "--filter", f"label={label}", check=False).stdout.split()
        if volumes:
            docker("volume", "rm", "-f", *volumes, check=False)
    networks = docker(
        "network", "ls", "-q", "--filter", f"label=com.docker.compose.project={project}", check=False
    ).stdout.split()
    if networks:
        docker("network", "rm", *networks, check=False)


SECRETS = ("DJANGO_SECRET_KEY", "JWT_SECRET", "POSTGRES_PASSWORD", "REDIS_PASSWORD", "DOCKER_GID")


def generated_secrets(env_file: Path) -> dict[str, str]:
    """The secrets deploy/make-env.sh writes into a new .env, as an operator would get them."""
    script = REPO_ROOT / "deploy" / "make-env.sh"
    subprocess.run([str(script), str(env_file)], check=True, capture_output=True, timeout=60)
    values = dict(
        line.split("=", 1) for line in env_file.read_text().splitlines() if line and not line.startswith("#")
    )
    assert all(values.get(key) for key in SECRETS), f"make-env.sh left one of {SECRETS} empty"
    return {key: values[key] for key in SECRETS}


def compose_env(
    *, project: str, instance: str, port: int, subnet: str, data_subnet: str, env_file: Path
) -> dict[str, str]:
    prefix = subnet.rsplit(".", 1)[0]
    env = {key: os.environ[key] for key in ("PATH", "HOME", "LANG", "DOCKER_HOST") if key in os.environ}
    env.update(generated_secrets(env_file))
    env.update(
        {
            "COMPOSE_PROJECT_NAME": project,
            # No fixed container names: this project must never collide with a real
            # installation's `backend` and `pgsql-db`, and the backend is scaled.
            "VIBECODE_BACKEND_CONTAINER": "",
            "VIBECODE_PGSQL_CONTAINER": "",
            "VIBECODE_INSTANCE": instance,
            "VIBECODE_HTTP_BIND": "127.0.0.1",
            "VIBECODE_HTTP_PORT": str(port),
            "VIBECODE_SUBNET": subnet,
            "VIBECODE_NGINX_IP": f"{prefix}.10",
            "VIBECODE_DATA_SUBNET": data_subnet,
            # The tests make more requests a minute than a person would.
            "VIBECODE_RATE_API": "3000/m",
            "VIBECODE_RATE_EXEC": "300/m",
            "VIBECODE_RATE_SAVE": "600/m",
            "VIBECODE_RATE_LOGIN": "60/m",
        }
    )
    return env


def wait_until(predicate: Any, *, timeout: float, what: str, interval: float = 0.5) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
