"""Redis-side cost of the ingest script, per report, from Redis's own command statistics.

    .venv/bin/python bench/ingest_script_cost.py [REPO_DIR]

Starts a redis-server, posts 3000 Chrome-shaped reports (10 hosts, 50 clients,
real chains) through the app in-process, and prints ``usec_per_call`` of
EVALSHA from ``INFO commandstats`` and the in-process request rate. Pass
another checkout's directory (a git worktree of an older commit) to measure
that version with the same script. A benchmark, not a test.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, sys.argv[1] if len(sys.argv) > 1 else str(Path(__file__).resolve().parents[1]))

import redis  # noqa: E402

from collector import create_app, sites  # noqa: E402
from tests import pki  # noqa: E402
from tests.conftest import start_redis_server  # noqa: E402


def main() -> None:
    directory = tempfile.mkdtemp()
    process, port = start_redis_server(Path(directory))
    try:
        url = f"redis://127.0.0.1:{port}/0"
        client = redis.Redis.from_url(url)
        site = sites.create(client, "bench", [])
        web = create_app({"REDIS_URL": url, "SECRET_KEY": "bench", "STAPLE_DATA_DIR": directory}).test_client()
        ca = pki.make_ca()
        reports = [pki.chrome_report(pki.make_leaf(ca, f"h{i}.example.com"), ca) for i in range(10)]
        for i in range(200):  # warm up: caches, script loaded, incidents firing
            web.post(f"/r/{site.site.id}/staple", json=reports[i % 10],
                     environ_base={"REMOTE_ADDR": f"10.0.0.{i % 5}"})
        client.config_resetstat()
        started = time.perf_counter()
        for i in range(3000):
            web.post(f"/r/{site.site.id}/staple", json=reports[i % 10],
                     environ_base={"REMOTE_ADDR": f"10.0.0.{i % 50}"})
        elapsed = time.perf_counter() - started
        stats = client.info("commandstats")
        print(f"evalsha: {stats['cmdstat_evalsha']['usec_per_call']:.1f} us per report (Redis CPU)")
        print(f"in-process: {3000 / elapsed:.0f} reports/s (one thread, no HTTP)")
    finally:
        process.terminate()
        process.wait(10)


if __name__ == "__main__":
    main()
