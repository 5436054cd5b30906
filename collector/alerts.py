"""Incidents: when a host's visitors stop seeing valid staples, and when they see them again.

Per site and host a small state machine lives in Redis (``keys.alert_state``):

    ok --(threshold met)--> firing --(quiet for resolve-after)--> resolved --(quiet again)--> ok
                                ^                                     |
                                +------(threshold met again)----------+   same incident ("reopened")

* ``ok -> firing`` happens inside the ingest script (``INGEST_ALERT_LUA`` is part of
  ``store.INGEST_LUA``), so the report that crosses the threshold and the
  transition are one atomic step: with any number of web workers racing, exactly
  one of them makes the transition and writes exactly one event to the site's
  outbox stream. It fires when the sliding window holds at least ``min_reports``
  reports from at least ``min_clients`` distinct clients, or at once for a
  revoked certificate or a Must-Staple certificate (strict clients fail hard).
* ``firing -> resolved`` and reminders happen in ``SWEEP_LUA``, run by the worker
  every ``ALERT_SWEEP_INTERVAL``; again one script per host, so several workers
  sweeping at once still produce one event per transition.
* A host that fires again while resolved (within resolve-after of its
  resolution) continues the same incident, so flapping does not open a new
  incident each time.

Every accepted report qualifies: browsers send Expect-Staple reports only for
failures.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

import redis

from collector import keys, redisconn, settings

INCIDENT_HISTORY = 500

# Site overrides are stored in the site hash as ``alert:<name>``.
OVERRIDE_PREFIX = "alert:"


@dataclass(frozen=True)
class Policy:
    window: int
    min_reports: int
    min_clients: int
    resolve_after: int
    repeat: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "window": settings.format_duration(self.window),
            "min_reports": self.min_reports,
            "min_clients": self.min_clients,
            "resolve_after": settings.format_duration(self.resolve_after),
            "repeat": settings.format_duration(self.repeat) if self.repeat else "0",
        }


POLICY_FIELDS = tuple(f.name for f in fields(Policy))
DURATION_FIELDS = ("window", "resolve_after", "repeat")
# Bounds for the per-site overrides; the settings use the same.
LIMITS: dict[str, tuple[int, int]] = {
    "window": (1, 86400),
    "min_reports": (1, 10000),
    "min_clients": (1, 1000),
    "resolve_after": (1, 7 * 86400),
    "repeat": (0, 30 * 86400),
}


def default_policy(config: Mapping[str, Any]) -> Policy:
    return Policy(
        window=config["ALERT_WINDOW"],
        min_reports=config["ALERT_MIN_REPORTS"],
        min_clients=config["ALERT_MIN_CLIENTS"],
        resolve_after=config["ALERT_RESOLVE_AFTER"],
        repeat=config["ALERT_REPEAT"],
    )


def effective(config: Mapping[str, Any], overrides: Mapping[str, int]) -> Policy:
    base = default_policy(config)
    return Policy(**{name: overrides.get(name, getattr(base, name)) for name in POLICY_FIELDS})


def check_override(name: str, value: int) -> int:
    low, high = LIMITS[name]
    if not low <= value <= high:
        if name in DURATION_FIELDS:
            span = f"{settings.format_duration(low) if low else '0'}..{settings.format_duration(high)}"
        else:
            span = f"{low}..{high}"
        raise ValueError(f"{name.replace('_', '-')} must be within {span}")
    return value


def set_overrides(client: redis.Redis, site_id: str, values: Mapping[str, int]) -> None:
    for name, value in values.items():
        check_override(name, value)
    if values:
        client.hset(keys.site(site_id), mapping={OVERRIDE_PREFIX + k: v for k, v in values.items()})


def reset_overrides(client: redis.Redis, site_id: str) -> None:
    client.hdel(keys.site(site_id), *(OVERRIDE_PREFIX + name for name in POLICY_FIELDS))


def replace_overrides(client: redis.Redis, site_id: str, config: Mapping[str, Any],
                      values: Mapping[str, int]) -> dict[str, int]:
    """Make ``values`` the site's policy: store what differs from the defaults, drop the rest."""
    for name, value in values.items():
        check_override(name, value)
    base = default_policy(config)
    keep = {name: value for name, value in values.items() if getattr(base, name) != value}
    drop = [OVERRIDE_PREFIX + name for name in POLICY_FIELDS if name not in keep]
    pipe = client.pipeline(transaction=False)
    if drop:
        pipe.hdel(keys.site(site_id), *drop)
    if keep:
        pipe.hset(keys.site(site_id), mapping={OVERRIDE_PREFIX + k: v for k, v in keep.items()})
    pipe.execute()
    return keep


