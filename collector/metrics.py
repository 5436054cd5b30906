"""Prometheus metrics: what the collector counts, and ``GET /metrics``.

Under gunicorn every worker process is its own Python, so counters live in
prometheus_client's multiprocess mode: each process writes its values to files
in ``PROMETHEUS_MULTIPROC_DIR`` and ``/metrics`` adds them up.
``collector.gunicorn_conf`` (and ``serve``) set that directory up before any
worker starts and drop a dead worker's live gauges. Without the variable (a
single process, the tests) the metrics live in memory.

The alert worker counts into the same directory when it runs beside the web
app (``serve``, or a Procfile host that sets one ``PROMETHEUS_MULTIPROC_DIR``);
where it runs alone (its own container), ``WORKER_METRICS_PORT`` serves them.

Gauges that describe Redis rather than one process (open incidents, the
notification backlog) are read from Redis when scraped, once per scrape.

No label carries a site, host or client: label values come from fixed sets
(outcome, reason, status, diagnosis code, delivery outcome), so the number of
series stays bounded whatever reports arrive.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from collector import keys, redisconn
from collector.settings import METRICS_DIR_ENV as MULTIPROC_ENV

REPORTS = Counter(
    "staple_reports", "Reports received, by outcome (accepted, filtered, rejected) and reason.",
    ["outcome", "reason"],
)
REPORTS_BY_STATUS = Counter(
    "staple_reports_by_status", "Accepted reports by their response-status.", ["status"],
)
REPORTS_BY_DIAGNOSIS = Counter(
    "staple_reports_by_diagnosis", "Accepted reports by diagnosis code and severity.",
    ["diagnosis", "severity"],
)
INGEST_RESPONSES = Counter(
    "staple_ingest_responses", "Answers of the report endpoint by HTTP status code.", ["code"],
)
INGEST_SECONDS = Histogram(
    "staple_ingest_duration_seconds", "Time to handle one request to the report endpoint.",
    buckets=(0.001, 0.0025, 0.005, 0.0075, 0.01, 0.015, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
)
REDIS_ERRORS = Counter(
    "staple_redis_errors", "Redis commands that failed (unreachable, timed out, refused).", ["process"],
)
DELIVERIES = Counter(
    "staple_webhook_deliveries",
    "Webhook delivery attempts by outcome (delivered, retry, failed, dead, disabled, no_webhook).",
    ["outcome"],
)
DELIVERY_SECONDS = Histogram(
    "staple_webhook_delivery_duration_seconds", "Time of one webhook delivery attempt.",
    buckets=(0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
)
INCIDENT_EVENTS = Counter(
    "staple_incident_events", "Incident notifications taken from the outbox, by type "
    "(incident.firing, incident.resolved, incident.reminder).", ["type"],
)
PROBES = Counter("staple_probes", "Scheduled probes by result (ok, fail, unreachable).", ["result"])

# Unread notifications counted per site and scrape (the backlog gauge saturates there).
BACKLOG_SCAN = 1000

# Names a dashboard may query. The Redis-derived gauges are listed here too,
# since they only exist at scrape time.
REDIS_GAUGES = (
    "staple_sites",
    "staple_incidents",
    "staple_outbox_backlog",
    "staple_outbox_oldest_seconds",
    "staple_retry_queue",
    "staple_dead_letters",
)


class RedisState(Collector):  # type: ignore[misc]
    """Gauges read from Redis at scrape time: incidents and the notification backlog."""

    def __init__(self, client: Any) -> None:
        self.client = client

    def collect(self) -> Iterable[GaugeMetricFamily]:
        sites = GaugeMetricFamily("staple_sites", "Sites configured.")
        incidents = GaugeMetricFamily("staple_incidents", "Hosts whose incident is in this state.",
                                      labels=["state"])
        backlog = GaugeMetricFamily(
            "staple_outbox_backlog",
            "Notifications not yet acknowledged by a worker (unread plus in flight), all sites.",
        )
        oldest = GaugeMetricFamily(
            "staple_outbox_oldest_seconds",
            "Age of the oldest notification not yet acknowledged (0 when none): worker lag.",
        )
        retries = GaugeMetricFamily("staple_retry_queue", "Deliveries waiting for a retry, all sites.")
        dead = GaugeMetricFamily("staple_dead_letters", "Dead letters kept, all sites.")
        try:
            values = self._read()
        except Exception:  # noqa: BLE001 - a scrape must answer even when Redis does not
            REDIS_ERRORS.labels("web").inc()
            return []
        sites.add_metric([], values["sites"])
        incidents.add_metric(["firing"], values["firing"])
        backlog.add_metric([], values["backlog"])
        oldest.add_metric([], values["oldest"])
        retries.add_metric([], values["retries"])
        dead.add_metric([], values["dead"])
        return [sites, incidents, backlog, oldest, retries, dead]

    def _read(self) -> dict[str, float]:
        site_ids = sorted(i.decode() for i in self.client.smembers(keys.SITES))
        out = {"sites": len(site_ids), "firing": 0, "backlog": 0, "oldest": 0.0, "retries": 0, "dead": 0}
        now_ms = time.time() * 1000
        oldest_ms: float | None = None
        for conn, group in redisconn.by_node(self.client, site_ids):
            pipe = conn.pipeline(transaction=False)
            for site_id in group:
                pipe.zcard(keys.firing(site_id))
                pipe.zcard(keys.retry(site_id))
                pipe.xlen(keys.dead(site_id))
                pipe.xinfo_groups(keys.outbox(site_id))
                pipe.xpending(keys.outbox(site_id), keys.OUTBOX_GROUP)
            answers = pipe.execute(raise_on_error=False)
            # Unread entries: after the group's last delivered id (all of them before
            # any worker created the group). A second pipeline, so two round trips
            # per Redis node whatever the number of sites.
            unread_pipe = conn.pipeline(transaction=False)
            for i, site_id in enumerate(group):
                firing, retry, dead, groups, pending = answers[5 * i: 5 * i + 5]
                out["firing"] += _int(firing)
                out["retries"] += _int(retry)
                out["dead"] += _int(dead)
                if isinstance(pending, dict) and pending.get("pending"):
                    out["backlog"] += int(pending["pending"])
                    oldest_ms = _min(oldest_ms, _id_ms(pending.get("min")))
                last = "0-0"
                for info in groups if isinstance(groups, list) else []:
                    if _text(info.get("name")) == keys.OUTBOX_GROUP:
                        last = _text(info.get("last-delivered-id")) or "0-0"
                unread_pipe.xrange(keys.outbox(site_id), min=f"({last}", count=BACKLOG_SCAN)
            for unread in unread_pipe.execute(raise_on_error=False):
                if isinstance(unread, list) and unread:
                    out["backlog"] += len(unread)
                    oldest_ms = _min(oldest_ms, _id_ms(unread[0][0]))
        if oldest_ms is not None:
            out["oldest"] = max(0.0, (now_ms - oldest_ms) / 1000)
        return out


def _int(value: Any) -> int:
    return int(value) if isinstance(value, int) else 0


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value or "")


def _id_ms(entry_id: Any) -> float | None:
    text = _text(entry_id)
    head = text.split("-", 1)[0]
    return float(head) if head.isdigit() else None


def _min(a: float | None, b: float | None) -> float | None:
    if a is None:
        return b
    if b is None:
        return a
    return min(a, b)


def registry(client: Any, redis_state: bool = True) -> CollectorRegistry:
    """What ``/metrics`` exposes: every process's counters plus (web) the Redis gauges."""
    reg = CollectorRegistry()
    if os.environ.get(MULTIPROC_ENV):
        multiprocess.MultiProcessCollector(reg)
    else:
        from prometheus_client import REGISTRY

        reg.register(_Forward(REGISTRY))
    if redis_state:
        reg.register(RedisState(client))
    return reg


class _Forward(Collector):  # type: ignore[misc]
    """This process's own metrics (single-process mode)."""

    def __init__(self, source: CollectorRegistry) -> None:
        self.source = source

    def collect(self) -> Iterable[Any]:
        return list(self.source.collect())


def render(client: Any) -> tuple[bytes, str]:
    return generate_latest(registry(client)), CONTENT_TYPE_LATEST
