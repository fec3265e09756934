"""Create-to-ready from the warm pool, through the service and through the API, beside the raw
Docker floor and the cold path measured in the same run; and cold starts under runc and crun.

Targets: from a warm pool, create-to-ready p50 at most 100 ms and at most 0.5x the raw
create+start+first exec; the cold path (no member) at most 1.3x. Before each timed create the
pool is full and idle (the refill a claim starts runs after the timer stops and is waited for),
so a row measures a claim, not a claim racing the refill. "+ first exec" adds a raw exec of
``true`` after the create returns, like the floor's own first exec.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable, Sequence
from typing import Any

import docker

from bench.common import Stats, docker_client, ensure_image, print_header, print_row, sandbox_image
from bench.django_setup import bench_django
from bench.docker_floor import _lifecycle, container_kwargs, floor_for

POOL_SIZE = 2


def crun_problem(client: docker.DockerClient, image: str) -> str:
    """Why crun cannot run a sandbox on this engine ("" when it can)."""
    runtimes = client.info().get("Runtimes") or {}
    if "crun" not in runtimes:
        return "not registered with the engine (scripts/dockerd.sh registers it)"
    try:
        client.containers.run(image, ["true"], runtime="crun", network_mode="none", remove=True)
    except docker.errors.DockerException as exc:
        return str(getattr(exc, "explanation", None) or exc).strip().splitlines()[-1][:160]
    return ""


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=10)
    args = parser.parse_args(argv)

    client = docker_client()
    image = sandbox_image()
    ensure_image(client, image)
    floor = floor_for(client, image)
    raw = floor["create_start_exec"]

    with bench_django() as user:
        from django.test import override_settings
        from rest_framework.test import APIClient

        from sessions_app import services, warm_pool
        from sessions_app.models import Session

        api = APIClient(SERVER_NAME="localhost")
        api.force_authenticate(user)
        timings: dict[str, list[float]] = {
            "warm_service": [],
            "warm_service_exec": [],
            "warm_api": [],
            "cold_service": [],
            "cold_api": [],
        }
        from_pool: list[bool] = []

        def first_exec(container_id: str) -> None:
            exec_id = client.api.exec_create(container_id, ["true"])["Id"]
            client.api.exec_start(exec_id)

        def via_service() -> Session:
            return services.session_create(user=user)

        def via_api() -> Session:
            response = api.post("/api/vibecode/sessions/create", format="json")
            if response.status_code != 201:
                raise SystemExit(f"create failed: {response.status_code} {response.content[:300]!r}")
            return Session.objects.get(public_id=response.json()["session_id"])

        def measure(key: str, create: Callable[[], Session], *, warm: bool, exec_key: str = "") -> None:
            if warm:
                warm_pool.warm_pool_wait_refilled()
                warm_pool.warm_pool_refill()
            started = time.perf_counter()
            session = create()
            timings[key].append(time.perf_counter() - started)
            if exec_key:
                first_exec(session.container_id)
                timings[exec_key].append(time.perf_counter() - started)
            if warm:
                from_pool.append(session.volume_name.startswith("vibecode-pool-"))
                warm_pool.warm_pool_wait_refilled()
            services.session_delete(session=session, force=True)

        with override_settings(VIBECODE_WARM_POOL=POOL_SIZE):
            measure("warm_service", via_service, warm=True)  # warm-up, dropped below
            for key in timings:
                timings[key].clear()
            from_pool.clear()
            for _ in range(args.repeats):
                measure("warm_service", via_service, warm=True, exec_key="warm_service_exec")
                measure("warm_api", via_api, warm=True)
            # The pool off: what every create costs without it, and a create with an empty pool.
            with override_settings(VIBECODE_WARM_POOL=0):
                from sessions_app.operations import sessions_reconcile

                sessions_reconcile()  # the members go: the engine is as a cold create finds it
                for _ in range(args.repeats):
                    measure("cold_service", via_service, warm=False)
                    measure("cold_api", via_api, warm=False)

        # Cold starts under crun, if this engine can run it, interleaved with runc's.
        problem = crun_problem(client, image)
        runtimes: dict[str, Stats] = {}
        if not problem:
            samples: dict[str, list[float]] = {"runc": [], "crun": []}
            for _ in range(args.repeats):
                for runtime in samples:
                    stats = _lifecycle(client, image, container_kwargs(runtime), 1, first_exec=True)
                    samples[runtime].extend(value / 1000 for value in stats.samples)
            runtimes = {runtime: Stats.from_seconds(values) for runtime, values in samples.items()}
            with override_settings(VIBECODE_SANDBOX_RUNTIME="crun"):
                crun_cold: list[float] = []
                for _ in range(args.repeats):
                    started = time.perf_counter()
                    session = via_service()
                    crun_cold.append(time.perf_counter() - started)
                    services.session_delete(session=session, force=True)
            runtimes["crun_session"] = Stats.from_seconds(crun_cold)

    taken = sum(from_pool)
    print_header(
        f"Warm pool (size {POOL_SIZE}; {taken}/{len(from_pool)} creates served by a member; SQLite, runc)",
        with_ratio=True,
    )
    print_row("raw create+start+first exec (the floor)", raw, floor=raw)
    rows: list[tuple[str, str]] = [
        ("warm create-to-ready, service", "warm_service"),
        ("warm create-to-ready + first exec, service", "warm_service_exec"),
        ("warm create-to-ready, API", "warm_api"),
        ("cold create-to-ready, service", "cold_service"),
        ("cold create-to-ready, API", "cold_api"),
    ]
    results: dict[str, Any] = {}
    for label, key in rows:
        stats = Stats.from_seconds(timings[key])
        results[key] = stats
        print_row(label, stats, floor=raw)
    warm = results["warm_api"]
    verdict = "met" if warm.median <= 100 and warm.ratio(raw) <= 0.5 else "NOT met"
    cold = results["cold_api"]
    cold_verdict = "met" if cold.ratio(raw) <= 1.3 else "NOT met"
    figures = f"{warm.median:.1f} ms, {warm.ratio(raw):.2f}x"
    print(f"target: warm (API) p50 <= 100 ms and <= 0.50x floor: {verdict} ({figures})")
    print(f"target: cold (API) p50 <= 1.30x floor: {cold_verdict} ({cold.ratio(raw):.2f}x)")

    print_header("Cold start: runc vs crun (raw create+start+first exec, interleaved)", with_ratio=True)
    if problem:
        print(f"crun: cannot run here: {problem}")
        print("runc stays the default (VIBECODE_SANDBOX_RUNTIME=runc)")
    else:
        print_row("runc", runtimes["runc"], floor=runtimes["runc"])
        print_row("crun", runtimes["crun"], floor=runtimes["runc"])
        print_row("crun, cold create-to-ready, service", runtimes["crun_session"], floor=runtimes["runc"])
        winner = "crun" if runtimes["crun"].median < runtimes["runc"].median else "runc"
        print(f"faster here: {winner}; the default stays runc unless crun wins")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
