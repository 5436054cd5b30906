"""The worker: delivers notifications from the sites' outboxes and sweeps incidents.

Delivery is at-least-once:

* Transitions are appended to the site's outbox stream (``keys.outbox``) by the
  same Lua script that makes them. Workers read it through the consumer group
  ``workers``: an entry is acknowledged only after its delivery was recorded.
* An entry a worker read but never acknowledged (it died mid-delivery) is taken
  over by another worker with ``XAUTOCLAIM`` once it has been idle for
  ``DELIVERY_LEASE``.
* A delivery that failed in a way worth retrying (network error, timeout, 408,
  429, 5xx) is acknowledged and moved, in the same transaction, to the site's
  retry schedule (a sorted set by due time, with the event in a hash). A worker
  takes due retries with a script that pushes their due time one lease ahead,
  so a worker dying mid-retry leaves it to be picked up again after the lease.
* Backoff is exponential from ``WEBHOOK_RETRY_BASE`` with jitter, capped at 6
  hours per step; after ``WEBHOOK_RETRY_FOR`` the event becomes a dead letter.
  410 disables the webhook; other 4xx (but 408 and 429) are permanent.

Every attempt is written to the site's delivery log (``keys.deliveries``).
"""

from __future__ import annotations

import json
import logging
import os
import random
import socket
import threading
import time
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import redis

from collector import alerts, keys, metrics, probe, probes, redisconn, sites, store, webhooks
from collector.explain import explain

log = logging.getLogger("collector.worker")

POLL_INTERVAL = 0.5
READ_COUNT = 10
SITES_REFRESH = 10.0
HEARTBEAT_EVERY = 10.0
HEARTBEAT_TTL = 60
MAX_BACKOFF = 6 * 3600

# Take what is due from a schedule (retries, probe targets), pushing each one a
# lease ahead so a worker that dies holding it leaves it to be taken again.
CLAIM_DUE_LUA = """
-- KEYS[1] schedule ZSET (member -> due time)  KEYS[2] HASH member -> data
-- ARGV[1] now  ARGV[2] lease  ARGV[3] most to take
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[3]))
local out = {}
for _, id in ipairs(due) do
  redis.call('ZADD', KEYS[1], tonumber(ARGV[1]) + tonumber(ARGV[2]), id)
  out[#out + 1] = id
  out[#out + 1] = redis.call('HGET', KEYS[2], id) or ''
end
return out
"""


@dataclass
class Event:
    site_id: str
    entry_id: str
    type: str
    at: int
    incident: dict[str, Any]
    attempt: int = 1
    first_attempt_at: int | None = None
    from_retry: bool = False

    @property
    def msg_id(self) -> str:
        return f"evt_{self.site_id}_{self.entry_id}"

    def to_retry(self, first_attempt_at: int) -> str:
        return json.dumps({"type": self.type, "at": self.at, "incident": self.incident,
                           "attempt": self.attempt + 1, "first_attempt_at": first_attempt_at})


# Errors no retry can fix: a refused destination, a signing secret that does not decrypt.
PERMANENT_ERRORS = ("refused:", "unreadable secret:")


def classify(status: int | None, error: str | None) -> str:
    """delivered, gone (410), permanent (other 4xx, refused destination) or retry."""
    if status is not None:
        if 200 <= status < 300:
            return "delivered"
        if status == 410:
            return "gone"
        if 400 <= status < 500 and status not in (408, 429):
            return "permanent"
        if 300 <= status < 400:
            return "permanent"
        return "retry"
    if error and error.startswith(PERMANENT_ERRORS):
        return "permanent"
    return "retry"


def backoff(attempt: int, base: int, rng: random.Random | None = None) -> int:
    """Delay before attempt ``attempt + 1``: base * 2^(attempt-1), capped, with jitter."""
    step = min(MAX_BACKOFF, base * 2 ** min(attempt - 1, 30))
    return max(1, int(step * (rng or random).uniform(0.5, 1.0)))


