"""Docker health check of the backend container: ``GET /api/health`` on its own daphne.

Healthy while it answers 200: the database answers (a degraded channel layer or Docker engine
still answers 200 with the details in the body). The Host header is one that ALLOWED_HOSTS
accepts, or Django would answer 400.
"""

from __future__ import annotations

import http.client
import os
import sys


def host_header() -> str:
    hosts = [h.strip() for h in os.environ.get("ALLOWED_HOSTS", "").split(",") if h.strip()]
    if not hosts or "localhost" in hosts or "*" in hosts:
        return "localhost"
    return hosts[0].lstrip(".")


def main() -> int:
    conn = http.client.HTTPConnection("127.0.0.1", 8000, timeout=5)
    try:
        conn.request("GET", "/api/health", headers={"Host": host_header()})
        status = conn.getresponse().status
    except OSError as exc:
        print(f"backend health: {exc}", file=sys.stderr)
        return 1
    finally:
        conn.close()
    if status != 200:
        print(f"backend health: /api/health answered {status}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
