"""Scheduled probes: each site's probe targets, and recording what the worker found.

A success is recorded too (``p:ok`` in the host's buckets, the target's state):
it is the denominator browsers never give. A failure goes through the same
ingest script as a browser report (counted by status and diagnosis, sampled,
fed to incidents) with source ``probe``, and ``PROBE_FAILURES_TO_FIRE``
consecutive failures fire an incident on their own (one probe is one client, so
the browser thresholds would never be met). A success resolves the host's
firing incident. A target whose last result is older than twice its interval
(plus a minute) is shown as ``stale``: nobody is probing it, which is not the
same as healthy.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from typing import Any

import redis

from collector import alerts, hostnames, keys, probe, redisconn, store

MIN_EVERY = 1
MAX_EVERY = 86400
USER_AGENT = "staple-collector-probe"


@dataclass(frozen=True)
class ProbeTarget:
    host: str
    port: int
    servername: str | None
    every: int
    added_at: int

    @property
    def label(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def hostname(self) -> str:
        """The hostname results are aggregated under (the SNI name)."""
        return hostnames.normalise(self.servername or self.host)

    def as_probe(self) -> probe.Target:
        return probe.Target(self.host, self.port, self.servername)


def stale_after(every: int) -> int:
    return 2 * every + 60


def add(client: redis.Redis, site_id: str, target: probe.Target, every: int) -> ProbeTarget:
    if not MIN_EVERY <= every <= MAX_EVERY:
        raise ValueError("--every must be within 1s..1d")
    try:
        hostnames.normalise(target.servername or target.host)
    except hostnames.HostnameError:
        raise ValueError(
            f"{target.host} is not a hostname: give the name the certificate is for with --servername"
        ) from None
    if target.servername:
        target.servername = hostnames.normalise(target.servername)
    entry = ProbeTarget(target.host, target.port, target.servername, every, int(time.time()))
    pipe = redisconn.site_client(client, site_id).pipeline(transaction=True)
    pipe.hset(keys.probes(site_id), entry.label, json.dumps(asdict(entry)))
    pipe.zadd(keys.probes_due(site_id), {entry.label: 0})  # due now
    pipe.execute()
    return entry


def remove(client: redis.Redis, site_id: str, label: str) -> bool:
    pipe = redisconn.site_client(client, site_id).pipeline(transaction=True)
    pipe.hdel(keys.probes(site_id), label)
    pipe.zrem(keys.probes_due(site_id), label)
    pipe.delete(keys.probe_state(site_id, label))
    return bool(pipe.execute()[0])


def from_json(raw: bytes | str) -> ProbeTarget:
    data = json.loads(raw)
    return ProbeTarget(data["host"], int(data["port"]), data.get("servername"), int(data["every"]),
                       int(data["added_at"]))


def targets(client: redis.Redis, site_id: str) -> list[ProbeTarget]:
    found = [from_json(v) for v in client.hgetall(keys.probes(site_id)).values()]
    return sorted(found, key=lambda t: (t.hostname, t.port))


def status(client: redis.Redis, site_id: str, now: int, hostname: str | None = None) -> list[dict[str, Any]]:
    """Every target (or those of one hostname) with its latest result and state."""
    found = [t for t in targets(client, site_id) if hostname is None or t.hostname == hostname]
    if not found:
        return []
    pipe = redisconn.site_client(client, site_id).pipeline(transaction=False)
    for t in found:
        pipe.hgetall(keys.probe_state(site_id, t.label))
    out = []
    for t, raw in zip(found, pipe.execute(), strict=True):
        state = {k.decode(): v.decode() for k, v in raw.items()}
        last_at = int(state["last_at"]) if "last_at" in state else None
        last = json.loads(state["last"]) if "last" in state else None
        ok, fail = int(state.get("ok", 0)), int(state.get("fail", 0))
        if last_at is None:
            current = "pending" if now - t.added_at <= stale_after(t.every) else "stale"
        elif now - last_at > stale_after(t.every):
            current = "stale"
        elif last and last.get("error"):
            current = "unreachable"
        elif last and last.get("ok"):
            current = "ok"
        else:
            current = "failing"
        out.append({
            "target": t.label, "host": t.host, "port": t.port, "servername": t.servername,
            "hostname": t.hostname, "every": t.every, "status": current,
            "last_probed_at": store.iso(last_at), "last_result": last,
            "consecutive_failures": int(state.get("consecutive", 0)),
            "totals": {"ok": ok, "fail": fail, "unreachable": int(state.get("error", 0))},
            "success_rate": round(ok / (ok + fail), 4) if ok + fail else None,
        })
    return out


def summary(result: probe.Result) -> dict[str, Any]:
    """What is kept of one result in the target's state."""
    verdict = result.verdict()
    return {
        "at": store.iso(int(result.at.timestamp())), "ok": result.ok,
        "response_status": result.response_status, "cert_status": result.cert_status,
        "diagnosis": verdict["code"], "severity": verdict["severity"], "summary": verdict["summary"],
        "tls_version": result.tls_version, "address": result.address, "trusted": not result.verify_errors,
        "must_staple": result.must_staple, "error": None,
    }