class Worker:
    def __init__(self, client: redis.Redis, config: Mapping[str, Any], secret_key: bytes,
                 name: str | None = None) -> None:
        self.client = client
        self.config = config
        self.secret_key = secret_key
        self.name = name or f"{socket.gethostname()}-{os.getpid()}-{os.urandom(3).hex()}"
        self.sites: dict[str, sites.Site] = {}
        self._groups: set[str] = set()
        self._pool = ThreadPoolExecutor(max_workers=config["WORKER_THREADS"], thread_name_prefix="deliver")
        self._claim_due = client.register_script(CLAIM_DUE_LUA)
        self._probe_pool = ThreadPoolExecutor(max_workers=config["WORKER_THREADS"], thread_name_prefix="probe")
        self._probe_client_id = store.client_hash(store.client_salt(secret_key), "probe")
        self.retention = store.Retention.from_config(config)

    # --- the loop ---------------------------------------------------------------

    def run(self, stop: threading.Event) -> None:
        log.info("worker %s started", self.name)
        next_sites = next_sweep = next_claim = next_beat = 0.0
        lease = self.config["DELIVERY_LEASE"]
        while not stop.is_set():
            busy = 0
            try:
                now = time.time()
                if now >= next_sites or self.client.scard(keys.SITES) != len(self.sites):
                    self.refresh_sites()
                    next_sites = now + SITES_REFRESH
                if now >= next_beat:
                    self.heartbeat()
                    next_beat = now + HEARTBEAT_EVERY
                if now >= next_sweep:
                    self.sweep(int(now))
                    next_sweep = now + self.config["ALERT_SWEEP_INTERVAL"]
                if now >= next_claim:
                    busy += self.claim_stale()
                    next_claim = now + max(1.0, lease / 2)
                busy += self.poll()
                self.run_probes()
            except redis.exceptions.RedisError as exc:
                metrics.REDIS_ERRORS.labels("worker").inc()
                log.warning("Redis error in the worker loop; retrying in 2 s",
                            extra={"event": "redis_error", "error": type(exc).__name__})
                stop.wait(2.0)
                continue
            if not busy:
                stop.wait(POLL_INTERVAL)
        self._pool.shutdown(wait=True)
        self._probe_pool.shutdown(wait=True, cancel_futures=True)
        log.info("worker %s stopped", self.name)

    def refresh_sites(self) -> None:
        self.sites = {s.id: s for s in sites.list_all(self.client)}
        new = [s for s in self.sites if s not in self._groups]
        for site_id in new:
            self._ensure_group(site_id)

    def _ensure_group(self, site_id: str) -> None:
        try:
            self.client.xgroup_create(keys.outbox(site_id), keys.OUTBOX_GROUP, id="0", mkstream=True)
        except redis.exceptions.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise
        self._groups.add(site_id)

    def heartbeat(self) -> None:
        self.client.set(keys.worker(self.name), json.dumps({"at": int(time.time()), "pid": os.getpid()}),
                        ex=HEARTBEAT_TTL)

    def sweep(self, now: int) -> dict[str, int]:
        policies = {s.id: alerts.effective(self.config, s.alerts) for s in self.sites.values()}
        done = alerts.sweep(self.client, policies, now)
        if done["resolved"] or done["reminded"]:
            log.info("sweep: %(resolved)d resolved, %(reminded)d reminders", done)
        return done

    # --- probes ---------------------------------------------------------------------

    def run_probes(self, wait: bool = False) -> int:
        """Start every due probe (in the probe pool). Returns how many were started."""
        now = int(time.time())
        lease = self.config["PROBE_TIMEOUT"] * 2 + 30
        futures = []
        for site_id in list(self.sites):
            taken = self._claim_due(keys=[keys.probes_due(site_id), keys.probes(site_id)],
                                    args=[now, lease, READ_COUNT])
            for i in range(0, len(taken), 2):
                label, raw = taken[i].decode(), taken[i + 1]
                if not raw:  # removed meanwhile
                    self.client.zrem(keys.probes_due(site_id), label)
                    continue
                futures.append(self._probe_pool.submit(self._probe_one, site_id, probes.from_json(raw)))
        if wait:
            for future in futures:
                future.result()
        return len(futures)

    def _probe_one(self, site_id: str, target: probes.ProbeTarget) -> str:
        result, error = None, None
        try:
            result = probe.probe(target.as_probe(), timeout=self.config["PROBE_TIMEOUT"])
        except probe.ProbeError as exc:
            error = str(exc)
        except Exception as exc:  # noqa: BLE001 - one broken target must not stop the worker
            log.exception("probe of %s failed unexpectedly", target.label)
            error = f"probe error: {type(exc).__name__}"
        site = self.sites.get(site_id)
        policy = alerts.effective(self.config, site.alerts if site else {})
        try:
            outcome = probes.record(self.client, site_id, target, result, error, int(time.time()),
                                    client_id=self._probe_client_id, retention=self.retention, policy=policy,
                                    fire_after=self.config["PROBE_FAILURES_TO_FIRE"])
        except redis.exceptions.RedisError:
            metrics.REDIS_ERRORS.labels("worker").inc()
            log.exception("could not record the probe of %s", target.label)
            return "error"
        metrics.PROBES.labels(outcome).inc()
        log.info("probe %s (site %s): %s%s", target.label, site_id, outcome, f" ({error})" if error else "",
                 extra={"event": "probe", "site": site_id, "target": target.label, "outcome": outcome})
        return outcome

    # --- reading work -------------------------------------------------------------

    def poll(self) -> int:
        """New outbox entries and due retries of every site, delivered. Returns how many."""
        site_ids = list(self.sites)
        if not site_ids:
            return 0
        pipe = self.client.pipeline(transaction=False)
        for site_id in site_ids:
            pipe.xreadgroup(keys.OUTBOX_GROUP, self.name, {keys.outbox(site_id): ">"}, count=READ_COUNT)
        results = pipe.execute(raise_on_error=False)
        work: dict[str, list[Event]] = {}
        for site_id, result in zip(site_ids, results, strict=True):
            if isinstance(result, redis.exceptions.ResponseError):
                if "NOGROUP" in str(result):
                    self._ensure_group(site_id)
                    continue
                raise result
            for _stream, entries in result or []:
                for entry_id, fields in entries:
                    event = self._event(site_id, entry_id, fields)
                    if event:
                        work.setdefault(site_id, []).append(event)
        now = int(time.time())
        for site_id in site_ids:
            taken = self._claim_due(keys=[keys.retry(site_id), keys.retry_data(site_id)],
                                        args=[now, self.config["DELIVERY_LEASE"], READ_COUNT])
            for i in range(0, len(taken), 2):
                event = self._retry_event(site_id, taken[i].decode(), taken[i + 1])
                if event:
                    work.setdefault(site_id, []).append(event)
        self._deliver_all(work)
        return sum(len(v) for v in work.values())

    def claim_stale(self) -> int:
        """Take over entries another worker read and never acknowledged."""
        lease_ms = self.config["DELIVERY_LEASE"] * 1000
        work: dict[str, list[Event]] = {}
        for site_id in list(self.sites):
            try:
                _next, claimed, *_ = self.client.xautoclaim(
                    keys.outbox(site_id), keys.OUTBOX_GROUP, self.name, min_idle_time=lease_ms,
                    start_id="0-0", count=READ_COUNT,
                )
            except redis.exceptions.ResponseError as exc:
                if "NOGROUP" in str(exc):
                    self._ensure_group(site_id)
                    continue
                raise
            for entry_id, fields in claimed:
                if not fields:  # trimmed from the stream meanwhile
                    self.client.xack(keys.outbox(site_id), keys.OUTBOX_GROUP, entry_id)
                    continue
                event = self._event(site_id, entry_id, fields)
                if event:
                    log.info("took over %s of site %s from a worker that did not finish it",
                             event.entry_id, site_id)
                    work.setdefault(site_id, []).append(event)
        self._deliver_all(work)
        return sum(len(v) for v in work.values())

    def _event(self, site_id: str, entry_id: Any, fields: Mapping[bytes, bytes]) -> Event | None:
        entry = entry_id.decode() if isinstance(entry_id, bytes) else str(entry_id)
        try:
            return Event(site_id, entry, fields[b"type"].decode(), int(fields[b"at"]),
                         json.loads(fields[b"incident"]))
        except (KeyError, ValueError) as exc:
            log.error("dropping malformed outbox entry %s of site %s: %s", entry, site_id, exc)
            self.client.xack(keys.outbox(site_id), keys.OUTBOX_GROUP, entry)
            return None

    def _retry_event(self, site_id: str, entry_id: str, raw: bytes) -> Event | None:
        try:
            data = json.loads(raw)
            return Event(site_id, entry_id, data["type"], int(data["at"]), data["incident"],
                         attempt=int(data["attempt"]), first_attempt_at=int(data["first_attempt_at"]),
                         from_retry=True)
        except (KeyError, ValueError, TypeError):
            log.error("dropping malformed retry %s of site %s", entry_id, site_id)
            pipe = redisconn.site_client(self.client, site_id).pipeline(transaction=True)
            pipe.zrem(keys.retry(site_id), entry_id)
            pipe.hdel(keys.retry_data(site_id), entry_id)
            pipe.execute()
            return None

    # --- delivering -------------------------------------------------------------------

    def _deliver_all(self, work: dict[str, list[Event]]) -> None:
        """Sites in parallel, each site's events in order."""
        futures = [self._pool.submit(self._deliver_site, events) for events in work.values()]
        for future in futures:
            future.result()

    def _deliver_site(self, events: list[Event]) -> None:
        for event in events:
            try:
                self.deliver(event)
            except redis.exceptions.RedisError:
                # Not acknowledged: the lease hands it to a worker (maybe this one) later.
                metrics.REDIS_ERRORS.labels("worker").inc()
                log.exception("Redis error while recording a delivery of %s", event.msg_id)

    def body(self, event: Event) -> dict[str, Any]:
        site = self.sites.get(event.site_id)
        incident = alerts.shape_record(dict(event.incident))
        return webhooks.payload(
            event.type,
            incident,
            {"id": event.site_id, "name": site.name if site else event.site_id},
            self.config["PUBLIC_URL"],
            event.at,
            self.explanation(event.site_id, incident["host"], incident["top_diagnosis"]),
        )

    def explanation(self, site_id: str, host: str, code: str | None) -> dict[str, str] | None:
        """The top diagnosis, explained with the particulars of the latest such report."""
        if not code:
            return None
        for sample in store.recent_samples(self.client, site_id, host, 20):
            if (sample.get("diagnosis") or {}).get("code") == code:
                explained = explain(sample)["diagnosis"]
                return {"code": code, "summary": explained["summary"], "advice": explained["advice"]}
        return webhooks.generic_explanation(code)

    def deliver(self, event: Event) -> str:
        """One attempt at one event; records the outcome. Returns it."""
        now = int(time.time())
        if not event.from_retry:
            metrics.INCIDENT_EVENTS.labels(event.type).inc()
        hook = webhooks.get(self.client, event.site_id)
        if hook is None:
            self._finish(event, None, None)  # nothing configured: nothing to tell anyone
            metrics.DELIVERIES.labels("no_webhook").inc()
            return "skipped"
        if hook.disabled:
            entry = log_entry(event.msg_id, event.type, event.incident, event.attempt, hook, now, "skipped",
                              None, 0, f"webhook disabled: {hook.disabled}")
            self._finish(event, entry, None)
            metrics.DELIVERIES.labels("disabled").inc()
            return "skipped"
        status, latency, error = attempt(hook, self.body(event), event.msg_id, self.config, self.secret_key)
        metrics.DELIVERY_SECONDS.observe(latency / 1000)
        kind = classify(status, error)
        first = event.first_attempt_at or now
        retry_at = None
        if kind == "retry":
            delay = backoff(event.attempt, self.config["WEBHOOK_RETRY_BASE"])
            if now + delay - first <= self.config["WEBHOOK_RETRY_FOR"]:
                retry_at = now + delay
            else:
                kind = "dead"
        outcome = {"delivered": "delivered", "gone": "disabled", "permanent": "failed",
                   "retry": "retrying", "dead": "dead"}[kind]
        if error is None and status is not None and kind != "delivered":
            error = f"HTTP {status}"
        entry = log_entry(event.msg_id, event.type, event.incident, event.attempt, hook, now, outcome,
                          status, latency, error)
        if retry_at:
            entry["next_attempt_at"] = store.iso(retry_at)
        if kind == "gone":
            webhooks.disable(self.client, event.site_id, hook.url,
                             f"the endpoint answered 410 Gone at {store.iso(now)}")
        dead = kind in ("permanent", "dead", "gone")
        self._finish(event, entry, (retry_at, event.to_retry(first)) if retry_at else None, dead=dead)
        metrics.DELIVERIES.labels({"retrying": "retry"}.get(outcome, outcome)).inc()
        log.info("delivery %s attempt %d to %s: %s%s", event.msg_id, event.attempt, hook.destination(),
                 outcome, f" ({error})" if error else "",
                 extra={"event": "delivery", "site": event.site_id, "id": event.msg_id, "type": event.type,
                        "attempt": event.attempt, "outcome": outcome, "status_code": status,
                        "latency_ms": latency})
        return outcome

    def _finish(self, event: Event, entry: dict[str, Any] | None,
                retry: tuple[int, str] | None, dead: bool = False) -> None:
        """Acknowledge, log, and schedule a retry or bury the event: one transaction."""
        site_id = event.site_id
        pipe = redisconn.site_client(self.client, site_id).pipeline(transaction=True)
        if event.from_retry:
            pipe.zrem(keys.retry(site_id), event.entry_id)
            pipe.hdel(keys.retry_data(site_id), event.entry_id)
        else:
            pipe.xack(keys.outbox(site_id), keys.OUTBOX_GROUP, event.entry_id)
        if entry is not None:
            pipe.xadd(keys.deliveries(site_id), {"d": json.dumps(entry)}, maxlen=keys.LOG_MAXLEN,
                      approximate=True)
        if retry is not None:
            due, data = retry
            pipe.zadd(keys.retry(site_id), {event.entry_id: due})
            pipe.hset(keys.retry_data(site_id), event.entry_id, data)
        if dead and entry is not None:
            record = {**entry, "event": {"type": event.type, "at": store.iso(event.at),
                                         "incident": alerts.shape_record(dict(event.incident))}}
            pipe.xadd(keys.dead(site_id), {"d": json.dumps(record)}, maxlen=keys.LOG_MAXLEN,
                      approximate=True)
        pipe.execute()


