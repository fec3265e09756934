"""Session life cycle through the API: create-to-ready, suspend, resume and delete, beside the
raw Docker floor measured in the same run.

Targets: create-to-ready p50 at most 1.3x raw create+start+first exec; suspend under 200 ms.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence

from bench.common import Stats, docker_client, ensure_image, print_header, print_row, sandbox_image
from bench.django_setup import bench_django
from bench.docker_floor import floor_for


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=10)
    args = parser.parse_args(argv)

    client = docker_client()
    image = sandbox_image()
    ensure_image(client, image)
    floor = floor_for(client, image)

    with bench_django() as user:
        from rest_framework.test import APIClient

        api = APIClient(SERVER_NAME="localhost")
        api.force_authenticate(user)
        timings: dict[str, list[float]] = {"create": [], "suspend": [], "resume": [], "delete": []}
        disk_quotas: set[object] = set()

        def timed(key: str, call):  # type: ignore[no-untyped-def]
            started = time.perf_counter()
            response = call()
            timings[key].append(time.perf_counter() - started)
            if response.status_code >= 400:
                raise SystemExit(f"{key} failed: {response.status_code} {response.content[:300]!r}")
            return response

        for _ in range(args.repeats):
            created = timed("create", lambda: api.post("/api/vibecode/sessions/create", format="json"))
            base = f"/api/vibecode/sessions/{created.json()['session_id']}"
            disk_quotas.add(created.json().get("disk_mb"))
            timed("suspend", lambda base=base: api.post(f"{base}/suspend"))
            timed("resume", lambda base=base: api.post(f"{base}/resume"))
            timed("delete", lambda base=base: api.delete(f"{base}?force=true"))

    # With quotas on (what `make run` serves), each create makes a quota-limited btrfs subvolume.
    quota = "off (plain volumes)" if disk_quotas == {None} else f"on, {sorted(map(str, disk_quotas))} MB"
    print_header(f"Session life cycle through the API (SQLite, runc, disk quota {quota})", with_ratio=True)
    print_row("create-to-ready", Stats.from_seconds(timings["create"]), floor=floor["create_start_exec"])
    print_row("suspend", Stats.from_seconds(timings["suspend"]), floor=floor["stop"])
    print_row("resume", Stats.from_seconds(timings["resume"]), floor=floor["create_start_exec"])
    print_row("delete (container and volume)", Stats.from_seconds(timings["delete"]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