def record(client: redis.Redis, site_id: str, target: ProbeTarget, result: probe.Result | None,
           error: str | None, now: int, *, client_id: str, retention: store.Retention,
           policy: alerts.Policy, fire_after: int) -> str:
    """Store one probe outcome and schedule the next. Returns ok, fail or unreachable."""
    state_key = keys.probe_state(site_id, target.label)
    host = target.hostname
    if result is None:
        pipe = redisconn.site_client(client, site_id).pipeline(transaction=True)
        pipe.hset(state_key, mapping={"last": json.dumps({"at": store.iso(now), "ok": False, "error": error}),
                                      "last_at": now})
        pipe.hincrby(state_key, "error", 1)
        pipe.expire(state_key, retention.hours)
        pipe.zadd(keys.probes_due(site_id), {target.label: now + target.every})
        pipe.execute()
        return "unreachable"

    if result.ok:
        hour, day = now // 3600, now // 86400
        minute_slot, hour_slot = (now % 3600) // 60, (now % 86400) // 3600
        pipe = redisconn.site_client(client, site_id).pipeline(transaction=True)
        pipe.hset(state_key, mapping={"last": json.dumps(summary(result)), "last_at": now, "consecutive": 0})
        pipe.hincrby(state_key, "ok", 1)
        pipe.expire(state_key, retention.hours)
        pipe.hincrby(keys.minute_bucket(site_id, host, hour), f"{minute_slot}|p:ok", 1)
        pipe.expire(keys.minute_bucket(site_id, host, hour), retention.minutes + 3600)
        pipe.hincrby(keys.hour_bucket(site_id, host, day), f"{hour_slot}|p:ok", 1)
        pipe.expire(keys.hour_bucket(site_id, host, day), retention.hours + 86400)
        pipe.hsetnx(keys.host_meta(site_id, host), "first_seen", now)
        pipe.hset(keys.host_meta(site_id, host), "last_probe_at", now)
        pipe.expire(keys.host_meta(site_id, host), retention.hours)
        pipe.zadd(keys.hosts(site_id), {host: now})
        pipe.zadd(keys.probes_due(site_id), {target.label: now + target.every})
        pipe.execute()
        # Stapling works again from a strict client's point of view: resolve at once.
        alerts.sweep(client, {site_id: alerts.Policy(policy.window, policy.min_reports, policy.min_clients,
                                                     0, 0)}, now, hosts={site_id: [host]})
        return "ok"

    consecutive = int(client.hincrby(state_key, "consecutive", 1))
    analysis = result.analysis
    assert analysis is not None
    report = result.report()
    report["hostname"] = host
    sample = {**report, "received_at": store.iso(now), "shape": "probe", "endpoint": None,
              "user_agent": USER_AGENT, "source": "probe",
              "diagnosis": {"code": analysis.diagnosis.code, "severity": analysis.diagnosis.severity}}
    accepted = store.Accepted(
        host=host, port=target.port, response_status=result.response_status, cert_status=result.cert_status,
        diagnosis=analysis.diagnosis.code, severity=analysis.diagnosis.severity,
        must_staple=analysis.must_staple, sample=sample, source="probe",
        fire_now=consecutive >= fire_after,
    )
    store.write(client, site_id, store.Outcomes(accepted=[accepted]), client_id, now, retention, policy)
    pipe = redisconn.site_client(client, site_id).pipeline(transaction=True)
    pipe.hset(state_key, mapping={"last": json.dumps(summary(result)), "last_at": now})
    pipe.hincrby(state_key, "fail", 1)
    pipe.expire(state_key, retention.hours)
    pipe.hset(keys.host_meta(site_id, host), "last_probe_at", now)
    pipe.zadd(keys.probes_due(site_id), {target.label: now + target.every})
    pipe.execute()
    return "fail"