def attempt(hook: webhooks.Webhook, body: dict[str, Any], msg_id: str, config: Mapping[str, Any],
            secret_key: bytes) -> tuple[int | None, int, str | None]:
    """One request: (status code, latency in ms, error). A secret that does not decrypt is an error."""
    try:
        result = webhooks.send(hook, body, msg_id, secret_key, timeout=config["WEBHOOK_TIMEOUT"],
                               allow_private=config["WEBHOOK_ALLOW_PRIVATE"])
    except webhooks.SecretUnreadable as exc:
        return None, 0, f"unreadable secret: {exc}"
    return result.status, result.latency_ms, result.error


def log_entry(msg_id: str, kind: str, incident: Mapping[str, Any] | None, attempt_no: int,
              hook: webhooks.Webhook, now: int, outcome: str, status: int | None, latency: int,
              error: str | None) -> dict[str, Any]:
    """One line of a site's delivery log."""
    return {
        "at": store.iso(now), "event_id": msg_id, "type": kind,
        "incident_id": str(incident["id"]) if incident and incident.get("id") is not None else None,
        "host": incident.get("host") if incident else None,
        "attempt": attempt_no, "destination": hook.destination(), "format": hook.format,
        "status_code": status, "latency_ms": latency, "outcome": outcome, "error": error,
    }