def overrides_from_hash(data: Mapping[bytes, bytes]) -> dict[str, int]:
    out = {}
    for name in POLICY_FIELDS:
        raw = data.get((OVERRIDE_PREFIX + name).encode())
        if raw is not None:
            out[name] = int(raw)
    return out


def immediate(diagnosis: str, cert_status: str | None, must_staple: bool | None) -> bool:
    """Reports that fire an incident on their own: revoked, or strict clients failing hard."""
    return diagnosis == "revoked" or cert_status == "REVOKED" or must_staple is True


# --- Lua ---------------------------------------------------------------------------

# Shared by the ingest and sweep scripts: the incident record as JSON, kept in the
# site's incident history and written with the event to the outbox.
_RECORD_LUA = """
local function incident_record(al, hll, host, site)
  local flat = redis.call('HGETALL', al)
  local h = {}
  for i = 1, #flat, 2 do h[flat[i]] = flat[i + 1] end
  local counts = {total = tonumber(h.total or '0'), by_status = {}, by_cert_status = {},
                  by_diagnosis = {}, by_source = {}}
  local dims = {s = 'by_status', c = 'by_cert_status', d = 'by_diagnosis', r = 'by_source'}
  for k, v in pairs(h) do
    local dim, value = string.match(k, '^(%a):(.+)$')
    if dim and dims[dim] then counts[dims[dim]][value] = tonumber(v) end
  end
  return {id = h.id, site = site, host = host, state = h.st, severity = h.sev,
          started_at = tonumber(h.started), resolved_at = tonumber(h.resolved or '0'),
          last_report_at = tonumber(h.last), reopened = tonumber(h.reopened or '0'),
          counts = counts, distinct_clients = redis.call('PFCOUNT', hll)}
end
local function emit(kind, rec, now, outbox, idx, records, keep, maxlen)
  local text = cjson.encode(rec)
  redis.call('HSET', records, rec.id, text)
  redis.call('ZADD', idx, rec.started_at, rec.id)
  local extra = redis.call('ZCARD', idx) - keep
  if extra > 0 then
    local old = redis.call('ZRANGE', idx, 0, extra - 1)
    redis.call('ZREMRANGEBYRANK', idx, 0, extra - 1)
    redis.call('HDEL', records, unpack(old))
  end
  redis.call('XADD', outbox, 'MAXLEN', '~', maxlen, '*', 'type', kind, 'at', now, 'incident', text)
end
"""

