"""Aggregation in Redis: the one-round-trip ingest write and the reads behind the API.

Key names and TTLs live in ``collector.keys``. Writes for one report are one
``EVALSHA`` of ``INGEST_LUA`` (the script is needed because storing a sample
depends on the dedup marker, which must be decided in the same round trip);
a batch is one pipeline of such calls.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import redis

from collector import alerts, keys, redisconn

# Shared by the ingest and counting scripts: fixed-window counters, and a
# refusal that only counts its reason (KEYS[2] stats, KEYS[3] stats of the day
# in both scripts; each defines ``stats_ttl`` first).
LIMIT_CHECK = """
local function over(key, n, limit, window)
  local used = redis.call('INCRBY', key, n)
  if used == n then redis.call('EXPIRE', key, window) end
  return used > tonumber(limit)
end
local function refuse(reason, n)
  redis.call('HINCRBY', KEYS[2], 'rejected:' .. reason, n)
  redis.call('HINCRBY', KEYS[3], 'rejected:' .. reason, n)
  redis.call('EXPIRE', KEYS[3], stats_ttl)
end
"""

INGEST_LUA = alerts.INGEST_ALERT_LUA + """
-- One accepted report, all writes at once. All KEYS share the site's hash tag.
-- KEYS[1] hosts index ZSET     KEYS[2] stats HASH        KEYS[3] stats of the day HASH
-- KEYS[4] host meta HASH       KEYS[5] minute bucket     KEYS[6] hour bucket
-- KEYS[7] clients-hour HLL     KEYS[8] clients-day HLL   KEYS[9] samples STREAM
-- KEYS[10] dedup marker       KEYS[11..19] alert keys (collector.alerts.ingest_keys)
-- ARGV[1] now (epoch s)        ARGV[2] host              ARGV[3] minute of the hour
-- ARGV[4] hour of the day      ARGV[5] response-status   ARGV[6] cert-status or ''
-- ARGV[7] port                 ARGV[8] client hash       ARGV[9] sample JSON
-- ARGV[10] samples kept        ARGV[11] dedup TTL (0 = off)
-- ARGV[12] minute bucket TTL   ARGV[13] hour bucket TTL  ARGV[14] clients-hour TTL
-- ARGV[15] stats-day TTL       ARGV[16] host retention
-- ARGV[17] diagnosis code      ARGV[18] severity         ARGV[19] must-staple '1', '0' or ''
-- ARGV[20..27] alert policy (collector.alerts.ingest_args)
-- ARGV[28] source: 'report' (browsers, other collectors' clients) or 'probe' (our prober)
-- KEYS[20] client rate-limit counter   KEYS[21] site rate-limit counter
-- ARGV[29] client limit (0 = off)      ARGV[30] site limit (0 = off)
-- ARGV[31] limit window (s)            ARGV[32] distinct hostnames cap (0 = off)
-- Returns 1 when the sample was stored, 0 when it was a recent duplicate,
-- -1 when over the client rate limit, -2 over the site rate limit, -3 when the
-- host would be one distinct hostname too many. Refused reports only count
-- their reason.
local stats_ttl = ARGV[15]
""" + LIMIT_CHECK + """
local now = tonumber(ARGV[1])
local retention = tonumber(ARGV[16])
if ARGV[29] ~= '0' and over(KEYS[20], 1, ARGV[29], ARGV[31]) then
  refuse('rate_limited', 1)
  return -1
end
if ARGV[30] ~= '0' and over(KEYS[21], 1, ARGV[30], ARGV[31]) then
  refuse('rate_limited', 1)
  return -2
end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', '(' .. (now - retention))
if ARGV[32] ~= '0' and not redis.call('ZSCORE', KEYS[1], ARGV[2])
    and redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[32]) then
  refuse('too_many_hosts', 1)
  return -3
end
local function bucket(key, slot, ttl)
  redis.call('HINCRBY', key, slot .. '|s:' .. ARGV[5], 1)
  if ARGV[6] ~= '' then redis.call('HINCRBY', key, slot .. '|c:' .. ARGV[6], 1) end
  redis.call('HINCRBY', key, slot .. '|d:' .. ARGV[17], 1)
  if ARGV[28] == 'probe' then redis.call('HINCRBY', key, slot .. '|p:fail', 1) end
  redis.call('EXPIRE', key, ttl)
end
bucket(KEYS[5], ARGV[3], ARGV[12])
bucket(KEYS[6], ARGV[4], ARGV[13])
redis.call('PFADD', KEYS[7], ARGV[8])
redis.call('EXPIRE', KEYS[7], ARGV[14])
redis.call('PFADD', KEYS[8], ARGV[8])
redis.call('EXPIRE', KEYS[8], ARGV[13])
redis.call('HSETNX', KEYS[4], 'first_seen', now)
redis.call('HSET', KEYS[4], 'last_seen', now, 'last_status', ARGV[5],
           'last_diagnosis', ARGV[17], 'last_severity', ARGV[18])
if ARGV[19] ~= '' then redis.call('HSET', KEYS[4], 'must_staple', ARGV[19]) end
redis.call('HINCRBY', KEYS[4], 'total', 1)
redis.call('HINCRBY', KEYS[4], 'port:' .. ARGV[7], 1)
redis.call('EXPIRE', KEYS[4], retention)
redis.call('ZADD', KEYS[1], now, ARGV[2])
redis.call('EXPIRE', KEYS[1], retention)
redis.call('HINCRBY', KEYS[2], 'accepted', 1)
redis.call('HINCRBY', KEYS[3], 'accepted', 1)
redis.call('EXPIRE', KEYS[3], ARGV[15])
alert(now)
if ARGV[11] == '0' or redis.call('SET', KEYS[10], '1', 'NX', 'EX', ARGV[11]) then
  redis.call('XADD', KEYS[9], 'MAXLEN', '~', ARGV[10], '*', 'r', ARGV[9])
  redis.call('EXPIRE', KEYS[9], retention)
  return 1
end
return 0
"""
INGEST_SHA = hashlib.sha1(INGEST_LUA.encode()).hexdigest()

COUNT_LUA = """
-- Filtered and rejected reports of one request: counted, after the client's
-- rate limit (they cost parsing too). Returns 0, or -1 when over the limit.
-- KEYS[1] client rate-limit counter  KEYS[2] stats HASH  KEYS[3] stats of the day
-- ARGV[1] stats-day TTL  ARGV[2] client limit (0 = off)  ARGV[3] window (s)
-- ARGV[4] reports in the request  ARGV[5..] field, count pairs
local stats_ttl = ARGV[1]
""" + LIMIT_CHECK + """
if ARGV[2] ~= '0' and over(KEYS[1], tonumber(ARGV[4]), ARGV[2], ARGV[3]) then
  refuse('rate_limited', tonumber(ARGV[4]))
  return -1
end
for i = 5, #ARGV, 2 do
  redis.call('HINCRBY', KEYS[2], ARGV[i], ARGV[i + 1])
  redis.call('HINCRBY', KEYS[3], ARGV[i], ARGV[i + 1])
end
redis.call('EXPIRE', KEYS[3], stats_ttl)
return 0
"""
COUNT_SHA = hashlib.sha1(COUNT_LUA.encode()).hexdigest()


@dataclass(frozen=True)
class Retention:
    minutes: int
    hours: int
    samples: int
    dedup: int

    @classmethod
    def from_config(cls, config: Any) -> Retention:
        return cls(minutes=config["MINUTE_RETENTION"], hours=config["HOUR_RETENTION"],
                   samples=config["SAMPLES_PER_HOST"], dedup=config["DEDUP_WINDOW"])


@dataclass(frozen=True)
class Limits:
    """Protection of the report endpoint; 0 switches a limit off."""

    client: int = 0  # reports per window from one client address, per site
    site: int = 0  # accepted reports per window, per site
    window: int = 60
    max_hosts: int = 0  # distinct hostnames a site tracks at once

    @classmethod
    def from_config(cls, config: Any) -> Limits:
        return cls(client=config["RATE_LIMIT_CLIENT"], site=config["RATE_LIMIT_SITE"],
                   window=config["RATE_LIMIT_WINDOW"], max_hosts=config["MAX_HOSTS_PER_SITE"])

    def retry_after(self, now: int) -> int:
        """Seconds until the current window ends."""
        return self.window - now % self.window


NO_LIMITS = Limits()

# What the ingest script answers per report (besides 1 stored, 0 duplicate).
RATE_LIMITED_CLIENT, RATE_LIMITED_SITE, TOO_MANY_HOSTS = -1, -2, -3


@dataclass
class Accepted:
    """One validated report ready to store."""

    host: str
    port: int
    response_status: str
    cert_status: str | None
    diagnosis: str
    severity: str
    must_staple: bool | None
    sample: dict[str, Any]
    source: str = "report"
    # Fire an incident with this report alone (repeated probe failures).
    fire_now: bool = False


@dataclass
class Outcomes:
    """What one request adds to a site's counters, written in one round trip."""

    accepted: list[Accepted] = field(default_factory=list)
    filtered: dict[str, int] = field(default_factory=dict)
    rejected: dict[str, int] = field(default_factory=dict)

    def add(self, kind: str, reason: str, n: int = 1) -> None:
        bucket = self.filtered if kind == "filtered" else self.rejected
        bucket[reason] = bucket.get(reason, 0) + n


def client_salt(secret_key: bytes) -> bytes:
    """A key of its own for client hashes, derived from SECRET_KEY."""
    return hashlib.sha256(b"client-address|" + secret_key).digest()


def client_hash(secret: bytes, address: str) -> str:
    """Salted hash of a client address: raw addresses are never stored."""
    return hmac.new(secret, address.encode("utf-8"), hashlib.sha256).hexdigest()[:32]


def _day(ts: int) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y%m%d")


def write(
    client: redis.Redis,
    site_id: str,
    outcomes: Outcomes,
    client_id: str,
    now: int,
    retention: Retention,
    policy: alerts.Policy,
    limits: Limits = NO_LIMITS,
) -> list[int]:
    """Store everything one request produced in a single round trip.

    Returns one code per accepted report (1 sample stored, 0 recent duplicate,
    or ``RATE_LIMITED_CLIENT``, ``RATE_LIMITED_SITE``, ``TOO_MANY_HOSTS``: not
    stored, counted as rejected), then, when the request also had filtered or
    rejected reports, 0 or ``RATE_LIMITED_CLIENT`` for those.
    """
    commands = _commands(site_id, outcomes, client_id, now, retention, policy, limits)
    return [int(r) for r in redisconn.run(client, site_id, commands, INGEST_LUA, COUNT_LUA)]


def _commands(site_id: str, outcomes: Outcomes, client_id: str, now: int, retention: Retention,
              policy: alerts.Policy, limits: Limits) -> list[redisconn.Command]:
    epoch_hour, epoch_day = now // 3600, now // 86400
    day = _day(now)
    window = now // limits.window
    client_limit_key = keys.rate_client(site_id, client_id, window)
    commands: list[redisconn.Command] = []
    for report in outcomes.accepted:
        host = report.host
        sample_json = json.dumps(report.sample, separators=(",", ":"))
        digest = hashlib.sha256(
            f"{client_id}|{_dedup_basis(report.sample)}".encode()
        ).hexdigest()[:32]
        commands.append(("evalsha", (
            INGEST_SHA,
            21,
            keys.hosts(site_id),
            keys.stats(site_id),
            keys.stats_day(site_id, day),
            keys.host_meta(site_id, host),
            keys.minute_bucket(site_id, host, epoch_hour),
            keys.hour_bucket(site_id, host, epoch_day),
            keys.clients_hour(site_id, host, epoch_hour),
            keys.clients_day(site_id, host, epoch_day),
            keys.samples(site_id, host),
            keys.dedup(site_id, digest),
            *alerts.ingest_keys(site_id, host),
            client_limit_key,
            keys.rate_site(site_id, window),
            now,
            host,
            (now % 3600) // 60,
            (now % 86400) // 3600,
            report.response_status,
            report.cert_status or "",
            report.port,
            client_id,
            sample_json,
            retention.samples,
            retention.dedup,
            retention.minutes + 3600,
            retention.hours + 86400,
            keys.CLIENT_HOUR_TTL,
            keys.STATS_DAY_TTL,
            retention.hours,
            report.diagnosis,
            report.severity,
            "" if report.must_staple is None else int(report.must_staple),
            *alerts.ingest_args(
                site_id, policy,
                report.fire_now or alerts.immediate(report.diagnosis, report.cert_status, report.must_staple),
            ),
            report.source,
            *((limits.client, limits.site) if report.source == "report" else (0, 0)),
            limits.window,
            limits.max_hosts,
        )))
    counts = [(f"{kind}:{reason}", n)
              for kind, reasons in (("filtered", outcomes.filtered), ("rejected", outcomes.rejected))
              for reason, n in reasons.items()]
    if counts:
        commands.append(("evalsha", (
            COUNT_SHA, 3, client_limit_key, keys.stats(site_id), keys.stats_day(site_id, day),
            keys.STATS_DAY_TTL, limits.client, limits.window, sum(n for _, n in counts),
            *(x for pair in counts for x in pair),
        )))
    return commands


# When a report was sent, by which agent, and what we derived from it (a stale
# staple's "expired N minutes ago" changes by the minute) do not make it different.
_NOT_IN_DEDUP = ("date-time", "received_at", "user_agent", "diagnosis")


def _dedup_basis(sample: dict[str, Any]) -> str:
    """What makes two reports "identical": everything but when they were sent."""
    basis = {k: v for k, v in sample.items() if k not in _NOT_IN_DEDUP}
    return json.dumps(basis, sort_keys=True, separators=(",", ":"))


# --- reads -------------------------------------------------------------------


def iso(ts: int | float | None) -> str | None:
    if ts is None:
        return None
    return datetime.fromtimestamp(int(ts), UTC).isoformat().replace("+00:00", "Z")


def _empty_counts() -> dict[str, Any]:
    return {"total": 0, "by_status": {}, "by_cert_status": {}, "by_diagnosis": {},
            "probes": {"ok": 0, "fail": 0}}


def _add(counts: dict[str, Any], dim: str, value: str, n: int) -> None:
    if dim == "s":
        counts["total"] += n
        counts["by_status"][value] = counts["by_status"].get(value, 0) + n
    elif dim == "c":
        counts["by_cert_status"][value] = counts["by_cert_status"].get(value, 0) + n
    elif dim == "d":
        counts["by_diagnosis"][value] = counts["by_diagnosis"].get(value, 0) + n
    elif dim == "p" and value in ("ok", "fail"):
        counts["probes"][value] += n


def _bucket_items(data: dict[bytes, bytes], base: int, unit: int) -> Iterable[tuple[int, str, str, int]]:
    """(slot start epoch, dimension, value, count) for each field of a bucket hash."""
    for raw_field, raw_count in data.items():
        slot, _, dim_value = raw_field.decode().partition("|")
        dim, _, value = dim_value.partition(":")
        yield base + int(slot) * unit, dim, value, int(raw_count)


def _queue_host_reads(pipe: Any, site_id: str, host: str, now: int) -> None:
    hour, day = now // 3600, now // 86400
    pipe.hgetall(keys.host_meta(site_id, host))
    pipe.hgetall(keys.minute_bucket(site_id, host, hour - 1))
    pipe.hgetall(keys.minute_bucket(site_id, host, hour))
    for d in range(day - 7, day + 1):
        pipe.hgetall(keys.hour_bucket(site_id, host, d))
    pipe.pfcount(*[keys.clients_hour(site_id, host, h) for h in range(hour - 23, hour + 1)])
    pipe.pfcount(*[keys.clients_day(site_id, host, d) for d in range(day - 6, day + 1)])


_READS_PER_HOST = 1 + 2 + 8 + 2


def _host_summary(host: str, results: list[Any], now: int, with_ports: bool) -> dict[str, Any] | None:
    meta = results[0]
    if not meta:
        return None
    hour, day = now // 3600, now // 86400
    last_hour, last_day, last_week = _empty_counts(), _empty_counts(), _empty_counts()
    current_hour_start = hour * 3600
    hourly = [0] * 24  # reports per hour over the last 24 hours, oldest first
    for offset, data in enumerate(results[1:3]):
        base = (hour - 1 + offset) * 3600
        for start, dim, value, n in _bucket_items(data, base, 60):
            if now - 3600 < start <= now:
                _add(last_hour, dim, value, n)
    for offset, data in enumerate(results[3:11]):
        base = (day - 7 + offset) * 86400
        for start, dim, value, n in _bucket_items(data, base, 3600):
            if start > current_hour_start - 24 * 3600:
                _add(last_day, dim, value, n)
                if dim == "s":
                    hourly[23 - (current_hour_start - start) // 3600] += n
            if start > current_hour_start - 168 * 3600:
                _add(last_week, dim, value, n)
    meta = {k.decode(): v.decode() for k, v in meta.items()}
    summary: dict[str, Any] = {
        "hostname": host,
        "first_seen": iso(int(meta["first_seen"])) if "first_seen" in meta else None,
        "last_seen": iso(int(meta["last_seen"])) if "last_seen" in meta else None,
        "last_probe_at": iso(int(meta["last_probe_at"])) if "last_probe_at" in meta else None,
        "last_status": meta.get("last_status"),
        "last_diagnosis": meta.get("last_diagnosis"),
        "last_severity": meta.get("last_severity"),
        "must_staple": {"1": True, "0": False}.get(meta.get("must_staple", "")),
        "total": int(meta.get("total", 0)),
        "last_hour": last_hour,
        "last_day": last_day,
        "last_week": last_week,
        "hourly_24h": hourly,
        "distinct_clients": {"last_day": int(results[11]), "last_week": int(results[12])},
    }
    if with_ports:
        summary["ports"] = {
            k.split(":", 1)[1]: int(v) for k, v in sorted(meta.items()) if k.startswith("port:")
        }
    return summary


def host_count(client: redis.Redis, site_id: str) -> int:
    return int(client.zcard(keys.hosts(site_id)))


def list_hosts(client: redis.Redis, site_id: str, now: int, limit: int, offset: int) -> list[dict[str, Any]]:
    """Hosts by most recent report first, with their summaries (one pipeline)."""
    names = [
        h.decode()
        for h in client.zrevrange(keys.hosts(site_id), offset, offset + limit - 1)
    ]
    pipe = redisconn.site_client(client, site_id).pipeline(transaction=False)
    for host in names:
        _queue_host_reads(pipe, site_id, host, now)
    results = pipe.execute()
    out = []
    for i, host in enumerate(names):
        chunk = results[i * _READS_PER_HOST : (i + 1) * _READS_PER_HOST]
        summary = _host_summary(host, chunk, now, with_ports=False)
        if summary:
            out.append(summary)
    return out


def host_detail(client: redis.Redis, site_id: str, host: str, now: int) -> dict[str, Any] | None:
    pipe = redisconn.site_client(client, site_id).pipeline(transaction=False)
    _queue_host_reads(pipe, site_id, host, now)
    return _host_summary(host, pipe.execute(), now, with_ports=True)


def series(
    client: redis.Redis, site_id: str, host: str, now: int, range_s: int, step_s: int
) -> list[dict[str, Any]]:
    """Counts by status per ``step_s`` over the last ``range_s`` seconds, oldest first.

    Steps under an hour read the per-minute buckets, longer ones the per-hour
    buckets. Every step is a whole number of the bucket size, so points are
    exact sums.
    """
    unit = 60 if step_s < 3600 else 3600
    last = now - now % step_s
    first = last - range_s + step_s
    points = {t: _empty_counts() for t in range(first, last + 1, step_s)}
    container = 3600 if unit == 60 else 86400
    containers = range(first // container, last // container + 1)
    pipe = redisconn.site_client(client, site_id).pipeline(transaction=False)
    for c in containers:
        if unit == 60:
            pipe.hgetall(keys.minute_bucket(site_id, host, c))
        else:
            pipe.hgetall(keys.hour_bucket(site_id, host, c))
    for c, data in zip(containers, pipe.execute(), strict=True):
        for start, dim, value, n in _bucket_items(data, c * container, unit):
            slot = start - start % step_s
            if slot in points:
                _add(points[slot], dim, value, n)
    return [{"t": iso(t), **counts} for t, counts in points.items()]


def recent_samples(client: redis.Redis, site_id: str, host: str, limit: int) -> list[dict[str, Any]]:
    entries = client.xrevrange(keys.samples(site_id, host), count=limit)
    out = []
    for entry_id, data in entries:
        sample = json.loads(data[b"r"])
        sample["id"] = entry_id.decode()
        out.append(sample)
    return out


def site_stats(client: redis.Redis, site_id: str, now: int) -> dict[str, Any]:
    pipe = redisconn.site_client(client, site_id).pipeline(transaction=False)
    pipe.hgetall(keys.stats(site_id))
    pipe.hgetall(keys.stats_day(site_id, _day(now)))
    totals, today = pipe.execute()
    return {"total": _shape_stats(totals), "today": _shape_stats(today)}


def _shape_stats(data: dict[bytes, bytes]) -> dict[str, Any]:
    out: dict[str, Any] = {
        "accepted": 0,
        "filtered": {"total": 0, "reasons": {}},
        "rejected": {"total": 0, "reasons": {}},
    }
    for raw_key, raw_value in data.items():
        name, value = raw_key.decode(), int(raw_value)
        if name == "accepted":
            out["accepted"] = value
            continue
        kind, _, reason = name.partition(":")
        if kind in ("filtered", "rejected"):
            out[kind]["total"] += value
            out[kind]["reasons"][reason] = value
    return out
