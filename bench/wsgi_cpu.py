"""CPU per request of each benchmark endpoint, with the WSGI app called directly (no HTTP server).

    .venv/bin/python bench/wsgi_cpu.py [--requests 5000] [--profile collector]

Starts one redis-server, builds the bare, floor, queue and collector apps of
``bench/ingest_throughput.py`` and calls each with the same realistic reports
in one thread, reading the process CPU time. Without gunicorn, the HTTP parsing
and the load generator, what is left is the apps' own cost per report; the
differences say what each step adds. ``--profile APP`` prints a cProfile of
that app by own time. A measurement, not a test.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import os
import pstats
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.ingest_throughput import bench_env, make_reports  # noqa: E402
from tests.conftest import start_redis_server  # noqa: E402

APPS = ("bare", "floor", "queue", "collector")


def caller(app, path: str, bodies: list[bytes]):
    def call(i: int) -> None:
        body = bodies[i % len(bodies)]
        environ = {
            "REQUEST_METHOD": "POST", "PATH_INFO": path, "SCRIPT_NAME": "", "QUERY_STRING": "",
            "SERVER_NAME": "127.0.0.1", "SERVER_PORT": "8000", "SERVER_PROTOCOL": "HTTP/1.1",
            "wsgi.url_scheme": "http", "wsgi.input": io.BytesIO(body), "CONTENT_LENGTH": str(len(body)),
            "CONTENT_TYPE": "application/json", "REMOTE_ADDR": "127.0.0.1",
            "HTTP_X_FORWARDED_FOR": f"10.0.{i % 250}.{i % 7}", "HTTP_USER_AGENT": "Mozilla/5.0 Chrome/63",
            "wsgi.errors": sys.stderr, "wsgi.multithread": True, "wsgi.multiprocess": True,
            "wsgi.run_once": False, "wsgi.version": (1, 0),
        }
        statuses: list[str] = []
        result = app(environ, lambda status, headers, exc_info=None: statuses.append(status))
        b"".join(result)
        if hasattr(result, "close"):
            result.close()
        if not statuses[0].startswith("200"):
            raise SystemExit(f"{path}: {statuses[0]}")
    return call


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=5000)
    parser.add_argument("--profile", choices=APPS)
    opts = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="bench-"))
    redis_proc, port = start_redis_server(tmp)
    env = bench_env(tmp, port)  # the apps read their settings from this process's environment
    os.environ.clear()
    os.environ.update(env)
    try:
        import redis

        from bench import bare_app
        from collector import create_app, sites

        site = sites.create(redis.Redis(port=port), "bench", [])
        factories = {"bare": bare_app.create_app, "floor": bare_app.create_floor_app,
                     "queue": bare_app.create_queue_app, "collector": create_app}
        bodies = make_reports()
        path = f"/r/{site.site.id}/staple"
        for name in APPS:
            call = caller(factories[name](), path, bodies)
            for i in range(500):  # warm-up: script load, memoised decoding
                call(i)
            cpu, wall = time.process_time(), time.perf_counter()
            for i in range(opts.requests):
                call(i)
            cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
            print(f"{name:9}: {cpu / opts.requests * 1e6:6.0f} us CPU, {wall / opts.requests * 1e6:6.0f} us wall "
                  f"per request (one thread, {opts.requests} requests)", flush=True)
            if name == opts.profile:
                profile = cProfile.Profile()
                profile.enable()
                for i in range(opts.requests):
                    call(i)
                profile.disable()
                pstats.Stats(profile).sort_stats("tottime").print_stats(30)
    finally:
        redis_proc.terminate()
        redis_proc.wait()


if __name__ == "__main__":
    main()