# Appended to the ingest script (see store.INGEST_LUA for KEYS[1..10], ARGV[1..19]).
# KEYS[11] alert state HASH    KEYS[12] window reports ZSET  KEYS[13] window clients ZSET
# KEYS[14] incident clients HLL KEYS[15] firing ZSET        KEYS[16] outbox STREAM
# KEYS[17] incident index ZSET KEYS[18] incident records HASH KEYS[19] incident id counter
# ARGV[20] window  ARGV[21] min reports  ARGV[22] min clients  ARGV[23] resolve after
# ARGV[24] '1' fires at once  ARGV[25] site id  ARGV[26] history kept  ARGV[27] outbox MAXLEN
INGEST_ALERT_LUA = _RECORD_LUA + """
local function alert(now)
  local al = KEYS[11]
  local window = tonumber(ARGV[20])
  local resolve_after = tonumber(ARGV[23])
  local host, client = ARGV[2], ARGV[8]
  local cur = redis.call('HMGET', al, 'st', 'last', 'resolved', 'sev')
  local st = cur[1] or 'ok'
  local last = tonumber(cur[2] or '0')
  local sev = cur[4]
  local reset = false
  if st == 'resolved' and now - tonumber(cur[3] or '0') >= resolve_after then
    st = 'ok'
    reset = true
  end
  if st == 'ok' and (reset or now - last > window) then
    -- A new burst: the counts of the last one (and its incident, if any) are history.
    redis.call('DEL', al, KEYS[12], KEYS[13], KEYS[14])
    redis.call('HSET', al, 'st', 'ok', 'burst', now)
    sev = false
  end
  local total = redis.call('HINCRBY', al, 'total', 1)
  redis.call('HINCRBY', al, 's:' .. ARGV[5], 1)
  if ARGV[6] ~= '' then redis.call('HINCRBY', al, 'c:' .. ARGV[6], 1) end
  redis.call('HINCRBY', al, 'd:' .. ARGV[17], 1)
  redis.call('HINCRBY', al, 'r:' .. ARGV[28], 1)
  if not sev or (ARGV[18] == 'critical' and sev ~= 'critical') then
    redis.call('HSET', al, 'last', now, 'sev', ARGV[18])
  else
    redis.call('HSET', al, 'last', now)
  end
  redis.call('PFADD', KEYS[14], client)
  if total % 64 == 1 then
    -- Refreshed now and then, not per report: the retention is days, the hot path is not.
    redis.call('EXPIRE', al, ARGV[16])
    redis.call('EXPIRE', KEYS[14], ARGV[16])
  end
  if st == 'firing' then
    return
  end
  local min_reports, min_clients = tonumber(ARGV[21]), tonumber(ARGV[22])
  local seq = redis.call('HINCRBY', al, 'seq', 1)
  redis.call('ZADD', KEYS[12], now, seq)
  redis.call('ZREMRANGEBYSCORE', KEYS[12], '-inf', '(' .. (now - window))
  redis.call('ZREMRANGEBYRANK', KEYS[12], 0, -(min_reports + 1))
  redis.call('ZADD', KEYS[13], now, client)
  redis.call('ZREMRANGEBYSCORE', KEYS[13], '-inf', '(' .. (now - window))
  redis.call('ZREMRANGEBYRANK', KEYS[13], 0, -(min_clients + 1))
  redis.call('EXPIRE', KEYS[12], window + 1)
  redis.call('EXPIRE', KEYS[13], window + 1)
  if ARGV[24] ~= '1' and (redis.call('ZCARD', KEYS[12]) < min_reports
                          or redis.call('ZCARD', KEYS[13]) < min_clients) then
    return
  end
  if st == 'resolved' then
    redis.call('HINCRBY', al, 'reopened', 1)
    redis.call('HDEL', al, 'resolved')
  else
    local id = redis.call('INCR', KEYS[19])
    redis.call('HSET', al, 'id', tostring(id), 'started', redis.call('HGET', al, 'burst') or now,
               'reopened', 0)
  end
  redis.call('HSET', al, 'st', 'firing', 'notified', now)
  redis.call('DEL', KEYS[12], KEYS[13])
  redis.call('ZADD', KEYS[15], now, host)
  emit('incident.firing', incident_record(al, KEYS[14], host, ARGV[25]), now, KEYS[16], KEYS[17],
       KEYS[18], tonumber(ARGV[26]), ARGV[27])
end
"""

# One firing host: resolve it after a quiet period, or remind.
# KEYS[1] alert state  KEYS[2] incident clients HLL  KEYS[3] firing ZSET  KEYS[4] outbox
# KEYS[5] incident index  KEYS[6] incident records
# ARGV[1] now  ARGV[2] host  ARGV[3] resolve after  ARGV[4] repeat (0 = never)  ARGV[5] site id
# ARGV[6] history kept  ARGV[7] outbox MAXLEN
# Returns 0 (nothing), 1 (resolved) or 2 (reminder).
SWEEP_LUA = _RECORD_LUA + """
local now = tonumber(ARGV[1])
local al = KEYS[1]
if redis.call('HGET', al, 'st') ~= 'firing' then
  redis.call('ZREM', KEYS[3], ARGV[2])
  return 0
end
local last = tonumber(redis.call('HGET', al, 'last') or '0')
if now - last >= tonumber(ARGV[3]) then
  redis.call('HSET', al, 'st', 'resolved', 'resolved', now)
  redis.call('ZREM', KEYS[3], ARGV[2])
  emit('incident.resolved', incident_record(al, KEYS[2], ARGV[2], ARGV[5]), now, KEYS[4], KEYS[5],
       KEYS[6], tonumber(ARGV[6]), ARGV[7])
  return 1
end
local every = tonumber(ARGV[4])
local notified = tonumber(redis.call('HGET', al, 'notified') or '0')
if every > 0 and now - notified >= every then
  redis.call('HSET', al, 'notified', now)
  emit('incident.reminder', incident_record(al, KEYS[2], ARGV[2], ARGV[5]), now, KEYS[4], KEYS[5],
       KEYS[6], tonumber(ARGV[6]), ARGV[7])
  return 2
end
return 0
"""
SWEEP_SHA = hashlib.sha1(SWEEP_LUA.encode()).hexdigest()


