"""Sites (tenants): creation, lookup, API tokens, and the per-worker site cache."""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import redis

from collector import alerts, hostnames, keys

DEFAULT_MAX_AGE = 31536000
MAX_HOST_PATTERNS = 200


@dataclass(frozen=True, slots=True)
class Site:
    id: str
    name: str
    hosts: tuple[str, ...]
    created_at: int
    # Per-site alert policy overrides (collector.alerts.POLICY_FIELDS -> value).
    alerts: dict[str, int] = field(default_factory=dict)

    def accepts(self, host: str) -> bool:
        return hostnames.matches(host, self.hosts)

    def example_host(self) -> str:
        """A hostname the site accepts, for test reports and test notifications."""
        if not self.hosts:
            return "www.example.com"
        first = self.hosts[0]
        return "www." + first[2:] if first.startswith("*.") else first


@dataclass(frozen=True)
class NewSite:
    site: Site
    token: str


def report_uri(public_url: str, site_id: str) -> str:
    return f"{public_url}/r/{site_id}/staple"


def header_line(
    public_url: str,
    site_id: str,
    max_age: int = DEFAULT_MAX_AGE,
    include_subdomains: bool = True,
    preload: bool = False,
) -> str:
    value = f'max-age={max_age}; report-uri="{report_uri(public_url, site_id)}"'
    if include_subdomains:
        value += "; includeSubDomains"
    if preload:
        value += "; preload"
    return f"Expect-Staple: {value}"


def hash_token(token: str) -> str:
    # API tokens are 256-bit random strings: a fast hash is enough to keep the
    # stored form useless to whoever reads Redis (no password stretching needed).
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def valid_site_id(site_id: str) -> bool:
    return len(site_id) == 16 and all(c in "0123456789abcdef" for c in site_id)


def create(client: redis.Redis, name: str, host_patterns: list[str]) -> NewSite:
    name = name.strip()
    if not name or len(name) > 200:
        raise ValueError("a site name is 1 to 200 characters")
    patterns = tuple(dict.fromkeys(hostnames.normalise_pattern(p) for p in host_patterns))
    site_id = secrets.token_hex(8)
    token = "st_" + secrets.token_urlsafe(32)
    token_sha = hash_token(token)
    now = int(time.time())
    pipe = client.pipeline(transaction=False)
    pipe.hset(
        keys.site(site_id),
        mapping={
            "name": name,
            "hosts": json.dumps(list(patterns)),
            "created_at": now,
            "token_sha256": token_sha,
        },
    )
    pipe.set(keys.token(token_sha), site_id)
    pipe.sadd(keys.SITES, site_id)
    pipe.execute()
    return NewSite(Site(site_id, name, patterns, now), token)


def set_hosts(client: redis.Redis, site_id: str, host_patterns: list[str]) -> tuple[str, ...]:
    """Replace the site's allowed host patterns (empty: every hostname is accepted).

    Raises ``hostnames.HostnameError`` for a pattern that is not a hostname or ``*.`` pattern.
    """
    patterns = tuple(dict.fromkeys(hostnames.normalise_pattern(p) for p in host_patterns if p.strip()))
    if len(patterns) > MAX_HOST_PATTERNS:
        raise hostnames.HostnameError(f"at most {MAX_HOST_PATTERNS} host patterns")
    client.hset(keys.site(site_id), "hosts", json.dumps(list(patterns)))
    return patterns


def rotate_token(client: redis.Redis, site_id: str) -> str:
    """Give the site a new API token; the old one stops working at once. Returns the new token."""
    old_sha = client.hget(keys.site(site_id), "token_sha256")
    token = "st_" + secrets.token_urlsafe(32)
    token_sha = hash_token(token)
    pipe = client.pipeline(transaction=False)
    pipe.set(keys.token(token_sha), site_id)
    # site_for_token checks the site's own hash too, so the old token fails from here on.
    pipe.hset(keys.site(site_id), "token_sha256", token_sha)
    if old_sha is not None:
        pipe.delete(keys.token(old_sha.decode()))
    pipe.execute()
    return token


def _from_hash(site_id: str, data: dict[bytes, bytes]) -> Site | None:
    if not data:
        return None
    return Site(
        id=site_id,
        name=data[b"name"].decode(),
        hosts=tuple(json.loads(data.get(b"hosts", b"[]"))),
        created_at=int(data.get(b"created_at", b"0")),
        alerts=alerts.overrides_from_hash(data),
    )


def get(client: redis.Redis, site_id: str) -> Site | None:
    if not valid_site_id(site_id):
        return None
    return _from_hash(site_id, client.hgetall(keys.site(site_id)))


def list_all(client: redis.Redis) -> list[Site]:
    ids = sorted(i.decode() for i in client.smembers(keys.SITES))
    pipe = client.pipeline(transaction=False)
    for site_id in ids:
        pipe.hgetall(keys.site(site_id))
    found = [_from_hash(i, d) for i, d in zip(ids, pipe.execute(), strict=True)]
    return sorted((s for s in found if s), key=lambda s: (s.created_at, s.id))


def site_for_token(client: redis.Redis, token: str) -> str | None:
    """The id of the site owning ``token``, or None."""
    if not token or len(token) > 200:
        return None
    token_sha = hash_token(token)
    site_id = client.get(keys.token(token_sha))
    if site_id is None:
        return None
    site_id = site_id.decode()
    stored = client.hget(keys.site(site_id), "token_sha256")
    if stored is None or not hmac.compare_digest(stored.decode(), token_sha):
        return None
    return site_id


class SiteCache:
    """Sites the report endpoint has looked up recently, per worker process.

    The report endpoint must spend its one Redis round trip on the report, not
    on re-reading the site: a site is read once per ``ttl`` seconds. Unknown
    ids are not cached, so a new site works at once. Bounded, so a flood of
    random ids cannot grow it.
    """

    def __init__(self, ttl: float, max_entries: int = 10_000) -> None:
        self.ttl = ttl
        self.max_entries = max_entries
        self._entries: dict[str, tuple[float, Site]] = {}
        self._lock = threading.Lock()

    def get(self, client: redis.Redis, site_id: str) -> Site | None:
        now = time.monotonic()
        entry = self._entries.get(site_id)
        if entry and entry[0] > now:
            return entry[1]
        site = get(client, site_id)
        if site is not None and self.ttl > 0:
            with self._lock:
                if len(self._entries) >= self.max_entries:
                    self._entries.clear()
                self._entries[site_id] = (now + self.ttl, site)
        return site


def describe(new: NewSite, public_url: str) -> dict[str, Any]:
    return {
        "id": new.site.id,
        "name": new.site.name,
        "hosts": list(new.site.hosts),
        "report_uri": report_uri(public_url, new.site.id),
        "header": header_line(public_url, new.site.id),
        "token": new.token,
    }
