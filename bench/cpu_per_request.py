"""CPU per request of the gunicorn workers and of Redis: bare endpoint vs collector.

    .venv/bin/python bench/cpu_per_request.py ["bench.bare_app:create_app()" "collector:create_app()"]

For each app: starts it under gunicorn (collector/gunicorn_conf.py) beside one
redis-server, drives it with wrk for 8 s (the reports of ingest_throughput.py),
and prints the user and system CPU time the gunicorn processes and Redis spent
per request, read from /proc/<pid>/stat before and after. Needs wrk. A
measurement, not a test.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import redis  # noqa: E402

from bench import ingest_throughput as bench  # noqa: E402
from collector import sites  # noqa: E402

TICK = os.sysconf("SC_CLK_TCK")


def cpu(pid: int) -> tuple[float, float]:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) / TICK, int(fields[12]) / TICK


def with_children(pid: int) -> list[int]:
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout
    return [pid, *(int(child) for child in out.split())]


def main() -> None:
    apps = sys.argv[1:] or ["bench.bare_app:create_app()", "collector:create_app()"]
    tmp = Path(tempfile.mkdtemp(prefix="bench-cpu-"))
    redis_proc, redis_port = bench.start_redis_server(tmp)
    env = bench.bench_env(tmp, redis_port)
    site = sites.create(redis.Redis(port=redis_port), "bench", [])
    bodies = bench.make_reports()
    path = f"/r/{site.site.id}/staple"
    try:
        for app in apps:
            port = bench.free_port()
            web = bench.start_gunicorn(app, port, env)
            try:
                bench.drive((port, path, bodies, 2.0, 0))
                pids = with_children(web.pid)
                before = {p: cpu(p) for p in pids}
                redis_before = cpu(redis_proc.pid)
                result = bench.run_wrk(f"http://127.0.0.1:{port}{path}", bodies, 8, 16, tmp)
                after = {p: cpu(p) for p in pids}
                redis_after = cpu(redis_proc.pid)
            finally:
                bench.stop(web)
            n = result["total"]
            user = sum(after[p][0] - before[p][0] for p in pids) / n * 1e6
            system = sum(after[p][1] - before[p][1] for p in pids) / n * 1e6
            redis_cpu = (sum(redis_after) - sum(redis_before)) / n * 1e6
            print(f"{app}: {result['rate']:.0f} requests/s; per request: gunicorn user {user:.0f} us, "
                  f"system {system:.0f} us; redis-server {redis_cpu:.0f} us")
    finally:
        redis_proc.terminate()
        redis_proc.wait()


if __name__ == "__main__":
    main()