# --- test notifications and reads ---------------------------------------------------------


def send_test(client: redis.Redis, config: Mapping[str, Any], secret_key: bytes,
              site: sites.Site) -> dict[str, Any]:
    """Send a ``test`` notification now (not retried), log it, and return the log entry."""
    hook = webhooks.get(client, site.id)
    if hook is None:
        raise LookupError("the site has no webhook: set one with `staple-collector site webhook`")
    now = int(time.time())
    host = site.example_host()
    incident = {
        "id": "test", "host": host, "state": "test", "severity": "warning", "started_at": now,
        "resolved_at": 0, "last_report_at": now, "reopened": 0, "distinct_clients": 0,
        "counts": {"total": 0, "by_status": {}, "by_cert_status": {}, "by_diagnosis": {}},
    }
    body = webhooks.payload("test", alerts.shape_record(incident), {"id": site.id, "name": site.name},
                            config["PUBLIC_URL"], now, webhooks.generic_explanation("no_staple"))
    msg_id = f"evt_{site.id}_test_{now}_{os.urandom(4).hex()}"
    status, latency, error = attempt(hook, body, msg_id, config, secret_key)
    ok = status is not None and 200 <= status < 300
    if error is None and not ok:
        error = f"HTTP {status}"
    entry = log_entry(msg_id, "test", {"host": host}, 1, hook, now, "delivered" if ok else "failed",
                      status, latency, error)
    client.xadd(keys.deliveries(site.id), {"d": json.dumps(entry)}, maxlen=keys.LOG_MAXLEN, approximate=True)
    return entry


def recent(client: redis.Redis, key: str, limit: int) -> list[dict[str, Any]]:
    return [json.loads(fields[b"d"]) for _id, fields in client.xrevrange(key, count=limit)]


def deliveries(client: redis.Redis, site_id: str, limit: int) -> dict[str, Any]:
    hook = webhooks.get(client, site_id)
    pipe = redisconn.site_client(client, site_id).pipeline(transaction=False)
    pipe.xlen(keys.outbox(site_id))
    pipe.zcard(keys.retry(site_id))
    pending_outbox, retrying = pipe.execute()
    pending = 0
    try:
        groups = client.xinfo_groups(keys.outbox(site_id))
        pending = sum(int(g.get("pending", 0)) + int(g.get("lag") or 0) for g in groups)
    except redis.exceptions.ResponseError:
        pending = int(pending_outbox)
    return {
        "webhook": hook.describe() if hook else None,
        "queue": {"pending": pending, "retrying": int(retrying)},
        "deliveries": recent(client, keys.deliveries(site_id), limit),
        "dead_letters": recent(client, keys.dead(site_id), limit),
    }
