"""Redis memory per host per day of reports, and under a flood of distinct hostnames.

    .venv/bin/python bench/memory.py [--flood 12000] [--cap 5000]

Starts a redis-server. (1) One host receives a day of reports (every minute of
24 hours, 10 reports a minute from 50 clients, a mix of statuses and real
chains), written through the ingest script with the clock moved along; prints
the host's keys and their MEMORY USAGE. (2) Through the app, a flood of
distinct random hostnames (one report each) against MAX_HOSTS_PER_SITE; prints
used_memory before and after, how many hosts were kept and how many refused.
A measurement, not a test.
"""

from __future__ import annotations

import argparse
import json
import secrets
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import redis  # noqa: E402

from bench.ingest_throughput import make_reports  # noqa: E402
from collector import alerts, create_app, keys, sites, store  # noqa: E402
from collector.ingest.schema import load_report  # noqa: E402
from tests.conftest import start_redis_server  # noqa: E402


def _host_bytes(client: redis.Redis, site_id: str, host: str) -> tuple[int, int]:
    found = list(client.scan_iter(match=f"es:{{{site_id}}}:h:{host}:*", count=10000))
    return len(found), sum(client.memory_usage(k) or 0 for k in found)


def one_host_day(client: redis.Redis) -> None:
    site = sites.create(client, "memory", [])
    bodies = [json.loads(b) for b in make_reports(4)]
    reports = [load_report(b) for b in bodies if b["hostname"] == "h0.example.com"]
    policy = alerts.Policy(window=300, min_reports=5, min_clients=2, resolve_after=900, repeat=14400)
    retention = store.Retention(minutes=48 * 3600, hours=90 * 86400, samples=100, dedup=60)
    start = int(time.time()) // 86400 * 86400
    n = 0
    for minute in range(1440):
        now = start + minute * 60
        for i in range(10):
            r = reports[(minute + i) % len(reports)]
            sample = {**r.to_sample(), "received_at": store.iso(now)}
            accepted = store.Accepted(host=r.hostname, port=r.port, response_status=r.response_status,
                                      cert_status=r.cert_status, diagnosis="no_staple", severity="warning",
                                      must_staple=False, sample=sample)
            store.write(client, site.site.id, store.Outcomes(accepted=[accepted]), f"client{(minute * 10 + i) % 50}",
                        now, retention, policy)
            n += 1
    count, size = _host_bytes(client, site.site.id, "h0.example.com")
    print(f"one host, one day: {n} reports -> {count} keys, {size / 1024:.0f} KiB "
          f"(MEMORY USAGE; of which the 100 samples are most)")
    samples = client.memory_usage(keys.samples(site.site.id, "h0.example.com")) or 0
    print(f"  samples stream: {samples / 1024:.0f} KiB; counters, HLLs, meta, alert state: "
          f"{(size - samples) / 1024:.0f} KiB")


def flood(client: redis.Redis, url: str, directory: str, hosts: int, cap: int) -> None:
    site = sites.create(client, "flood", [])
    app = create_app({"REDIS_URL": url, "SECRET_KEY": "m", "STAPLE_DATA_DIR": directory,
                      "RATE_LIMIT_CLIENT": "0", "RATE_LIMIT_SITE": "0", "MAX_HOSTS_PER_SITE": str(cap)})
    web = app.test_client()
    body = json.loads(make_reports(1)[0])
    client.execute_command("MEMORY", "PURGE")
    before = client.info("memory")["used_memory"]
    statuses: dict[int, int] = {}
    for i in range(hosts):
        body["hostname"] = f"{secrets.token_hex(6)}.flood.example"
        status = web.post(f"/r/{site.site.id}/staple", json=body,
                          environ_base={"REMOTE_ADDR": f"10.{i % 250}.{i // 250 % 250}.1"}).status_code
        statuses[status] = statuses.get(status, 0) + 1
    after = client.info("memory")["used_memory"]
    kept = client.zcard(keys.hosts(site.site.id))
    print(f"flood of {hosts} random hostnames, cap {cap}: answers {statuses}, hosts kept {kept}, "
          f"used_memory +{(after - before) / 1024 / 1024:.1f} MiB "
          f"({(after - before) / max(kept, 1) / 1024:.1f} KiB per kept host)")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--flood", type=int, default=12000)
    parser.add_argument("--cap", type=int, default=5000)
    opts = parser.parse_args()
    directory = tempfile.mkdtemp()
    process, port = start_redis_server(Path(directory))
    try:
        client = redis.Redis(port=port)
        one_host_day(client)
        flood(client, f"redis://127.0.0.1:{port}/0", directory, opts.flood, opts.cap)
    finally:
        process.terminate()
        process.wait(10)


if __name__ == "__main__":
    main()