def ingest_keys(site_id: str, host: str) -> list[str]:
    """KEYS[11..19] of the ingest script."""
    return [
        keys.alert_state(site_id, host),
        keys.alert_window(site_id, host),
        keys.alert_window_clients(site_id, host),
        keys.incident_clients(site_id, host),
        keys.firing(site_id),
        keys.outbox(site_id),
        keys.incidents(site_id),
        keys.incident_records(site_id),
        keys.incident_seq(site_id),
    ]


def ingest_args(site_id: str, policy: Policy, fires_at_once: bool) -> list[Any]:
    """ARGV[20..27] of the ingest script."""
    return [
        policy.window,
        policy.min_reports,
        policy.min_clients,
        policy.resolve_after,
        "1" if fires_at_once else "0",
        site_id,
        INCIDENT_HISTORY,
        keys.OUTBOX_MAXLEN,
    ]


def sweep(client: redis.Redis, policies: Mapping[str, Policy], now: int,
          hosts: Mapping[str, list[str]] | None = None) -> dict[str, int]:
    """Resolve or remind every firing host of these sites (site id -> policy).

    Two pipelines whatever the number of sites: the firing hosts of every site,
    then one ``SWEEP_LUA`` per firing host. ``hosts`` limits the sweep to
    those hosts (a probe that succeeded resolves its host with resolve-after 0).
    """
    done = {"resolved": 0, "reminded": 0}
    site_ids = list(policies)
    if not site_ids:
        return done
    if hosts is not None:
        work = [(site_id, host) for site_id in site_ids for host in hosts.get(site_id, [])]
    else:
        pipe = client.pipeline(transaction=False)
        for site_id in site_ids:
            pipe.zrange(keys.firing(site_id), 0, -1)
        work = [
            (site_id, host.decode())
            for site_id, found in zip(site_ids, pipe.execute(), strict=True)
            for host in found
        ]
    if not work:
        return done

    def command(site_id: str, host: str) -> redisconn.Command:
        policy = policies[site_id]
        return ("evalsha", (
            SWEEP_SHA, 6,
            keys.alert_state(site_id, host), keys.incident_clients(site_id, host),
            keys.firing(site_id), keys.outbox(site_id), keys.incidents(site_id),
            keys.incident_records(site_id),
            now, host, policy.resolve_after, policy.repeat, site_id, INCIDENT_HISTORY,
            keys.OUTBOX_MAXLEN,
        ))

    results: list[Any] = []
    for conn, group in redisconn.by_node(client, sorted({site_id for site_id, _ in work})):
        members = set(group)
        commands = [command(site_id, host) for site_id, host in work if site_id in members]
        results += redisconn.run(client, None, commands, SWEEP_LUA, conn=conn)
    for result in results:
        if result == 1:
            done["resolved"] += 1
        elif result == 2:
            done["reminded"] += 1
    return done


# --- reads -------------------------------------------------------------------------


def _ts(value: Any) -> int | None:
    return int(value) if value else None


def shape_record(record: dict[str, Any]) -> dict[str, Any]:
    """A stored incident record as the API and notifications show it."""
    from collector.store import iso

    counts = record.get("counts") or {}
    for name in ("by_status", "by_cert_status", "by_diagnosis", "by_source"):
        # cjson encodes an empty table as {} and Lua gives numbers; keep ints.
        counts[name] = {k: int(v) for k, v in (counts.get(name) or {}).items()}
    counts["total"] = int(counts.get("total") or 0)
    return {
        "id": str(record["id"]),
        "host": record["host"],
        "state": record["state"],
        "severity": record.get("severity"),
        "started_at": iso(_ts(record.get("started_at"))),
        "resolved_at": iso(_ts(record.get("resolved_at"))),
        "last_report_at": iso(_ts(record.get("last_report_at"))),
        "reopened": int(record.get("reopened") or 0),
        "counts": counts,
        "distinct_clients": int(record.get("distinct_clients") or 0),
        "top_diagnosis": top_diagnosis(counts),
    }


def top_diagnosis(counts: Mapping[str, Any]) -> str | None:
    by = counts.get("by_diagnosis") or {}
    if not by:
        return None
    return sorted(by.items(), key=lambda kv: (-kv[1], kv[0]))[0][0]


def _live(data: Mapping[bytes, bytes], clients: int, site_id: str, host: str) -> dict[str, Any]:
    h = {k.decode(): v.decode() for k, v in data.items()}
    counts: dict[str, Any] = {"total": int(h.get("total", 0)), "by_status": {}, "by_cert_status": {},
                              "by_diagnosis": {}, "by_source": {}}
    names = {"s": "by_status", "c": "by_cert_status", "d": "by_diagnosis", "r": "by_source"}
    for k, v in h.items():
        dim, sep, value = k.partition(":")
        if sep and dim in names:
            counts[names[dim]][value] = int(v)
    return {
        "id": h.get("id"), "site": site_id, "host": host, "state": h.get("st", "ok"),
        "severity": h.get("sev"), "started_at": h.get("started"), "resolved_at": h.get("resolved"),
        "last_report_at": h.get("last"), "reopened": h.get("reopened", 0), "counts": counts,
        "distinct_clients": clients,
    }


def list_incidents(client: redis.Redis, site_id: str, limit: int, state: str | None = None) -> list[dict[str, Any]]:
    """Newest first. Firing incidents show their live counts."""
    ids = [i.decode() for i in client.zrevrange(keys.incidents(site_id), 0, INCIDENT_HISTORY - 1)]
    if not ids:
        return []
    raw = client.hmget(keys.incident_records(site_id), ids)
    records = [json.loads(r) for r in raw if r]
    firing = [r for r in records if r.get("state") == "firing"]
    if firing:
        pipe = redisconn.site_client(client, site_id).pipeline(transaction=False)
        for r in firing:
            pipe.hgetall(keys.alert_state(site_id, r["host"]))
            pipe.pfcount(keys.incident_clients(site_id, r["host"]))
        results = pipe.execute()
        for i, r in enumerate(firing):
            data, clients = results[2 * i], results[2 * i + 1]
            live = _live(data, int(clients), site_id, r["host"])
            if live["id"] == str(r["id"]) and live["state"] == "firing":
                r.update(live)
    out = [shape_record(r) for r in records]
    if state:
        out = [r for r in out if r["state"] == state]
    return out[:limit]


def host_incident(client: redis.Redis, site_id: str, host: str) -> dict[str, Any] | None:
    """The host's current or most recent incident, or None when it never fired."""
    pipe = redisconn.site_client(client, site_id).pipeline(transaction=False)
    pipe.hgetall(keys.alert_state(site_id, host))
    pipe.pfcount(keys.incident_clients(site_id, host))
    data, clients = pipe.execute()
    if not data or b"id" not in data:
        return None
    record = _live(data, int(clients), site_id, host)
    if record["state"] == "ok":
        return None
    return shape_record(record)


def host_states(client: redis.Redis, site_id: str, hosts: list[str]) -> dict[str, str]:
    """Alert state (ok, firing, resolved) of each host, in one pipeline."""
    if not hosts:
        return {}
    pipe = redisconn.site_client(client, site_id).pipeline(transaction=False)
    for host in hosts:
        pipe.hget(keys.alert_state(site_id, host), "st")
    return {h: (s.decode() if s else "ok") for h, s in zip(hosts, pipe.execute(), strict=True)}
